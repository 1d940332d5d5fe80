package migration

import (
	"context"
	"testing"
	"time"
)

func TestAnotherRound(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		name        string
		round       int
		sent, last  int64
		took        time.Duration
		wantAnother bool
	}{
		{"long first round", 1, 200 * mb, 0, 3 * time.Second, true},
		{"quick first round", 1, 200 * mb, 0, 500 * time.Millisecond, false},
		{"tiny first round", 1, 4 * mb, 0, 3 * time.Second, false},
		{"second round shrank", 2, 60 * mb, 200 * mb, time.Second, true},
		{"second round left little", 2, 6 * mb, 200 * mb, time.Second, false},
		{"no longer shrinking", 3, 50 * mb, 60 * mb, time.Second, false},
		{"shrinking but last allowed", maxPreRounds, 20 * mb, 60 * mb, time.Second, false},
	} {
		if got := anotherRound(c.round, c.sent, c.last, c.took); got != c.wantAnother {
			t.Errorf("%s: anotherRound(%d, %d, %d, %v) = %v, want %v", c.name, c.round, c.sent, c.last, c.took, got, c.wantAnother)
		}
	}
}

func TestRoundNames(t *testing.T) {
	for n := 1; n <= maxPreRounds; n++ {
		if name := roundName(n); !validRound(name) {
			t.Errorf("round %d is named %q, which the receiver refuses", n, name)
		}
	}
	for _, bad := range []string{"", "pre1", "pre0", "pre10", "prex", "final2", "../pre", "pre/2"} {
		if validRound(bad) {
			t.Errorf("validRound(%q) = true", bad)
		}
	}
	if !validRound("final") {
		t.Error("the final round is refused")
	}
}

func TestOverlappedDumpEstimate(t *testing.T) {
	for _, c := range []struct {
		name string
		sn   snapshot
		want time.Duration
	}{
		{"a dump that ran alone is slower beside a transfer", snapshot{took: 450 * time.Millisecond}, 900 * time.Millisecond},
		{"a dump that ran beside a transfer is the estimate", snapshot{took: 900 * time.Millisecond, overlapped: true}, 900 * time.Millisecond},
		{"hashing the image counts too", snapshot{took: 200 * time.Millisecond, hashed: 50 * time.Millisecond, overlapped: true}, 250 * time.Millisecond},
		{"hashing ran beside a transfer already", snapshot{took: 200 * time.Millisecond, hashed: 50 * time.Millisecond}, 450 * time.Millisecond},
	} {
		if got := c.sn.overlappedDump(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNoSampleNoVeto: without a memory sample (it could not be drawn), the
// rounds go by what they send, as if enough had changed.
func TestNoSampleNoVeto(t *testing.T) {
	sn := &snapshot{sampled: make(chan struct{})}
	close(sn.sampled)
	if got := sn.changed(context.Background()); got < preRoundEnough {
		t.Errorf("no sample: estimated %d bytes changed, which vetoes another round", got)
	}
}
