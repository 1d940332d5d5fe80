package fb

import (
	"image"
	"math"
)

// PSNR is the peak signal-to-noise ratio of b against a in decibels over the
// red, green and blue channels of their common area: +Inf when identical,
// about 35 dB and up when a viewer cannot tell them apart on a still screen.
func PSNR(a, b *image.RGBA) float64 {
	r := a.Rect.Intersect(b.Rect)
	if r.Empty() {
		return 0
	}
	var sum uint64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		pa := a.Pix[a.PixOffset(r.Min.X, y):a.PixOffset(r.Max.X, y)]
		pb := b.Pix[b.PixOffset(r.Min.X, y):b.PixOffset(r.Max.X, y)]
		for i := 0; i < len(pa); i += 4 {
			for c := 0; c < 3; c++ {
				d := int(pa[i+c]) - int(pb[i+c])
				sum += uint64(d * d)
			}
		}
	}
	if sum == 0 {
		return math.Inf(1)
	}
	mse := float64(sum) / float64(r.Dx()*r.Dy()*3)
	return 10 * math.Log10(255*255/mse)
}
