package vpx

import (
	"bytes"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/handoff/handoff/stream/fb"
)

// screen draws something like a desktop: a light window with dark text-like
// strokes, a title bar and a gradient, as 32-bit BGRX pixels.
func screen(w, h int, seed uint64) (bgrx []byte, want *image.RGBA) {
	rng := rand.New(rand.NewPCG(seed, 7))
	want = image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(200 + x*40/w), uint8(210 + y*30/h), 230, 255}
			if y < 24 {
				c = color.RGBA{40, 60, 120, 255}
			}
			want.SetRGBA(x, y, c)
		}
	}
	for line := 40; line+12 < h; line += 18 {
		for x := 8; x+6 < w*3/4; x += 7 {
			if rng.IntN(5) == 0 {
				continue
			}
			for dy := 0; dy < 10; dy++ {
				for dx := 0; dx < 5; dx++ {
					if rng.IntN(3) == 0 {
						want.SetRGBA(x+dx, line+dy, color.RGBA{20, 20, 20, 255})
					}
				}
			}
		}
	}
	bgrx = make([]byte, w*h*4)
	for i := 0; i < w*h; i++ {
		bgrx[4*i], bgrx[4*i+1], bgrx[4*i+2] = want.Pix[4*i+2], want.Pix[4*i+1], want.Pix[4*i]
	}
	return bgrx, want
}

func TestRoundTripStillScreen(t *testing.T) {
	for _, size := range []image.Point{{640, 480}, {1280, 720}, {333, 201}} {
		bgrx, want := screen(size.X, size.Y, 1)
		enc, err := NewEncoder(EncoderConfig{Width: size.X, Height: size.Y, BitrateKbps: 8000})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := NewDecoder()
		if err != nil {
			t.Fatal(err)
		}
		var img *image.RGBA
		var psnr []float64
		// A still screen gets a key frame and then a few refinements, as the
		// stream sends them after motion stops.
		for i := 0; i < 6; i++ {
			frame, key, err := enc.Encode(bgrx, size.X*4, time.Duration(i)*33*time.Millisecond, 33*time.Millisecond, i == 0)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && !key {
				t.Fatalf("%v: first frame is not a key frame", size)
			}
			if frame == nil {
				continue
			}
			var shown bool
			img, shown, err = dec.Decode(frame, img)
			if err != nil {
				t.Fatal(err)
			}
			if shown {
				psnr = append(psnr, fb.PSNR(want, img))
			}
		}
		enc.Close()
		dec.Close()
		if len(psnr) == 0 || img.Rect.Size() != size {
			t.Fatalf("%v: no frame decoded at the right size (got %v)", size, img)
		}
		if last := psnr[len(psnr)-1]; last < 35 {
			t.Errorf("%v: PSNR after refinement %.1f dB < 35 (all: %.1f)", size, last, psnr)
		}
		t.Logf("%v: PSNR per frame %.1f", size, psnr)
	}
}

func TestEncoderRejectsBadInput(t *testing.T) {
	if _, err := NewEncoder(EncoderConfig{Width: 0, Height: 10}); err == nil {
		t.Error("zero width accepted")
	}
	enc, err := NewEncoder(EncoderConfig{Width: 64, Height: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if _, _, err := enc.Encode(make([]byte, 100), 256, 0, time.Millisecond, true); err == nil {
		t.Error("short buffer accepted")
	}
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	if _, _, err := dec.Decode([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, nil); err == nil {
		t.Error("garbage decoded")
	}
}

func BenchmarkEncode1080p(b *testing.B) {
	bgrx, _ := screen(1920, 1080, 1)
	other, _ := screen(1920, 1080, 2)
	enc, err := NewEncoder(EncoderConfig{Width: 1920, Height: 1080, BitrateKbps: 8000})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	b.SetBytes(int64(len(bgrx)))
	for i := 0; b.Loop(); i++ {
		src := bgrx
		if i%2 == 1 {
			src = other // full-screen motion
		}
		if _, _, err := enc.Encode(src, 1920*4, time.Duration(i)*16*time.Millisecond, 16*time.Millisecond, i == 0); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUpdateOnlyWhatChanged: after a frame, converting only the changed
// rectangle of the next one is enough to encode it faithfully, and the
// encoder's picture keeps everything outside the rectangle.
func TestUpdateOnlyWhatChanged(t *testing.T) {
	const w, h = 320, 240
	first, _ := screen(w, h, 1)
	second, want := screen(w, h, 1)
	changed := image.Rect(64, 64, 192, 128)
	for y := changed.Min.Y; y < changed.Max.Y; y++ {
		for x := changed.Min.X; x < changed.Max.X; x++ {
			o := (y*w + x) * 4
			second[o], second[o+1], second[o+2] = 0, 0, 255 // red, in BGRX
			want.SetRGBA(x, y, color.RGBA{255, 0, 0, 255})
		}
	}
	for _, tt := range []struct {
		name    string
		update  image.Rectangle
		wantMin float64
		wantMax float64
	}{
		{"changed rectangle", changed, 35, 1000},
		{"nothing converted", image.Rectangle{}, 0, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := NewEncoder(EncoderConfig{Width: w, Height: h, BitrateKbps: 8000})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			dec, err := NewDecoder()
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			var img *image.RGBA
			frame, _, err := enc.Encode(first, w*4, 0, 33*time.Millisecond, true)
			if err != nil {
				t.Fatal(err)
			}
			if img, _, err = dec.Decode(frame, img); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < 4; i++ { // a few frames to let the rate control converge
				if err := enc.Update(second, w*4, tt.update); err != nil {
					t.Fatal(err)
				}
				frame, _, err := enc.EncodePicture(time.Duration(i)*33*time.Millisecond, 33*time.Millisecond, false)
				if err != nil {
					t.Fatal(err)
				}
				if frame != nil {
					if img, _, err = dec.Decode(frame, img); err != nil {
						t.Fatal(err)
					}
				}
			}
			if p := fb.PSNR(want, img); p < tt.wantMin || p > tt.wantMax {
				t.Errorf("PSNR against the second frame %.1f dB, want %v..%v", p, tt.wantMin, tt.wantMax)
			}
		})
	}
}

// BenchmarkSmallChange1080p: a 200x200 change on a 1080p screen, encoded
// after converting the whole frame (the baseline) or only the change.
func BenchmarkSmallChange1080p(b *testing.B) {
	const w, h = 1920, 1080
	frames := [2][]byte{}
	frames[0], _ = screen(w, h, 1)
	frames[1] = append([]byte(nil), frames[0]...)
	changed := image.Rect(0, 0, 200, 200)
	for y := 0; y < 200; y++ {
		for x := 0; x < 200; x++ {
			frames[1][(y*w+x)*4+2] = 255
		}
	}
	for _, partial := range []bool{false, true} {
		name := "whole-frame"
		if partial {
			name = "changed-area"
		}
		b.Run(name, func(b *testing.B) {
			enc, err := NewEncoder(EncoderConfig{Width: w, Height: h, BitrateKbps: 8000})
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			enc.Encode(frames[0], w*4, 0, 16*time.Millisecond, true)
			for i := 1; b.Loop(); i++ {
				r := image.Rect(0, 0, w, h)
				if partial {
					r = changed
				}
				enc.Update(frames[i%2], w*4, r)
				if _, _, err := enc.EncodePicture(time.Duration(i)*16*time.Millisecond, 16*time.Millisecond, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStageThenTakeCodesWhatUpdateCodes: converting into the second
// picture and taking it in makes the same frames as converting in place,
// for rectangles at odd places, overlapping ones and ones at the edges.
func TestStageThenTakeCodesWhatUpdateCodes(t *testing.T) {
	const w, h = 320, 240
	frames := make([][]byte, 4)
	for i := range frames {
		frames[i], _ = screen(w, h, uint64(i+1))
	}
	steps := [][]image.Rectangle{
		{image.Rect(0, 0, w, h)},
		{image.Rect(33, 17, 101, 77)},
		{image.Rect(10, 10, 120, 60), image.Rect(100, 40, 200, 150)},
		{image.Rect(301, 221, w, h), image.Rect(0, 231, 7, h)},
	}
	newEnc := func() *Encoder {
		enc, err := NewEncoder(EncoderConfig{Width: w, Height: h, BitrateKbps: 4000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { enc.Close() })
		return enc
	}
	inPlace, staged := newEnc(), newEnc()
	for i, rects := range steps {
		for _, r := range rects {
			if err := inPlace.Update(frames[i], w*4, r); err != nil {
				t.Fatal(err)
			}
			if err := staged.Stage(frames[i], w*4, r); err != nil {
				t.Fatal(err)
			}
		}
		staged.Take()
		pts := time.Duration(i) * 33 * time.Millisecond
		want, _, err := inPlace.EncodePicture(pts, 33*time.Millisecond, i == 0)
		if err != nil {
			t.Fatal(err)
		}
		want = append([]byte(nil), want...)
		got, _, err := staged.EncodePicture(pts, 33*time.Millisecond, i == 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes staged, %d in place, and they differ", i, len(got), len(want))
		}
	}
}
