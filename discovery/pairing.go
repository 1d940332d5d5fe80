package discovery

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// PairingCode is the short authentication string both screens show while
// pairing: six digits derived from both device IDs, the same whichever side
// starts. A machine in the middle would have to present other certificates,
// and so other IDs, and the two screens would differ.
func PairingCode(a, b DeviceID) string {
	lo, hi := a, b
	if bytes.Compare(lo[:], hi[:]) > 0 {
		lo, hi = hi, lo
	}
	h := sha256.New()
	h.Write([]byte("handoff pairing v1\x00"))
	h.Write(lo[:])
	h.Write(hi[:])
	n := binary.BigEndian.Uint32(h.Sum(nil)) % 1000000
	return fmt.Sprintf("%03d %03d", n/1000, n%1000)
}

// PairRequest is what the initiator sends to the pairing endpoint.
type PairRequest struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Code    string `json:"code"` // what the initiator's screen shows
}

// PairAnswer is the responder's verdict.
type PairAnswer struct {
	Accepted bool   `json:"accepted"`
	Name     string `json:"name"`
	Reason   string `json:"reason,omitempty"`
}

const maxPairMessage = 4 << 10

// ParsePairRequest reads a pairing request from the network.
func ParsePairRequest(r io.Reader) (PairRequest, error) {
	var req PairRequest
	data, err := io.ReadAll(io.LimitReader(r, maxPairMessage+1))
	if err != nil {
		return req, err
	}
	if len(data) > maxPairMessage {
		return req, errors.New("pairing request too large")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("bad pairing request: %w", err)
	}
	if req.Version != ProtocolVersion {
		return req, fmt.Errorf("pairing protocol %d is not %d", req.Version, ProtocolVersion)
	}
	req.Name = cleanName(req.Name)
	if req.Name == "" {
		return req, errors.New("pairing request without a device name")
	}
	return req, nil
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
