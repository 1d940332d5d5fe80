package delta

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Fuzz targets for everything here that reads a peer's bytes: the binary
// index and its difference, the places a receiver answers, the streamed
// page images and the pieces. `make fuzz` runs each for a minute, `make
// test` for a few seconds.

// imageDir writes a directory shaped like a CRIU dump of a small app: page
// images with runs of equal and zero pages, and the small protobuf files
// beside them. seed varies the content, so two seeds make two rounds of
// one app.
func imageDir(tb testing.TB, seed uint64) string {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	page := func(kind int) []byte {
		p := make([]byte, PageSize)
		switch kind {
		case 0: // zero page
		case 1: // a page every process has
			copy(p, "ELF shared text")
		default:
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
		}
		return p
	}
	files := map[string][]byte{
		"core-1.img":       bytes.Repeat([]byte("core"), 300),
		"mm-1.img":         bytes.Repeat([]byte{0x0a, 0x10}, 900),
		"pagemap-1.img":    bytes.Repeat([]byte{1, 2, 3}, 40),
		"inventory.img":    []byte("inventory"),
		"pages-2.img":      nil,
		"files.img":        []byte{},
		"fdinfo-2.img":     bytes.Repeat([]byte{0x08}, 77),
		"tty-info.img":     []byte("tty"),
		"pagemap-shmem.im": []byte("not a page image by name"),
	}
	var pages []byte
	for i := range 24 {
		pages = append(pages, page(int(rng.Uint32()%3)+i%2)...)
	}
	files["pages-1.img"] = pages
	files["pages-2.img"] = append(page(2), page(0)...)
	return writeDir(tb, files)
}

// indexOf indexes dir.
func indexOf(tb testing.TB, dir string) *Index {
	tb.Helper()
	ix, err := IndexDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return ix
}

func FuzzUnmarshalBinary(f *testing.F) {
	for seed := range uint64(3) {
		data, err := indexOf(f, imageDir(f, seed)).MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("HIX1\x01\x04abc"))
	f.Add([]byte("HIX1\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ix Index
		if err := ix.UnmarshalBinary(data); err != nil {
			return
		}
		// What it holds came from data: no more files or hashes than
		// the bytes could carry.
		pieces := 0
		for _, f := range ix.Files {
			pieces += len(f.Pieces)
		}
		if len(ix.Files)*minFileBytes > len(data) || pieces*hashSize > len(data) {
			t.Fatalf("%d bytes made %d files and %d pieces", len(data), len(ix.Files), pieces)
		}
		again, err := ix.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Index
		if err := back.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded index does not decode: %v", err)
		}
		if !reflect.DeepEqual(normal(&ix), normal(&back)) {
			t.Fatal("the index changed going round")
		}
		if ix.Validate() == nil {
			if _, err := NewPool().MissingAmong(&ix, NewPool().Missing(&ix)); err != nil {
				t.Fatalf("a valid index's own places do not resolve: %v", err)
			}
		}
	})
}

// normal makes empty and nil piece lists compare equal.
func normal(ix *Index) *Index {
	out := &Index{Files: make([]File, len(ix.Files))}
	for i, f := range ix.Files {
		if len(f.Pieces) == 0 {
			f.Pieces = nil
		}
		out.Files[i] = f
	}
	return out
}

func FuzzUnmarshalBinaryDiff(f *testing.F) {
	base := indexOf(f, imageDir(f, 0))
	for seed := range uint64(3) {
		f.Add(indexOf(f, imageDir(f, seed)).MarshalBinaryDiff(base))
	}
	f.Add((&Index{}).MarshalBinaryDiff(base))
	f.Add([]byte("HIXD\x01\x04abc"))
	basePieces := 0
	for _, f := range base.Files {
		basePieces += len(f.Pieces)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ix Index
		changed, err := ix.UnmarshalBinaryDiff(data, base)
		if err != nil {
			return
		}
		pieces := 0
		for _, f := range ix.Files {
			pieces += len(f.Pieces)
		}
		// Pieces are the base's (each name once) or were listed in data.
		if pieces > basePieces+len(data)/(1+hashSize) {
			t.Fatalf("%d bytes over a base of %d pieces made %d pieces", len(data), basePieces, pieces)
		}
		for i, k := range changed {
			if k >= pieces || (i > 0 && k <= changed[i-1]) {
				t.Fatalf("changed places %v do not increase within %d pieces", changed, pieces)
			}
		}
		again := ix.MarshalBinaryDiff(base)
		var back Index
		if _, err := back.UnmarshalBinaryDiff(again, base); err != nil {
			t.Fatalf("re-encoded difference does not decode: %v", err)
		}
		if !reflect.DeepEqual(normal(&ix), normal(&back)) {
			t.Fatal("the index changed going round")
		}
		if ix.Validate() == nil {
			pool := NewPool()
			pool.Add(t.TempDir(), base)
			if _, err := pool.MissingAmong(&ix, changed); err != nil {
				t.Fatalf("changed places do not resolve: %v", err)
			}
		}
	})
}

// onlyInside fails t if parent holds anything but its entry inside (or
// nothing), or if inside holds anything but regular files.
func onlyInside(t *testing.T, parent, inside string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != inside {
			t.Fatalf("%s was written beside the receiving dir", e.Name())
		}
	}
	ents, _ = os.ReadDir(filepath.Join(parent, inside))
	for _, e := range ents {
		if !e.Type().IsRegular() {
			t.Fatalf("%s in the receiving dir is not a regular file (%v)", e.Name(), e.Type())
		}
	}
}

func FuzzReceiveGrowing(f *testing.F) {
	src := imageDir(f, 1)
	done := make(chan struct{})
	close(done)
	var wire bytes.Buffer
	if _, err := SendGrowing(context.Background(), &wire, src, done, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(wire.Bytes())
	var rec bytes.Buffer
	writeRecord(&rec, "pages-1.img", 0, make([]byte, PageSize))
	writeRecord(&rec, "pages-1.img", 16<<30, []byte{1})
	writeRecord(&rec, "", 0, nil)
	f.Add(rec.Bytes())
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, stream []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "dst")
		st, err := ReceiveGrowing(bytes.NewReader(stream), dst, limit)
		onlyInside(t, parent, "dst")
		var total int64
		ents, _ := os.ReadDir(dst)
		for _, e := range ents {
			if !isPageImage(e.Name()) {
				t.Fatalf("the stream wrote %s, not a page image", e.Name())
			}
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			total += info.Size()
		}
		// No holes: the files hold no more than what arrived.
		if total > limit || total != st.Bytes() {
			t.Fatalf("%d bytes arrived, the files hold %d (limit %d)", st.Bytes(), total, limit)
		}
		if err != nil {
			return
		}
		// What arrived then serves a first round like any image.
		ix := indexOf(t, src)
		if _, err := NewPool().Adopt(dst, ix, st); err != nil {
			t.Fatalf("adopt what streamed: %v", err)
		}
		onlyInside(t, parent, "dst")
	})
}

func FuzzReceivePieces(f *testing.F) {
	src := imageDir(f, 2)
	ix := indexOf(f, src)
	want := NewPool().Missing(ix)
	var wire bytes.Buffer
	if _, err := WritePieces(&wire, src, ix, want); err != nil {
		f.Fatal(err)
	}
	f.Add(wire.Bytes(), true)
	f.Add(wire.Bytes(), false)
	f.Add(wire.Bytes()[:wire.Len()/2], true)
	f.Fuzz(func(t *testing.T, body []byte, image bool) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "in")
		if image {
			// Straight into place, at the offsets the index gives.
			pool := NewPool()
			err := pool.ReceiveImage(bytes.NewReader(body), dst, ix, want)
			onlyInside(t, parent, "in")
			if err == nil {
				if err := pool.FillImage(dst, ix); err != nil {
					t.Fatal(err)
				}
				sameDirs(t, src, dst)
			}
			return
		}
		if err := os.Mkdir(dst, 0o700); err != nil {
			t.Fatal(err)
		}
		b, err := ReceivePieces(bytes.NewReader(body), dst, ix, want)
		onlyInside(t, parent, "in")
		if err != nil {
			if ents, _ := os.ReadDir(dst); len(ents) != 0 {
				t.Fatalf("a refused batch left %d files", len(ents))
			}
			return
		}
		// Every piece that arrived is the one its hash names.
		pool := NewPool()
		pool.AddBatch(b)
		if err := pool.Assemble(filepath.Join(dst, "image"), ix); err != nil {
			t.Fatal(err)
		}
		sameDirs(t, src, filepath.Join(dst, "image"))
	})
}

func FuzzPlaces(f *testing.F) {
	for _, ps := range []Places{nil, {0}, {1, 2, 3, 900}, {5, 1 << 20}} {
		data, err := json.Marshal(ps)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ps Places
		if err := json.Unmarshal(data, &ps); err != nil {
			return
		}
		if len(ps) > len(data) {
			t.Fatalf("%d bytes made %d places", len(data), len(ps))
		}
		for i, k := range ps {
			if k < 0 || k > maxPlace || (i > 0 && k <= ps[i-1]) {
				t.Fatalf("places %v do not increase within the largest index", ps)
			}
		}
		again, err := json.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		var back Places
		if err := json.Unmarshal(again, &back); err != nil || !reflect.DeepEqual(normalPlaces(ps), normalPlaces(back)) {
			t.Fatalf("places changed going round: %v, %v", back, err)
		}
	})
}

func normalPlaces(ps Places) Places {
	if len(ps) == 0 {
		return nil
	}
	return ps
}
