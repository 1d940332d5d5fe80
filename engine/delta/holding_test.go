package delta

import (
	"bytes"
	"slices"
	"testing"
)

// TestHoldingAgreesWithTheReceiver: what the sender works out a receiver
// lacks is exactly what the receiver answers, from the same index.
func TestHoldingAgreesWithTheReceiver(t *testing.T) {
	a, b := randomPages(t, 6), randomPages(t, 3)
	changed := bytes.Clone(a)
	copy(changed[2*PageSize:], randomPages(t, 1))
	shifted := append(randomPages(t, 1), a...)
	repeated := append(bytes.Clone(b), randomPages(t, 1)...)
	repeated = append(repeated, repeated[3*PageSize:]...)
	first := map[string][]byte{"pages-1.img": a, "pages-2.img": b, "core.img": []byte("core")}
	for _, tc := range []struct {
		name string
		next map[string][]byte
		want int // pieces lacking
	}{
		{"nothing changed", first, 0},
		{"one page", map[string][]byte{"pages-1.img": changed, "pages-2.img": b, "core.img": []byte("core")}, 1},
		{"pages shift by one", map[string][]byte{"pages-1.img": shifted, "pages-2.img": b}, 1},
		{"pages move to another file", map[string][]byte{"pages-3.img": append(bytes.Clone(b), a...)}, 0},
		{"a new page twice", map[string][]byte{"pages-2.img": repeated}, 1},
		{"shrunk and a new file", map[string][]byte{"pages-1.img": a[:PageSize], "core-2.img": []byte("new")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := IndexDir(writeDir(t, first))
			if err != nil {
				t.Fatal(err)
			}
			next, err := IndexDir(writeDir(t, tc.next))
			if err != nil {
				t.Fatal(err)
			}
			sender := Holds(before).Missing(next)

			pool := NewPool()
			pool.Add(t.TempDir(), before)
			var got Index
			changedPlaces, err := got.UnmarshalBinaryDiff(next.MarshalBinaryDiff(before), before)
			if err != nil {
				t.Fatal(err)
			}
			receiver, err := pool.MissingAmong(&got, changedPlaces)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sender, receiver) {
				t.Errorf("the sender names %v, the receiver lacks %v", sender, receiver)
			}
			if len(sender) != tc.want {
				t.Errorf("%d pieces lacking, want %d", len(sender), tc.want)
			}
		})
	}
}

func TestPlacesCover(t *testing.T) {
	for _, tc := range []struct {
		places, want Places
		covers       bool
	}{
		{nil, nil, true},
		{Places{1, 4, 9}, nil, true},
		{Places{1, 4, 9}, Places{4}, true},
		{Places{1, 4, 9}, Places{1, 4, 9}, true},
		{Places{1, 4, 9}, Places{5}, false},
		{Places{1, 4}, Places{1, 4, 9}, false},
		{nil, Places{0}, false},
	} {
		if got := tc.places.Covers(tc.want); got != tc.covers {
			t.Errorf("%v covers %v: %v, want %v", tc.places, tc.want, got, tc.covers)
		}
	}
}
