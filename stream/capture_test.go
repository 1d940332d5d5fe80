package stream

import (
	"image"
	"testing"
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
