package discovery

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"
)

// seeded is a reproducible nonce source for tests.
func seeded(seed byte) *mrand.ChaCha8 { return mrand.NewChaCha8([32]byte{seed}) }

// pairOnce runs the protocol between an initiator and a responder that see
// each other's true IDs, and returns both codes.
func pairOnce(t *testing.T, self, peer DeviceID, r *Responder, rnd *mrand.ChaCha8) (string, string) {
	t.Helper()
	in, commit, err := NewInitiator(self, peer, "ws-a", rnd)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := r.Begin(self, "192.0.2.1", commit, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	code, reveal := in.Reveal(ch)
	s, err := r.Reveal(self, reveal, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return code, s.Code
}

func TestPairingHonest(t *testing.T) {
	a, b := IDFromCert([]byte("a")), IDFromCert([]byte("b"))
	r := &Responder{Self: b, Rand: seeded(2)}
	codeA, codeB := pairOnce(t, a, b, r, seeded(1))
	if codeA != codeB || len(codeA) != 7 {
		t.Fatalf("the screens show %q and %q", codeA, codeB)
	}
	// A new attempt between the same devices shows another code: the
	// nonces, not the IDs, make it.
	r2 := &Responder{Self: b, Rand: seeded(4)}
	if again, _ := pairOnce(t, a, b, r2, seeded(3)); again == codeA {
		t.Fatalf("two attempts showed the same code %s", again)
	}
}

func TestPairingCodeDependsOnEverything(t *testing.T) {
	a, b, c := IDFromCert([]byte("a")), IDFromCert([]byte("b")), IDFromCert([]byte("c"))
	n1, _ := NewNonce(seeded(1))
	n2, _ := NewNonce(seeded(2))
	n3, _ := NewNonce(seeded(3))
	base := PairingCode(a, b, n1, n2)
	for name, other := range map[string]string{
		"other responder":       PairingCode(a, c, n1, n2),
		"roles swapped":         PairingCode(b, a, n1, n2),
		"other initiator nonce": PairingCode(a, b, n3, n2),
		"other responder nonce": PairingCode(a, b, n1, n3),
	} {
		if other == base {
			t.Errorf("%s: the same code %s", name, base)
		}
	}
}

// TestPairingMITMCannotChooseCode: a machine in the middle talks to each
// side with a certificate of its own and must make both screens show the
// same code. It gets 10^7 tries of offline computation per attempt, the
// work that matched a chosen code of protocol 1 in 185,000 tries.
func TestPairingMITMCannotChooseCode(t *testing.T) {
	const tries = 10_000_000
	if testing.Short() {
		t.Skip("10^7 hashes per role (a few seconds)")
	}
	a, b := IDFromCert([]byte("ws-a")), IDFromCert([]byte("ws-b"))
	m := IDFromCert([]byte("mallory")) // the certificate mallory shows either side
	target := "123 456"                // the code mallory wants on both screens

	// grind spends the tries on nonces of mallory's that give target when
	// the other side's nonce is guess, and returns those it found (about
	// ten: the tries cover the code space ten times). It must find some:
	// else the test would not show that the work could choose a code.
	grind := func(number func(mine Nonce) uint64, seed byte, all bool) []Nonce {
		want := uint64(123456)
		var mine Nonce
		var found []Nonce
		for i := uint64(0); i < tries; i++ {
			binary.BigEndian.PutUint64(mine[:], i)
			mine[8] = seed
			if number(mine) == want {
				found = append(found, mine)
				if !all {
					break
				}
			}
		}
		if len(found) == 0 {
			t.Fatalf("%d tries found no nonce for code %s", tries, target)
		}
		return found
	}

	t.Run("towards the initiator", func(t *testing.T) {
		// ws-a starts pairing with "ws-b", which is mallory. Mallory
		// holds ws-a's commitment, but must send its nonce before ws-a
		// reveals its own: it grinds against its best guess.
		var guess Nonce // the commitment tells it nothing more
		found := grind(func(n Nonce) uint64 { return pairingNumber(a, m, guess, n) }, 11, true)
		// Each attempt is one of those nonces against a fresh ws-a.
		for i, mine := range found {
			in, commit, _ := NewInitiator(a, m, "ws-a", seeded(byte(100+i)))
			code, reveal := in.Reveal(PairChallenge{Session: "s", Nonce: mine})
			if Commitment(a, m, reveal.Nonce) != commit.Commitment {
				t.Fatal("the reveal does not open the commitment")
			}
			if code == target {
				t.Fatalf("attempt %d: ws-a shows mallory's chosen code %s", i, code)
			}
		}
		t.Logf("%d tries gave mallory %d nonces for %s against its guess; none made ws-a show it", tries, len(found), target)
	})

	t.Run("towards the responder", func(t *testing.T) {
		// Mallory starts pairing with ws-b as "ws-a": it must commit to
		// its nonce before ws-b sends one.
		var guess Nonce
		found := grind(func(n Nonce) uint64 { return pairingNumber(m, b, n, guess) }, 21, true)
		for i, mine := range found {
			r := &Responder{Self: b, Rand: seeded(byte(200 + i))}
			ch, err := r.Begin(m, "192.0.2.66", PairCommit{Version: PairVersion, Name: "ws-a", Commitment: Commitment(m, b, mine)}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			s, err := r.Reveal(m, PairReveal{Session: ch.Session, Nonce: mine}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if s.Code == target {
				t.Fatalf("attempt %d: ws-b shows mallory's chosen code %s", i, s.Code)
			}
		}
		t.Logf("%d tries gave mallory %d nonces to commit to for %s; none made ws-b show it", tries, len(found), target)
	})

	t.Run("changing the nonce after the commitment", func(t *testing.T) {
		// Having seen ws-b's nonce, mallory would like to reveal another
		// one: the commitment holds it to the first.
		r := &Responder{Self: b, Rand: seeded(30)}
		first, _ := NewNonce(seeded(31))
		ch, err := r.Begin(m, "192.0.2.66", PairCommit{Version: PairVersion, Name: "ws-a", Commitment: Commitment(m, b, first)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		better := grind(func(n Nonce) uint64 { return pairingNumber(m, b, n, ch.Nonce) }, 32, false)
		if _, err := r.Reveal(m, PairReveal{Session: ch.Session, Nonce: better[0]}, time.Now()); !errors.Is(err, ErrPairMismatch) {
			t.Fatalf("revealing another nonce than committed: %v", err)
		}
		// The session is over: no second guess.
		if _, err := r.Reveal(m, PairReveal{Session: ch.Session, Nonce: first}, time.Now()); !errors.Is(err, ErrPairSession) {
			t.Fatalf("a second reveal after a wrong one: %v", err)
		}
	})
}

func TestPairingOneRevealPerSession(t *testing.T) {
	a, b := IDFromCert([]byte("a")), IDFromCert([]byte("b"))
	r := &Responder{Self: b}
	in, commit, _ := NewInitiator(a, b, "ws-a", nil)
	ch, err := r.Begin(a, "192.0.2.1", commit, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, reveal := in.Reveal(ch)
	// Another device cannot use or end the session.
	if _, err := r.Reveal(IDFromCert([]byte("c")), reveal, time.Now()); !errors.Is(err, ErrPairSession) {
		t.Fatalf("another device revealed into the session: %v", err)
	}
	if _, err := r.Reveal(a, reveal, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Session(a, ch.Session); !ok {
		t.Fatal("the revealed session is gone")
	}
	if _, err := r.Reveal(a, reveal, time.Now()); !errors.Is(err, ErrPairSession) {
		t.Fatalf("a second reveal: %v", err)
	}
	if r.Pending() != 0 {
		t.Fatal("a session revealed twice stays open")
	}
}

func TestPairingLimits(t *testing.T) {
	b := IDFromCert([]byte("b"))
	now := time.Now()
	commit := func(id DeviceID) PairCommit {
		_, c, _ := NewInitiator(id, b, "x", nil)
		return c
	}
	dev := func(i int) DeviceID { return IDFromCert([]byte(fmt.Sprintf("device %d", i))) }

	t.Run("one pending prompt per device", func(t *testing.T) {
		r := &Responder{Self: b}
		ch, err := r.Begin(dev(1), "192.0.2.1", commit(dev(1)), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Begin(dev(1), "192.0.2.1", commit(dev(1)), now); !errors.Is(err, ErrPairBusy) {
			t.Fatalf("a second session of the same device: %v", err)
		}
		r.End(ch.Session)
		if _, err := r.Begin(dev(1), "192.0.2.1", commit(dev(1)), now); err != nil {
			t.Fatalf("a new session after the first ended: %v", err)
		}
	})
	t.Run("per device", func(t *testing.T) {
		r := &Responder{Self: b}
		for i := 0; i < pairPerDevice; i++ {
			ch, err := r.Begin(dev(1), fmt.Sprintf("192.0.2.%d", i), commit(dev(1)), now)
			if err != nil {
				t.Fatalf("attempt %d: %v", i, err)
			}
			r.End(ch.Session)
		}
		if _, err := r.Begin(dev(1), "192.0.2.99", commit(dev(1)), now); !errors.Is(err, ErrPairLimited) {
			t.Fatalf("attempt past the per-device limit: %v", err)
		}
		if _, err := r.Begin(dev(1), "192.0.2.99", commit(dev(1)), now.Add(pairWindow)); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})
	t.Run("per address, with fresh certificates", func(t *testing.T) {
		r := &Responder{Self: b}
		for i := 0; i < pairPerAddress; i++ {
			ch, err := r.Begin(dev(i), "192.0.2.7", commit(dev(i)), now)
			if err != nil {
				t.Fatalf("attempt %d: %v", i, err)
			}
			r.End(ch.Session)
		}
		if _, err := r.Begin(dev(100), "192.0.2.7", commit(dev(100)), now); !errors.Is(err, ErrPairLimited) {
			t.Fatalf("a new certificate from the same address: %v", err)
		}
	})
	t.Run("pending prompts in all", func(t *testing.T) {
		r := &Responder{Self: b}
		for i := 0; i < pairMaxPending; i++ {
			if _, err := r.Begin(dev(i), fmt.Sprintf("192.0.2.%d", i), commit(dev(i)), now); err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		}
		if _, err := r.Begin(dev(50), "192.0.2.50", commit(dev(50)), now); !errors.Is(err, ErrPairLimited) {
			t.Fatalf("one session past the pending limit: %v", err)
		}
		// Unanswered sessions end after their TTL and free their place.
		if _, err := r.Begin(dev(50), "192.0.2.50", commit(dev(50)), now.Add(r.TTL+time.Second)); err != nil {
			t.Fatalf("after the others expired: %v", err)
		}
	})
	t.Run("in all, from many addresses and certificates", func(t *testing.T) {
		r := &Responder{Self: b}
		refused := 0
		for i := 0; i < 1000; i++ {
			ch, err := r.Begin(dev(i), fmt.Sprintf("198.51.100.%d", i%250), commit(dev(i)), now)
			if err != nil {
				refused++
				continue
			}
			r.End(ch.Session)
		}
		if got := 1000 - refused; got != pairGlobal {
			t.Fatalf("%d of 1000 attempts from new certificates went through, want %d", got, pairGlobal)
		}
	})
}

func TestReadPairMessage(t *testing.T) {
	n := strings.Repeat("ab", NonceSize)
	tests := []struct {
		name, in string
		wantErr  string
	}{
		{"ok", `{"version":2,"name":"ws-a","commitment":"` + n + `"}`, ""},
		{"old protocol", `{"version":1,"name":"ws-a","code":"123 456"}`, "unknown field"},
		{"other version", `{"version":3,"name":"ws-a","commitment":"` + n + `"}`, "update Handoff"},
		{"short commitment", `{"version":2,"name":"ws-a","commitment":"abab"}`, "hex digits"},
		{"no name", `{"version":2,"name":"\u0000","commitment":"` + n + `"}`, "without a device name"},
		{"two messages", `{"version":2,"name":"a","commitment":"` + n + `"}{}`, "data after"},
		{"too large", `{"version":2,"name":"` + strings.Repeat("a", 5000) + `"}`, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c PairCommit
			err := ReadPairMessage(strings.NewReader(tt.in), &c)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzReadPairMessage(f *testing.F) {
	n := strings.Repeat("ab", NonceSize)
	f.Add([]byte(`{"version":2,"name":"ws-a","commitment":"` + n + `"}`))
	f.Add([]byte(`{"version":2,"name":"\u0000"}`))
	f.Add([]byte(`{"session":"x","nonce":"` + n + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c PairCommit
		if err := ReadPairMessage(bytes.NewReader(data), &c); err == nil {
			if c.Name == "" || len(c.Name) > maxNameLen+4 || c.Version != PairVersion {
				t.Fatalf("accepted %+v", c)
			}
		}
		var rv PairReveal
		_ = ReadPairMessage(bytes.NewReader(data), &rv)
	})
}
