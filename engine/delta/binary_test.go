package delta

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestIndexBinaryRoundTrip(t *testing.T) {
	ix := &Index{Files: []File{
		{Name: "pages-1.img", Size: 3 * PageSize, Mode: 0o600, Pieces: Hashes{sum([]byte("a")), sum([]byte("b")), sum([]byte("c"))}},
		{Name: "core-1.img", Size: 10, Mode: 0o644, Pieces: Hashes{sum([]byte("d"))}},
		{Name: "empty.img", Size: 0, Mode: 0o600, Pieces: Hashes{}},
	}}
	data, err := ix.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Index
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ix, &back) {
		t.Fatalf("round trip changed the index:\n%+v\n%+v", ix, &back)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestIndexBinaryRefusesDamage(t *testing.T) {
	ix := &Index{Files: []File{{Name: "pages-1.img", Size: 2 * PageSize, Pieces: Hashes{sum([]byte("a")), sum([]byte("b"))}}}}
	good, _ := ix.MarshalBinary()
	for name, data := range map[string][]byte{
		"empty":       nil,
		"wrong magic": append([]byte("JSON"), good[4:]...),
		"truncated":   good[:len(good)-5],
		"trailing":    append(append([]byte{}, good...), 0),
		"huge count":  append([]byte("HIX1"), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"name beyond": append([]byte("HIX1"), 1, 0x7f, 'x'),
		// The name's length was checked against the bytes left before
		// its own varint was taken off them: this panicked.
		"name one past":   []byte("HIX1\x01\x04abc"),
		"hashes one past": append([]byte("HIX1\x01\x01x\x00\x00\x01"), make([]byte, hashSize-1)...),
	} {
		var back Index
		err := back.UnmarshalBinary(data)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "index: ") {
			t.Errorf("%s: error %q does not say it is about the index", name, err)
		}
	}
}

func TestIndexDiffRoundTrip(t *testing.T) {
	h := func(s string) Hash { return sum([]byte(s)) }
	base := &Index{Files: []File{
		{Name: "pages-1.img", Size: 4 * PageSize, Mode: 0o600, Pieces: Hashes{h("a"), h("b"), h("c"), h("d")}},
		{Name: "core-1.img", Size: 10, Mode: 0o644, Pieces: Hashes{h("core")}},
		{Name: "gone.img", Size: PageSize, Mode: 0o600, Pieces: Hashes{h("gone")}},
	}}
	for _, tt := range []struct {
		name        string
		files       []File
		wantChanged Places
	}{
		{"unchanged", base.Files, nil},
		{"one page changed", []File{
			{Name: "pages-1.img", Size: 4 * PageSize, Mode: 0o600, Pieces: Hashes{h("a"), h("B"), h("c"), h("d")}},
		}, Places{1}},
		{"grown, shrunk, new, mode changed", []File{
			{Name: "pages-1.img", Size: 6 * PageSize, Mode: 0o600, Pieces: Hashes{h("a"), h("b"), h("c"), h("d"), h("e"), h("f")}},
			{Name: "core-1.img", Size: 0, Mode: 0o600, Pieces: Hashes{}},
			{Name: "new.img", Size: 2 * PageSize, Mode: 0o600, Pieces: Hashes{h("n1"), h("a")}},
		}, Places{4, 5, 6, 7}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ix := &Index{Files: tt.files}
			data := ix.MarshalBinaryDiff(base)
			var back Index
			changed, err := back.UnmarshalBinaryDiff(data, base)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ix.Files, back.Files) {
				t.Fatalf("rebuilt index differs:\n%+v\n%+v", ix.Files, back.Files)
			}
			if !reflect.DeepEqual(changed, tt.wantChanged) {
				t.Errorf("changed pieces %v, want %v", changed, tt.wantChanged)
			}
			if full, _ := ix.MarshalBinary(); tt.name == "one page changed" && len(data) >= len(full) {
				t.Errorf("the difference (%d bytes) is no smaller than the index (%d)", len(data), len(full))
			}
		})
	}
}

func TestIndexDiffRefusesDamage(t *testing.T) {
	base := &Index{Files: []File{{Name: "pages-1.img", Size: PageSize, Pieces: Hashes{sum([]byte("a"))}}}}
	grown := &Index{Files: []File{{Name: "pages-1.img", Size: 3 * PageSize, Pieces: Hashes{sum([]byte("a")), sum([]byte("b")), sum([]byte("c"))}}}}
	good := grown.MarshalBinaryDiff(base)
	// The same file grown by two pieces with only one of them listed.
	oneListed := append([]byte("HIXD"), 1, byte(len("pages-1.img")))
	oneListed = append(oneListed, "pages-1.img"...)
	oneListed = append(oneListed, 0x80, 0x60, 0, 3, 1, 2) // size 3 pages, mode 0, 3 pieces, 1 changed at +2
	oneListed = append(oneListed, make([]byte, hashSize)...)
	// The same file twice: each would copy the base file's pieces.
	twice := append([]byte("HIXD"), 2)
	for range 2 {
		twice = append(twice, byte(len("pages-1.img")))
		twice = append(twice, "pages-1.img"...)
		twice = append(twice, 0x80, 0x20, 0, 1, 0) // one page, mode 0, 1 piece, none changed
	}
	for name, data := range map[string][]byte{
		"empty":          nil,
		"full index":     append([]byte("HIX1"), good[4:]...),
		"truncated":      good[:len(good)-5],
		"trailing":       append(append([]byte{}, good...), 0),
		"gap of zero":    append(append([]byte{}, good[:len(good)-2*hashSize-2]...), append([]byte{0}, good[len(good)-2*hashSize-1:]...)...),
		"growth missing": oneListed,
		"name one past":  []byte("HIXD\x01\x04abc"),
		"named twice":    twice,
	} {
		var back Index
		_, err := back.UnmarshalBinaryDiff(data, base)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "index: ") {
			t.Errorf("%s: error %q does not say it is about the index", name, err)
		}
	}
}

// allocated runs f and returns how many bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestIndexDecodingAllocatesLittle: what a peer's index or difference
// makes this side allocate is bounded by its size (and the base the
// receiver already holds), whatever counts it declares.
func TestIndexDecodingAllocatesLittle(t *testing.T) {
	h := func(s string) Hash { return sum([]byte(s)) }
	base := &Index{Files: []File{{Name: "pages-1.img", Size: 256 * PageSize, Pieces: make(Hashes, 256)}}}
	for i := range base.Files[0].Pieces {
		base.Files[0].Pieces[i] = h(fmt.Sprint(i))
	}
	// A file declaring 100 MiB of hashes (6.5 M pages), none listed.
	huge := append([]byte("HIXD"), 1)
	huge = append(huge, byte(len("pages-2.img")))
	huge = append(huge, "pages-2.img"...)
	pieces := uint64(100<<20) / uint64(hashSize)
	huge = binary.AppendUvarint(huge, pieces*PageSize)
	huge = append(huge, 0)
	huge = binary.AppendUvarint(huge, pieces)
	huge = append(huge, 0)
	huge = append(huge, make([]byte, 2200-len(huge))...)
	// The base's big file named 100 times: each copy is 4 KiB of hashes.
	repeated := append([]byte("HIXD"), 100)
	for range 100 {
		repeated = append(repeated, byte(len("pages-1.img")))
		repeated = append(repeated, "pages-1.img"...)
		repeated = binary.AppendUvarint(repeated, 256*PageSize)
		repeated = append(repeated, 0)
		repeated = binary.AppendUvarint(repeated, 256)
		repeated = append(repeated, 0)
	}
	// A full index declaring 65,536 files in 6 bytes.
	many := append([]byte("HIX1"), 0x80, 0x80, 0x04, 1, 'x')
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"diff declaring 100 MiB of pieces", huge},
		{"diff naming a base file 100 times", repeated},
		{"index declaring 65536 files", many},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocated(func() {
				var ix Index
				if string(tt.data[:4]) == "HIXD" {
					_, err = ix.UnmarshalBinaryDiff(tt.data, base)
				} else {
					err = ix.UnmarshalBinary(tt.data)
				}
			})
			if err == nil {
				t.Error("accepted")
			}
			if limit := uint64(64 << 10); n > limit {
				t.Errorf("%d bytes of input allocated %d bytes, more than %d", len(tt.data), n, limit)
			}
		})
	}
}
