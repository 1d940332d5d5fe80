package stream

import (
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
			if got := damage(dst, src, w, h, stride, nil); got != tt.want {
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
			if got := damage(dst, src, w, h, stride, nil); got != 0 {
				t.Errorf("second look found %d damaged tiles", got)
			}
		})
	}
}
