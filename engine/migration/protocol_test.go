package migration

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/handoff/handoff/engine/delta"
)

// round writes a directory shaped like a CRIU dump whose pages depend on
// seed, and returns its index: two seeds are two rounds of one app.
func round(tb testing.TB, seed uint64) *delta.Index {
	tb.Helper()
	dir := tb.TempDir()
	rng := rand.New(rand.NewPCG(seed, 1))
	pages := make([]byte, 16*delta.PageSize)
	for i := range pages {
		if i/delta.PageSize%3 == 0 {
			pages[i] = byte(rng.Uint32())
		}
	}
	for name, data := range map[string][]byte{
		"pages-1.img":   pages,
		"pagemap-1.img": bytes.Repeat([]byte{1, 2}, 50),
		"core-1.img":    bytes.Repeat([]byte("core"), 100+int(seed)),
		"inventory.img": []byte("inventory"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	ix, err := delta.IndexDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return ix
}

// TestDeltaHeaderAllocatesAsItReads: a part's declared length alone does
// not make the receiver allocate it.
func TestDeltaHeaderAllocatesAsItReads(t *testing.T) {
	var header []byte
	header = binary.BigEndian.AppendUint32(header, maxJSONBody) // 64 MiB declared, 8 bytes sent
	header = append(header, "HIXD\x00\x00\x00\x00"...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := readDeltaHeader(bytes.NewReader(header), maxJSONBody)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a cut header was accepted")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("12 bytes declaring a part of 64 MiB allocated %d bytes", n)
	}
}

func FuzzReadDeltaHeader(f *testing.F) {
	base := round(f, 1)
	for seed := range uint64(3) {
		ix := round(f, seed+1)
		lacks := delta.Holds(base).Missing(ix)
		header, err := deltaHeader(ix.MarshalBinaryDiff(base), lacks)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(header)
	}
	f.Add(binary.BigEndian.AppendUint32(nil, maxJSONBody))
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		// As serveDelta reads it: the header, then the index against the
		// base round, then the places against it.
		diff, places, err := readDeltaHeader(bufio.NewReader(bytes.NewReader(data)), limit)
		if err != nil {
			return
		}
		if len(diff) > limit || len(diff) > len(data) || len(places) > len(data) {
			t.Fatalf("%d bytes read as an index of %d bytes and %d places", len(data), len(diff), len(places))
		}
		again, err := deltaHeader(diff, places)
		if err != nil {
			t.Fatalf("places read do not encode: %v", err)
		}
		diff2, places2, err := readDeltaHeader(bytes.NewReader(again), limit)
		if err != nil || !bytes.Equal(diff, diff2) || !reflect.DeepEqual(normalPlaces(places), normalPlaces(places2)) {
			t.Fatalf("the header changed going round: %v", err)
		}
		var ix delta.Index
		changed, err := ix.UnmarshalBinaryDiff(diff, base)
		if err != nil || ix.Validate() != nil {
			return
		}
		pool := delta.NewPool()
		pool.Add(t.TempDir(), base)
		lacking, err := pool.MissingAmong(&ix, changed)
		if err != nil {
			t.Fatalf("the changed places of a valid index do not resolve: %v", err)
		}
		if _, err := ix.Size(lacking); err != nil {
			t.Fatal(err)
		}
		if !places.Covers(lacking) {
			return // serveDelta refuses it as out of step
		}
		// Then the pieces come, here none: refused, and nothing is left.
		spool := t.TempDir()
		if b, err := delta.ReceivePieces(bytes.NewReader(nil), spool, &ix, places); err == nil {
			b.Remove()
		}
		if ents, _ := os.ReadDir(spool); len(ents) != 0 {
			t.Fatalf("%d files left in the spool dir", len(ents))
		}
	})
}

func normalPlaces(ps delta.Places) delta.Places {
	if len(ps) == 0 {
		return nil
	}
	return ps
}
