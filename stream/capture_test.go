package stream

import (
	"encoding/binary"
	"errors"
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/handoff/handoff/stream/fb"
)

func TestDamage(t *testing.T) {
	const w, h = 200, 130 // tiles: 4 across (last 8 wide), 3 down (last 2 high)
	stride := w*4 + 16
	tests := []struct {
		name   string
		change [][2]int // pixels (x, y) to alter
		want   int
	}{
		{"still", nil, 0},
		{"one pixel", [][2]int{{5, 5}}, 1},
		{"two pixels one tile", [][2]int{{1, 1}, {60, 60}}, 1},
		{"tile corners", [][2]int{{63, 63}, {64, 64}}, 2},
		{"edge tiles", [][2]int{{199, 129}, {199, 0}, {0, 129}}, 3},
		{"padding is not screen", [][2]int{{w + 1, 3}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := make([]byte, stride*h)
			for i := range src {
				src[i] = byte(i * 7)
			}
			dst := append([]byte(nil), src...)
			for _, p := range tt.change {
				src[p[1]*stride+p[0]*4+1] ^= 0xff
			}
			if got := damage(dst, src, w, h, stride, nil, nil); got != tt.want {
				t.Errorf("damaged tiles = %d, want %d", got, tt.want)
			}
			for y := 0; y < h; y++ {
				off := y * stride
				for x := 0; x < w*4; x++ {
					if dst[off+x] != src[off+x] {
						t.Fatalf("copy differs at byte %d of row %d", x, y)
					}
				}
			}
			if got := damage(dst, src, w, h, stride, nil, nil); got != 0 {
				t.Errorf("second look found %d damaged tiles", got)
			}
		})
	}
}

// TestDamageLooksOnlyWhereTold: with a mask, tiles outside it are neither
// compared nor copied, and tiles inside are.
func TestDamageLooksOnlyWhereTold(t *testing.T) {
	const w, h = 200, 130 // 4x3 tiles
	stride := w * 4
	src := make([]byte, stride*h)
	dst := make([]byte, stride*h)
	for i := range src {
		src[i] = 1
	}
	look := make([]bool, 4*3)
	look[1] = true   // tile (1, 0)
	look[2*4] = true // tile (0, 2)
	var got []image.Rectangle
	if n := damage(dst, src, w, h, stride, look, func(r image.Rectangle) { got = append(got, r) }); n != 2 {
		t.Errorf("damaged tiles = %d, want 2", n)
	}
	want := []image.Rectangle{image.Rect(64, 0, 128, 64), image.Rect(0, 128, 64, 130)}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("damaged %v, want %v", got, want)
	}
	if dst[0] != 0 || dst[64*4] != 1 || dst[128*stride] != 1 || dst[128*4] != 0 {
		t.Error("copied outside the mask or not inside it")
	}
}

// screenFile writes an XWD screen of w×h pixels at 32 bits, with Xvfb's
// own header (testdata of package fb) made to say so, into a temporary
// dir.
func screenFile(tb testing.TB, w, h int) string {
	tb.Helper()
	real, err := os.ReadFile("fb/testdata/xvfb-64x48x24.xwd")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := fb.ParseHeader(real)
	if err != nil {
		tb.Fatal(err)
	}
	head := append([]byte(nil), real[:f.PixelOffset]...)
	for field, v := range map[int]int{4: w, 5: h, 12: w * 4, 20: w, 21: h} {
		binary.BigEndian.PutUint32(head[field*4:], uint32(v))
	}
	pixels := make([]byte, w*h*4)
	for i := range pixels {
		pixels[i] = byte(i / 4096)
	}
	path := filepath.Join(tb.TempDir(), "Xvfb_screen0")
	if err := os.WriteFile(path, append(head, pixels...), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestGrabAfterTheFileIsCutShort: the app truncates its framebuffer file
// under the capturer; grabbing fails, the process lives.
func TestGrabAfterTheFileIsCutShort(t *testing.T) {
	path := screenFile(t, 320, 200)
	c, err := newCapturer(DisplayAt(path, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if changed, err := c.Grab(); err != nil || len(changed) != 1 {
		t.Fatalf("first grab: %v, %v", changed, err)
	}
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GrabIn([]image.Rectangle{image.Rect(0, 190, 10, 200)}); !errors.Is(err, fb.ErrTruncated) {
		t.Fatalf("grab after the cut: %v, want fb.ErrTruncated", err)
	}
	if _, err := c.Grab(); !errors.Is(err, fb.ErrTruncated) {
		t.Fatalf("grab after the cut: %v, want fb.ErrTruncated", err)
	}
}

// BenchmarkGrabStill is a grab of a still 1080p screen, the most common
// one: every tile compared, none copied. Against BenchmarkReadGuard in
// package fb it says what guarding the read against a cut file costs.
func BenchmarkGrabStill(b *testing.B) {
	c, err := newCapturer(DisplayAt(screenFile(b, 1920, 1080), ""))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Grab(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1920 * 1080 * 4)
	for b.Loop() {
		if changed, err := c.Grab(); err != nil || len(changed) != 0 {
			b.Fatal(changed, err)
		}
	}
}
