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

// Diff counts the pixels that differ between a and b over their common area
// and returns the smallest rectangle holding them: what a test says when two
// screens that should be equal are not.
func Diff(a, b *image.RGBA) (n int, bounds image.Rectangle) {
	r := a.Rect.Intersect(b.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			pa, pb := a.Pix[a.PixOffset(x, y):], b.Pix[b.PixOffset(x, y):]
			if pa[0] != pb[0] || pa[1] != pb[1] || pa[2] != pb[2] {
				n++
				bounds = bounds.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return n, bounds
}

// Ink counts the dark pixels inside r: enough of them in a terminal's first
// line means its shell has drawn a prompt.
func Ink(img *image.RGBA, r image.Rectangle) int {
	r = r.Intersect(img.Rect)
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			p := img.Pix[img.PixOffset(x, y):]
			if int(p[0])+int(p[1])+int(p[2]) < 3*128 {
				n++
			}
		}
	}
	return n
}
