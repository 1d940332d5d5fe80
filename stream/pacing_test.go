package stream

import (
	"testing"
	"time"
)

// TestFramePacing: frames keep to a schedule of one per interval, a late
// one does not push the later ones back, and no run of frames comes faster
// than one per interval plus one.
func TestFramePacing(t *testing.T) {
	const interval = 16 * time.Millisecond
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for _, c := range []struct {
		name      string
		slot, now time.Time
		want      time.Time
	}{
		{"on time", ms(0), ms(0), ms(16)},
		{"a little late: the schedule holds", ms(0), ms(5), ms(16)},
		{"late by more than an interval: one frame may follow at once", ms(0), ms(40), ms(40)},
		{"after a still screen", time.Time{}, ms(0), ms(0)},
	} {
		if got := nextSlot(c.slot, c.now, interval); !got.Equal(c.want) {
			t.Errorf("%s: next slot %v after t0, want %v", c.name, got.Sub(t0), c.want.Sub(t0))
		}
	}
	// Frames taken as soon as allowed, each a random bit late, keep the
	// rate: never more than n+1 frames in n intervals.
	slot, now := time.Time{}, t0
	var taken []time.Time
	for i := range 600 {
		now = maxTime(now, slot).Add(time.Duration(i*7919%5) * time.Millisecond)
		taken = append(taken, now)
		slot = nextSlot(slot, now, interval)
	}
	for i := range taken {
		for j := i + 1; j < len(taken); j++ {
			if span := taken[j].Sub(taken[i]); j-i > int(span/interval)+1 {
				t.Fatalf("frames %d..%d: %d frames in %v", i, j, j-i+1, span)
			}
		}
	}
}
