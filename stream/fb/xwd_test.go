package fb

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The files in testdata are screens Xvfb wrote (-fbdir) at depth 24 and
// 16: 64×48 and 40×30 pixels.
const (
	screen24 = "testdata/xvfb-64x48x24.xwd"
	screen16 = "testdata/xvfb-40x30x16.xwd"
)

// copyScreen copies a screen file into a temporary dir, where a test may
// change it.
func copyScreen(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "Xvfb_screen0")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenXvfbScreens(t *testing.T) {
	for _, tt := range []struct {
		file          string
		width, height int
		bits          int
	}{
		{screen24, 64, 48, 32},
		{screen16, 40, 30, 16},
	} {
		t.Run(tt.file, func(t *testing.T) {
			fb, err := Open(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			defer fb.Close()
			info, _ := os.Stat(tt.file)
			if fb.Width != tt.width || fb.Height != tt.height || fb.BitsPerPixel != tt.bits || fb.Size() != info.Size() {
				t.Errorf("format %+v (size %d), want %dx%d at %d bits in %d bytes", fb.Format, fb.Size(), tt.width, tt.height, tt.bits, info.Size())
			}
			img, err := fb.Snapshot()
			if err != nil || img.Rect.Dx() != tt.width || img.Rect.Dy() != tt.height {
				t.Fatalf("snapshot %v, %v", img.Rect, err)
			}
		})
	}
}

func TestScale8FillsTheRange(t *testing.T) {
	for _, tt := range []struct{ v, bits uint32 }{{31, 5}, {63, 6}, {1, 1}, {7, 3}, {255, 8}} {
		if got := scale8(tt.v, tt.bits); got != 255 {
			t.Errorf("scale8(%d, %d bits) = %d, want 255", tt.v, tt.bits, got)
		}
	}
	if got := scale8(16, 5); got != 132 { // 10000 → 10000100
		t.Errorf("scale8(16, 5) = %d, want 132", got)
	}
	if got := scale8(0, 5); got != 0 {
		t.Errorf("scale8(0, 5) = %d", got)
	}
}

// header returns the first 100 bytes of the 24-bit screen with field i
// (a CARD32, big-endian like Xvfb writes it) set to v.
func header(t *testing.T, set map[int]uint32) []byte {
	t.Helper()
	data, err := os.ReadFile(screen24)
	if err != nil {
		t.Fatal(err)
	}
	h := data[:xwdHeaderLen]
	for i, v := range set {
		binary.BigEndian.PutUint32(h[i*4:], v)
	}
	return h
}

// Field numbers of the XWD header.
const (
	fHeaderSize   = 0
	fWidth        = 4
	fHeight       = 5
	fBitsPerPixel = 11
	fBytesPerLine = 12
	fNColors      = 19
)

func TestParseHeaderRefuses(t *testing.T) {
	if _, err := ParseHeader(header(t, nil)); err != nil {
		t.Fatalf("Xvfb's own header: %v", err)
	}
	for name, set := range map[string]map[int]uint32{
		"header shorter than its fields": {fHeaderSize: 50},
		"header of 4 GiB":                {fHeaderSize: 1<<32 - 1},
		"4 billion colors":               {fNColors: 1<<32 - 1},
		"no width":                       {fWidth: 0},
		"too wide":                       {fWidth: 1 << 20, fBytesPerLine: 4 << 20},
		"too high":                       {fHeight: 1<<32 - 1},
		"rows shorter than the width":    {fBytesPerLine: 64*4 - 1},
		"rows of 4 GiB":                  {fBytesPerLine: 1<<32 - 1},
		"24 bits a pixel":                {fBitsPerPixel: 24},
	} {
		t.Run(name, func(t *testing.T) {
			if f, err := ParseHeader(header(t, set)); !errors.Is(err, ErrFormat) {
				t.Errorf("accepted as %+v (%v)", f, err)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(screen24)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, good[:len(good)-1], 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(screen24, link)
	for name, path := range map[string]string{"shorter than its pixels": short, "a FIFO": fifo, "a symlink": link, "a directory": dir} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				fb, err := Open(path)
				if err == nil {
					fb.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Error("opened")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Open hung")
			}
		})
	}
}

// TestTruncatedWhileRead: the app cuts the framebuffer file short while
// it is read; reading says so, and the process lives (a mapping read past
// the end of its file raises SIGBUS).
func TestTruncatedWhileRead(t *testing.T) {
	path := copyScreen(t, screen24)
	fb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	done := make(chan error, 1)
	reads := make(chan struct{}, 1)
	go func() {
		for {
			if _, err := fb.Snapshot(); err != nil {
				done <- err
				return
			}
			select {
			case reads <- struct{}{}:
			default:
			}
		}
	}()
	<-reads
	if err := os.Truncate(path, xwdHeaderLen); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v, want ErrTruncated", err)
		}
		t.Logf("read after the cut: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("reading went on after the file was cut short")
	}
	// And later reads fail the same way, they do not crash.
	if err := fb.Read(func(p []byte) { lastByte = p[len(p)-1] }); !errors.Is(err, ErrTruncated) {
		t.Fatalf("a later read: %v", err)
	}
	// A panic of the reader's own is not taken for a cut file.
	defer func() {
		if r := recover(); r == nil {
			t.Error("the reader's own panic was swallowed")
		}
	}()
	_ = fb.Read(func(p []byte) { panic("the reader's own") })
}

var lastByte byte

func FuzzParseHeader(f *testing.F) {
	for _, name := range []string{screen24, screen16} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		format, err := ParseHeader(data)
		if err != nil {
			return
		}
		if format.Size() <= 0 || format.PixelOffset < xwdHeaderLen || format.Stride*8 < format.Width*format.BitsPerPixel {
			t.Fatalf("accepted %+v", format)
		}
		// The file as Open would take it, or refuse it.
		path := filepath.Join(t.TempDir(), "Xvfb_screen0")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fb, err := Open(path)
		if int64(len(data)) < format.Size() {
			if err == nil {
				fb.Close()
				t.Fatalf("a file of %d bytes opened for pixels ending at %d", len(data), format.Size())
			}
			return
		}
		if err != nil {
			t.Fatalf("a file holding its pixels: %v", err)
		}
		defer fb.Close()
		if _, err := fb.Snapshot(); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkReadGuard is what Read adds to a read of the pixels: arming
// and disarming the fault guard around an empty reader.
func BenchmarkReadGuard(b *testing.B) {
	fb, err := Open(screen24)
	if err != nil {
		b.Fatal(err)
	}
	defer fb.Close()
	for b.Loop() {
		if err := fb.Read(func([]byte) {}); err != nil {
			b.Fatal(err)
		}
	}
}
