package delta

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// completeFirstRound finishes a first round into dst, which holds what was
// streamed: the index, Adopt, the missing pieces, FillImage. It returns the
// bytes the pieces carried.
func completeFirstRound(t *testing.T, src, dst string, st *Streamed) int64 {
	t.Helper()
	ix, err := IndexDir(src)
	if err != nil {
		t.Fatal(err)
	}
	pool := NewPool()
	want, err := pool.Adopt(dst, ix, st)
	if err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	sent, err := WritePieces(&wire, src, ix, want)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.ReceiveImage(&wire, dst, ix, want); err != nil {
		t.Fatal(err)
	}
	if err := pool.FillImage(dst, ix); err != nil {
		t.Fatal(err)
	}
	sameDirs(t, src, dst)
	return sent
}

func sameDirs(t *testing.T, want, got string) {
	t.Helper()
	ents, _ := os.ReadDir(want)
	gotEnts, _ := os.ReadDir(got)
	if len(ents) != len(gotEnts) {
		t.Errorf("%d files, want %d", len(gotEnts), len(ents))
	}
	for _, e := range ents {
		a, _ := os.ReadFile(filepath.Join(want, e.Name()))
		b, err := os.ReadFile(filepath.Join(got, e.Name()))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs (%d vs %d bytes, %v)", e.Name(), len(b), len(a), err)
		}
	}
}

// TestGrowingImageArrivesBeforeItsIndex: page images are sent while they
// are written, a page at a time, including a page rewritten after it was
// sent; the index round then carries only the other files and that page.
func TestGrowingImageArrivesBeforeItsIndex(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	pages := randomPages(t, 300)
	rewritten := randomPages(t, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, _ := os.Create(filepath.Join(src, "pages-1.img"))
		defer f.Close()
		for i := 0; i < 300; i += 7 {
			// Torn writes too: half a page, then the rest.
			chunk := pages[i*PageSize : min(300, i+7)*PageSize]
			f.Write(chunk[:len(chunk)-PageSize/2])
			time.Sleep(time.Millisecond)
			f.Write(chunk[len(chunk)-PageSize/2:])
		}
		time.Sleep(10 * time.Millisecond)
		f.WriteAt(rewritten, 5*PageSize) // sent already: the index finds it changed
		os.WriteFile(filepath.Join(src, "pages-2.img"), pages[:3*PageSize], 0o600)
		os.WriteFile(filepath.Join(src, "core-1.img"), []byte("not a page image"), 0o600)
	}()
	pr, pw := io.Pipe()
	var reports int
	go func() {
		_, err := SendGrowing(context.Background(), pw, src, done, func(sent, written int64) {
			if sent > written {
				t.Errorf("sent %d of %d written", sent, written)
			}
			reports++
		})
		pw.CloseWithError(err)
	}()
	st, err := ReceiveGrowing(pr, dst, 10<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Bytes(); got < 300*PageSize {
		t.Errorf("streamed %d bytes, want at least the %d of pages-1.img", got, 300*PageSize)
	}
	if reports < 2 {
		t.Errorf("%d progress reports: the pages did not go as they were written", reports)
	}
	copy(pages[5*PageSize:], rewritten)
	if sent := completeFirstRound(t, src, dst, st); sent != PageSize+int64(len("not a page image")) {
		t.Errorf("the index round sent %d bytes, want the rewritten page and core-1.img", sent)
	}
}

// TestAdoptTakesOnlyWhatMatches: whatever dst holds, the first round ends
// with an exact copy, and only pieces found at their place are not sent.
func TestAdoptTakesOnlyWhatMatches(t *testing.T) {
	a, b := randomPages(t, 8), randomPages(t, 4)
	src := writeDir(t, map[string][]byte{"pages-1.img": a, "pages-2.img": b, "core.img": []byte("core")})
	torn := bytes.Clone(a)
	torn[3*PageSize+9] ^= 1
	for _, tc := range []struct {
		name string
		have map[string][]byte
		sent int64
	}{
		{"nothing", nil, 12*PageSize + 4},
		{"all pages", map[string][]byte{"pages-1.img": a, "pages-2.img": b}, 4},
		{"a torn page", map[string][]byte{"pages-1.img": torn, "pages-2.img": b}, PageSize + 4},
		{"half a file", map[string][]byte{"pages-1.img": a[:4*PageSize+100]}, 8*PageSize + 4},
		{"a longer file and a stray one", map[string][]byte{"pages-1.img": append(bytes.Clone(a), b...), "pages-9.img": b}, 4*PageSize + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := writeDir(t, tc.have)
			if sent := completeFirstRound(t, src, dst, nil); sent != tc.sent {
				t.Errorf("sent %d bytes, want %d", sent, tc.sent)
			}
		})
	}
}

// TestReceiveGrowingRefuses: a stream may only write page images inside
// its dir, within its limits, and must end properly.
func TestReceiveGrowingRefuses(t *testing.T) {
	record := func(name string, off int64, data []byte) []byte {
		var b bytes.Buffer
		writeRecord(&b, name, off, data)
		return b.Bytes()
	}
	end := record("", 0, nil)
	page := randomPages(t, 1)
	for _, tc := range []struct {
		name, want string
		stream     []byte
	}{
		{"escape", "not a page image", append(record("../pages-1.img", 0, page), end...)},
		{"not a page image", "not a page image", append(record("inventory.img", 0, page), end...)},
		{"past the largest file", "out of range", append(record("pages-1.img", MaxFileSize, page), end...)},
		// A few bytes far into a file would make it sparse and huge.
		{"a hole", "not where the file ends", append(record("pages-1.img", 16<<30, page), end...)},
		{"a hole after a page", "not where the file ends", append(append(record("pages-1.img", 0, page), record("pages-1.img", 2*PageSize, page)...), end...)},
		{"over the limit", "larger than", append(record("pages-1.img", 0, randomPages(t, 3)), end...)},
		{"cut short", "read", record("pages-1.img", 0, page)[:100]},
		{"no end", "read stream record", record("pages-1.img", 0, page)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := ReceiveGrowing(bytes.NewReader(tc.stream), filepath.Join(dir, "dst"), 2*PageSize)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "pages-1.img")); err == nil {
				t.Error("a file was written outside the stream's dir")
			}
			if info, err := os.Stat(filepath.Join(dir, "dst", "pages-1.img")); err == nil && info.Size() > 2*PageSize {
				t.Errorf("a stream limited to %d bytes made a file of %d", 2*PageSize, info.Size())
			}
		})
	}
}
