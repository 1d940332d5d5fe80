package discovery

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Pairing is numeric comparison with commit-then-reveal nonces, as in
// Bluetooth's Secure Simple Pairing and ZRTP's short authentication string:
//
//	initiator                                   responder
//	POST …/pair/commit  H(IDi, IDr, Ni)      →  (remembers it)
//	                                         ←  Nr, a session
//	POST …/pair/reveal  Ni                   →  checks it against H
//	both show code(IDi, IDr, Ni, Nr); both users compare the screens
//	POST …/pair/finish  "my user confirmed"  →  ← "mine too" (or not)
//
// Each side computes the code from the certificates it sees on its own TLS
// connection. A machine in the middle talks to each side with its own
// certificate, so it must make two codes agree: towards the initiator it
// picks its nonce before it learns Ni (committed, not yet revealed), towards
// the responder it commits to its nonce before it learns Nr. Either way one
// of the two codes is random to it when it can no longer change anything:
// one guess in a million per attempt, however much it computes, and every
// attempt asks a user. Grinding certificates no longer helps: the code of
// protocol 1, a hash of the two IDs alone, fell to 185,000 tries (0.13 s).
const PairVersion = 2

// NonceSize is the length of a pairing nonce.
const NonceSize = 32

// Nonce is one side's secret random contribution to a pairing code.
type Nonce [NonceSize]byte

// NewNonce reads a nonce from r (crypto/rand when nil).
func NewNonce(r io.Reader) (Nonce, error) {
	if r == nil {
		r = rand.Reader
	}
	var n Nonce
	_, err := io.ReadFull(r, n[:])
	return n, err
}

// MarshalText writes the nonce in hex.
func (n Nonce) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(n[:])), nil }

// UnmarshalText reads exactly NonceSize bytes in hex.
func (n *Nonce) UnmarshalText(b []byte) error {
	if len(b) != 2*NonceSize {
		return fmt.Errorf("a pairing nonce or commitment is %d hex digits, not %d", 2*NonceSize, len(b))
	}
	_, err := hex.Decode(n[:], b)
	return err
}

// Commitment is what the initiator sends first: a hash binding it to its
// nonce, which it reveals only after the responder sent its own.
func Commitment(initiator, responder DeviceID, ni Nonce) Nonce {
	h := sha256.New()
	h.Write([]byte("handoff pairing commitment v2\x00"))
	h.Write(initiator[:])
	h.Write(responder[:])
	h.Write(ni[:])
	var c Nonce
	copy(c[:], h.Sum(nil))
	return c
}

// PairingCode is the short authentication string both screens show: six
// digits from both device IDs (the initiator's first) and both nonces.
func PairingCode(initiator, responder DeviceID, ni, nr Nonce) string {
	n := pairingNumber(initiator, responder, ni, nr)
	return fmt.Sprintf("%03d %03d", n/1000, n%1000)
}

func pairingNumber(initiator, responder DeviceID, ni, nr Nonce) uint64 {
	const domain = "handoff pairing code v2\x00"
	var buf [len(domain) + 4*32]byte
	b := append(buf[:0], domain...)
	b = append(b, initiator[:]...)
	b = append(b, responder[:]...)
	b = append(b, ni[:]...)
	b = append(b, nr[:]...)
	sum := sha256.Sum256(b)
	// 64 bits mod 10^6: the bias is below 10^-13.
	return binary.BigEndian.Uint64(sum[:]) % 1000000
}

// Messages of the pairing protocol. Every one is small; ReadPairMessage
// reads them from the network.
type (
	// PairCommit opens a pairing (initiator → responder).
	PairCommit struct {
		Version    int    `json:"version"`
		Name       string `json:"name"` // the initiator's human name
		Commitment Nonce  `json:"commitment"`
	}
	// PairChallenge answers a commit with the responder's nonce.
	PairChallenge struct {
		Session string `json:"session"`
		Nonce   Nonce  `json:"nonce"`
		Name    string `json:"name"`
	}
	// PairReveal discloses the initiator's nonce.
	PairReveal struct {
		Session string `json:"session"`
		Nonce   Nonce  `json:"nonce"`
	}
	// PairFinish says whether the initiator's user confirmed the code.
	PairFinish struct {
		Session   string `json:"session"`
		Confirmed bool   `json:"confirmed"`
	}
	// PairAnswer is the responder's verdict on a reveal or a finish.
	PairAnswer struct {
		Accepted bool   `json:"accepted"`
		Name     string `json:"name"`
		Reason   string `json:"reason,omitempty"`
	}
)

const maxPairMessage = 4 << 10

// ReadPairMessage reads one pairing message from the network into v: at
// most 4 KiB, no unknown fields, nothing after it.
func ReadPairMessage(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, maxPairMessage+1))
	if err != nil {
		return fmt.Errorf("read the pairing message: %w", err)
	}
	if len(data) > maxPairMessage {
		return errors.New("pairing message too large")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad pairing message: %w", err)
	}
	if dec.More() {
		return errors.New("bad pairing message: data after it")
	}
	if c, ok := v.(*PairCommit); ok {
		if c.Version != PairVersion {
			return fmt.Errorf("it pairs with protocol %d, this device with %d: update Handoff on both", c.Version, PairVersion)
		}
		c.Name = cleanName(c.Name)
		if c.Name == "" {
			return errors.New("pairing request without a device name")
		}
	}
	return nil
}

// Initiator is the side that starts a pairing.
type Initiator struct {
	Self, Peer DeviceID
	nonce      Nonce
}

// NewInitiator draws a nonce (from r, crypto/rand when nil) and returns the
// commit message to send.
func NewInitiator(self, peer DeviceID, name string, r io.Reader) (*Initiator, PairCommit, error) {
	n, err := NewNonce(r)
	if err != nil {
		return nil, PairCommit{}, err
	}
	i := &Initiator{Self: self, Peer: peer, nonce: n}
	return i, PairCommit{Version: PairVersion, Name: name, Commitment: Commitment(self, peer, n)}, nil
}

// Reveal returns the code for the responder's challenge, and the message
// that lets the responder compute it too.
func (i *Initiator) Reveal(c PairChallenge) (code string, reveal PairReveal) {
	return PairingCode(i.Self, i.Peer, i.nonce, c.Nonce), PairReveal{Session: c.Session, Nonce: i.nonce}
}

// Errors of the responder, each in words an initiator's user can act on.
var (
	ErrPairBusy     = errors.New("a pairing request from this device is already waiting there; answer or cancel it first")
	ErrPairLimited  = errors.New("too many pairing attempts; wait a few minutes and try again")
	ErrPairSession  = errors.New("no such pairing session: it ended (answered, cancelled or timed out); start again")
	ErrPairMismatch = errors.New("the revealed nonce does not match its commitment: someone may be in the middle; pairing refused")
)

// Responder limits: pairing is rare and each attempt asks a person, so a
// device that floods it is refused long before it becomes a nuisance.
const (
	pairPerAddress = 8  // attempts per address per window
	pairPerDevice  = 5  // attempts per certificate per window (certificates cost nothing: addresses and the total bound the rest)
	pairGlobal     = 20 // attempts from everyone per window
	pairWindow     = 10 * time.Minute
	pairMaxPending = 4 // sessions open at once, from all devices
)

// Responder keeps the pairing sessions this device answers: one per
// unknown device at a time, a few in all, each good for one reveal.
type Responder struct {
	Self DeviceID
	// TTL ends a session not revealed within it, and a revealed one not
	// ended within it after the reveal (its user had that long to answer).
	TTL time.Duration
	// Rand is the nonces' source (crypto/rand when nil).
	Rand io.Reader

	once                        sync.Once
	perAddress, perDevice, glob *RateLimiter
	mu                          sync.Mutex
	sessions                    map[string]*PairSession
	byDevice                    map[DeviceID]string
}

// PairSession is one pairing in progress on the responder.
type PairSession struct {
	ID      string
	From    DeviceID
	Name    string // what the initiator calls itself
	Code    string // set once revealed
	Started time.Time

	commitment Nonce
	nonce      Nonce
	revealed   time.Time // zero until revealed
}

func (r *Responder) init() {
	r.once.Do(func() {
		if r.TTL == 0 {
			r.TTL = 3 * time.Minute
		}
		r.perAddress = &RateLimiter{Max: pairPerAddress, Window: pairWindow}
		r.perDevice = &RateLimiter{Max: pairPerDevice, Window: pairWindow}
		r.glob = &RateLimiter{Max: pairGlobal, Window: pairWindow}
		r.sessions = map[string]*PairSession{}
		r.byDevice = map[DeviceID]string{}
	})
}

// Begin opens a session for a commit from device from at address addr and
// returns the challenge to answer with.
func (r *Responder) Begin(from DeviceID, addr string, c PairCommit, now time.Time) (PairChallenge, error) {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	if _, busy := r.byDevice[from]; busy {
		return PairChallenge{}, ErrPairBusy
	}
	if len(r.sessions) >= pairMaxPending {
		return PairChallenge{}, fmt.Errorf("%w (%d pairings are waiting here)", ErrPairLimited, len(r.sessions))
	}
	// Every limit counts the attempt, so a refused flood stays refused.
	okAddr, okDev, okAll := r.perAddress.Allow(addr, now), r.perDevice.Allow(from.String(), now), r.glob.Allow("", now)
	if !okAddr || !okDev || !okAll {
		return PairChallenge{}, ErrPairLimited
	}
	nonce, err := NewNonce(r.Rand)
	if err != nil {
		return PairChallenge{}, err
	}
	var sid [16]byte
	if _, err := io.ReadFull(rand.Reader, sid[:]); err != nil {
		return PairChallenge{}, err
	}
	s := &PairSession{ID: hex.EncodeToString(sid[:]), From: from, Name: c.Name, Started: now,
		commitment: c.Commitment, nonce: nonce}
	r.sessions[s.ID] = s
	r.byDevice[from] = s.ID
	return PairChallenge{Session: s.ID, Nonce: nonce}, nil
}

// Reveal checks the initiator's nonce against its commitment and returns
// the session with its code. It works once per session: a wrong nonce, or
// a second try, ends the session.
func (r *Responder) Reveal(from DeviceID, rv PairReveal, now time.Time) (PairSession, error) {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	s := r.sessions[rv.Session]
	if s == nil || s.From != from {
		return PairSession{}, ErrPairSession
	}
	if !s.revealed.IsZero() {
		r.endLocked(s.ID)
		return PairSession{}, ErrPairSession
	}
	want := Commitment(from, r.Self, rv.Nonce)
	if subtle.ConstantTimeCompare(want[:], s.commitment[:]) != 1 {
		r.endLocked(s.ID)
		return PairSession{}, ErrPairMismatch
	}
	s.revealed = now
	s.Code = PairingCode(from, r.Self, rv.Nonce, s.nonce)
	return *s, nil
}

// Session returns a revealed session of device from.
func (r *Responder) Session(from DeviceID, id string) (PairSession, bool) {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[id]
	if s == nil || s.From != from || s.revealed.IsZero() {
		return PairSession{}, false
	}
	return *s, true
}

// End closes a session; ending an unknown one does nothing.
func (r *Responder) End(id string) {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endLocked(id)
}

// Pending reports how many sessions are open.
func (r *Responder) Pending() int {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

func (r *Responder) endLocked(id string) {
	if s := r.sessions[id]; s != nil {
		delete(r.byDevice, s.From)
		delete(r.sessions, id)
	}
}

func (r *Responder) expireLocked(now time.Time) {
	for id, s := range r.sessions {
		since := s.Started
		if !s.revealed.IsZero() {
			since = s.revealed
		}
		if now.Sub(since) > r.TTL {
			r.endLocked(id)
		}
	}
}

// RateLimiter allows a few attempts per key (a remote address) per window.
type RateLimiter struct {
	Max    int
	Window time.Duration
	mu     sync.Mutex
	seen   map[string][]time.Time
}

// Allow records an attempt and reports whether it is within the limit.
func (l *RateLimiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string][]time.Time{}
	}
	recent := l.seen[key][:0]
	for _, t := range l.seen[key] {
		if now.Sub(t) < l.Window {
			recent = append(recent, t)
		}
	}
	if len(recent) >= l.Max {
		l.seen[key] = recent
		return false
	}
	l.seen[key] = append(recent, now)
	if len(l.seen) > 4096 { // bound memory under a flood of addresses
		for k := range l.seen {
			delete(l.seen, k)
			break
		}
	}
	return true
}
