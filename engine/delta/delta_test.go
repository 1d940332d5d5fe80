package delta

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func randomPages(t testing.TB, n int) []byte {
	b := make([]byte, n*PageSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeDir(t testing.TB, files map[string][]byte) string {
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// transfer runs one round as sender and receiver would and returns the bytes sent.
func transfer(t *testing.T, pool *Pool, src, dst string) int64 {
	t.Helper()
	ix, err := IndexDir(src)
	if err != nil {
		t.Fatal(err)
	}
	want := pool.Missing(ix)
	var wire bytes.Buffer
	sent, err := WritePieces(&wire, src, ix, want)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.ReadPieces(&wire, t.TempDir(), ix, want); err != nil {
		t.Fatal(err)
	}
	if err := pool.Assemble(dst, ix); err != nil {
		t.Fatal(err)
	}
	pool.Add(dst, ix)
	return sent
}

func TestRoundsSendOnlyWhatChanged(t *testing.T) {
	v1 := randomPages(t, 300)
	// v2: 5 pages rewritten, 3 new pages inserted near the front (shifting
	// everything after them), one page dropped at the end.
	v2 := append([]byte(nil), v1[:10*PageSize]...)
	v2 = append(v2, randomPages(t, 3)...)
	v2 = append(v2, v1[10*PageSize:299*PageSize]...)
	for _, p := range []int{50, 51, 120, 200, 250} {
		copy(v2[p*PageSize:], randomPages(t, 1))
	}
	meta := []byte(strings.Repeat("core image ", 1000))

	pool := NewPool()
	first := transfer(t, pool, writeDir(t, map[string][]byte{"pages-1.img": v1, "core-1.img": meta}), filepath.Join(t.TempDir(), "r1"))
	if first != int64(len(v1)+len(meta)) {
		t.Fatalf("first round sent %d bytes, want everything (%d)", first, len(v1)+len(meta))
	}
	src2 := writeDir(t, map[string][]byte{"pages-1.img": v2, "core-1.img": meta})
	dst2 := filepath.Join(t.TempDir(), "r2")
	second := transfer(t, pool, src2, dst2)
	if want := int64(8 * PageSize); second != want {
		t.Fatalf("second round sent %d bytes, want %d (8 changed pages)", second, want)
	}
	got, err := os.ReadFile(filepath.Join(dst2, "pages-1.img"))
	if err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("assembled page image differs from the source (err %v)", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst2, "core-1.img")); !bytes.Equal(got, meta) {
		t.Fatal("assembled core image differs")
	}
}

func TestCorruptPieceRejected(t *testing.T) {
	src := writeDir(t, map[string][]byte{"pages-1.img": randomPages(t, 4)})
	ix, _ := IndexDir(src)
	pool := NewPool()
	want := pool.Missing(ix)
	var wire bytes.Buffer
	if _, err := WritePieces(&wire, src, ix, want); err != nil {
		t.Fatal(err)
	}
	b := wire.Bytes()
	b[len(b)-100] ^= 0xff
	err := pool.ReadPieces(bytes.NewReader(b), t.TempDir(), ix, want)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupted piece: err %v, want ErrCorrupt", err)
	}
	if err := pool.Assemble(t.TempDir(), ix); err == nil {
		t.Fatal("assembled an image with a piece missing")
	}
}

func TestTruncatedStream(t *testing.T) {
	src := writeDir(t, map[string][]byte{"pages-1.img": randomPages(t, 4)})
	ix, _ := IndexDir(src)
	pool := NewPool()
	want := pool.Missing(ix)
	var wire bytes.Buffer
	WritePieces(&wire, src, ix, want)
	if err := pool.ReadPieces(bytes.NewReader(wire.Bytes()[:wire.Len()/2]), t.TempDir(), ix, want); err == nil {
		t.Fatal("a truncated stream was accepted")
	}
}

func TestValidate(t *testing.T) {
	h := Hash{1}
	tests := []struct {
		name string
		ix   Index
		want string
	}{
		{"ok", Index{Files: []File{{Name: "pages-1.img", Size: PageSize + 1, Pieces: []Hash{h, h}}}}, ""},
		{"dotdot", Index{Files: []File{{Name: "../etc/passwd"}}}, "unsafe"},
		{"absolute", Index{Files: []File{{Name: "/etc/passwd"}}}, "unsafe"},
		{"subdir", Index{Files: []File{{Name: "a/b"}}}, "unsafe"},
		{"dot", Index{Files: []File{{Name: ".."}}}, "unsafe"},
		{"twice", Index{Files: []File{{Name: "a"}, {Name: "a"}}}, "twice"},
		{"negative", Index{Files: []File{{Name: "a", Size: -1}}}, "out of range"},
		{"huge", Index{Files: []File{{Name: "a", Size: MaxFileSize + 1}}}, "out of range"},
		{"short", Index{Files: []File{{Name: "pages-1.img", Size: 3 * PageSize, Pieces: []Hash{h}}}}, "pieces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ix.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("pages-1.img", int64(5000), 2)
	f.Add("../x", int64(1), 1)
	f.Fuzz(func(t *testing.T, name string, size int64, pieces int) {
		if pieces < 0 || pieces > 1<<12 {
			return
		}
		ix := Index{Files: []File{{Name: name, Size: size, Pieces: make([]Hash, pieces)}}}
		if ix.Validate() == nil {
			if filepath.Base(name) != name || name == ".." || name == "." {
				t.Fatalf("accepted unsafe name %q", name)
			}
			if _, err := filepath.Rel("/x", filepath.Join("/x", name)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// BenchmarkIndex measures hashing a 200 MB page image (done while the app is
// frozen), beside a plain read of the same file as the baseline.
func BenchmarkIndex(b *testing.B) {
	dir := writeDir(b, map[string][]byte{"pages-1.img": randomPages(b, 200<<20/PageSize)})
	b.SetBytes(200 << 20)
	b.Run("read-baseline", func(b *testing.B) {
		b.SetBytes(200 << 20)
		buf := make([]byte, 1<<20)
		for range b.N {
			f, err := os.Open(filepath.Join(dir, "pages-1.img"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("index", func(b *testing.B) {
		b.SetBytes(200 << 20)
		for range b.N {
			if _, err := IndexDir(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestHashesJSON(t *testing.T) {
	in := Hashes{sum([]byte("a")), sum([]byte("b")), {}}
	data, err := json.Marshal(struct{ P Hashes }{in})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ P Hashes }
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out.P) {
		t.Fatalf("round trip: %v, want %v", out.P, in)
	}
	for _, bad := range []string{`{"P":"AAAA"}`, `{"P":"!!"}`, `{"P":[1,2]}`} {
		if err := json.Unmarshal([]byte(bad), &out); err == nil {
			t.Errorf("%s: decoded without error", bad)
		}
	}
}

// TestAssembleOverReusesTheEarlierImage follows the receiver: the pre-copy
// round is spooled and put together once; the final image is written over
// it, only the pieces that changed at their place.
func TestAssembleOverReusesTheEarlierImage(t *testing.T) {
	v1 := randomPages(t, 200)
	copy(v1[20*PageSize:21*PageSize], v1[10*PageSize:11*PageSize]) // a repeated page
	v2 := append([]byte(nil), v1...)
	for _, p := range []int{5, 6, 150} {
		copy(v2[p*PageSize:], randomPages(t, 1))
	}
	copy(v2[7*PageSize:8*PageSize], v1[60*PageSize:61*PageSize]) // a page that moved
	v2 = append(v2, randomPages(t, 4)...)                        // grew
	meta1, meta2 := []byte(strings.Repeat("core ", 900)), []byte(strings.Repeat("core' ", 700))
	extra := []byte("only in the final image")

	pool := NewPool()
	round := func(files map[string][]byte) *Index {
		src := writeDir(t, files)
		ix, err := IndexDir(src)
		if err != nil {
			t.Fatal(err)
		}
		want := pool.Missing(ix)
		var wire bytes.Buffer
		if _, err := WritePieces(&wire, src, ix, want); err != nil {
			t.Fatal(err)
		}
		if err := pool.ReadPieces(&wire, t.TempDir(), ix, want); err != nil {
			t.Fatal(err)
		}
		return ix
	}
	preIx := round(map[string][]byte{"pages-1.img": v1, "core-1.img": meta1})
	pre := filepath.Join(t.TempDir(), "pre")
	if err := pool.Assemble(pre, preIx); err != nil {
		t.Fatal(err)
	}
	finalIx := round(map[string][]byte{"pages-1.img": v2, "core-1.img": meta2, "extra.img": extra})
	dst := filepath.Join(t.TempDir(), "image")
	if err := pool.AssembleOver(dst, finalIx, pre, preIx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"pages-1.img": v2, "core-1.img": meta2, "extra.img": extra} {
		if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from the source (err %v)", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(pre, "pages-1.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the earlier page image was copied, not reused (stat: %v)", err)
	}
}

// receiverRounds runs rounds as the handoff receiver does: the first image
// received in place and completed, each later one spooled, assembled over
// the image before it and made the pool's only content; the last round is
// assembled without a rebase, like the final image at commit. It returns
// the last image's dir and the bytes each round sent.
func receiverRounds(t *testing.T, rounds []map[string][]byte) (string, []int64) {
	t.Helper()
	pool := NewPool()
	var image string
	var imageIx *Index
	var sent []int64
	for n, files := range rounds {
		src := writeDir(t, files)
		ix, err := IndexDir(src)
		if err != nil {
			t.Fatal(err)
		}
		want := pool.Missing(ix)
		var wire bytes.Buffer
		k, err := WritePieces(&wire, src, ix, want)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, k)
		dst := filepath.Join(t.TempDir(), fmt.Sprintf("round%d", n+1))
		if n == 0 {
			if err := pool.ReceiveImage(&wire, dst, ix, want); err != nil {
				t.Fatal(err)
			}
			if err := pool.FillImage(dst, ix); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := pool.ReadPieces(&wire, t.TempDir(), ix, want); err != nil {
				t.Fatal(err)
			}
			if err := pool.AssembleOver(dst, ix, image, imageIx); err != nil {
				t.Fatalf("round %d: %v", n+1, err)
			}
			if err := os.RemoveAll(image); err != nil {
				t.Fatal(err)
			}
			if n < len(rounds)-1 {
				if err := pool.Rebase(dst, ix); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, want := range files {
			if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d: %s differs from the source (err %v)", n+1, name, err)
			}
		}
		ents, _ := os.ReadDir(dst)
		if len(ents) != len(files) {
			t.Fatalf("round %d: image dir has %d entries, want only the %d image files", n+1, len(ents), len(files))
		}
		image, imageIx = dst, ix
	}
	return image, sent
}

// TestImagesReceivedInPlace covers what the pool reads from an image that
// is then overwritten: pages that move or shift between rounds, files that
// shrink, vanish or trade pages, and pages an image repeats.
func TestImagesReceivedInPlace(t *testing.T) {
	v1 := randomPages(t, 120)
	copy(v1[30*PageSize:31*PageSize], v1[3*PageSize:4*PageSize]) // a repeated page
	shifted := append(append(append([]byte(nil), v1[:5*PageSize]...), randomPages(t, 2)...), v1[5*PageSize:]...)
	swapped := append(append([]byte(nil), v1[60*PageSize:]...), v1[:60*PageSize]...)
	other := randomPages(t, 10)
	meta := []byte(strings.Repeat("core ", 500))
	for _, tc := range []struct {
		name  string
		later []map[string][]byte
		sent  []int64 // bytes each later round sends
	}{
		{"unchanged", []map[string][]byte{{"pages-1.img": v1, "core-1.img": meta}}, []int64{0}},
		{"pages shift", []map[string][]byte{{"pages-1.img": shifted, "core-1.img": meta}}, []int64{2 * PageSize}},
		{"halves swap", []map[string][]byte{{"pages-1.img": swapped, "core-1.img": meta}}, []int64{0}},
		{"shrinks, then grows back", []map[string][]byte{
			{"pages-1.img": v1[:40*PageSize], "core-1.img": meta},
			{"pages-1.img": v1, "core-1.img": meta},
		}, []int64{0, 80 * PageSize}},
		{"pages move to another file", []map[string][]byte{
			{"pages-1.img": other, "pages-2.img": v1[50*PageSize:], "core-1.img": meta},
			{"pages-2.img": v1, "core-1.img": meta[:100]},
		}, []int64{0, 49*PageSize + 100}}, // page 30 repeats page 3
		{"a file goes", []map[string][]byte{{"pages-2.img": other}}, []int64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := map[string][]byte{"pages-1.img": v1, "pages-2.img": other, "core-1.img": meta}
			_, sent := receiverRounds(t, append([]map[string][]byte{first}, tc.later...))
			if want := int64(len(v1) - PageSize + len(other) + len(meta)); sent[0] != want {
				t.Errorf("first round sent %d bytes, want %d (every piece once)", sent[0], want)
			}
			if !reflect.DeepEqual(sent[1:], tc.sent) {
				t.Errorf("later rounds sent %v bytes, want %v", sent[1:], tc.sent)
			}
		})
	}
}

func TestReceiveImageRejectsDamage(t *testing.T) {
	src := writeDir(t, map[string][]byte{"pages-1.img": randomPages(t, 4)})
	ix, _ := IndexDir(src)
	pool := NewPool()
	want := pool.Missing(ix)
	var wire bytes.Buffer
	if _, err := WritePieces(&wire, src, ix, want); err != nil {
		t.Fatal(err)
	}
	b := wire.Bytes()
	b[len(b)-100] ^= 0xff
	if err := pool.ReceiveImage(bytes.NewReader(b), t.TempDir(), ix, want); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupted piece: err %v, want ErrCorrupt", err)
	}
	if err := pool.ReceiveImage(bytes.NewReader(b[:len(b)/2]), t.TempDir(), ix, want); err == nil {
		t.Fatal("a truncated stream was accepted")
	}
}
