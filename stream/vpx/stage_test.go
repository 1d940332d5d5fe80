package vpx

import (
	"image"
	"testing"
	"time"
)

// BenchmarkStages1080p times each step a full-screen change goes through:
// colour conversion, encoding, decoding and the conversion back to RGBA.
func BenchmarkStages1080p(b *testing.B) {
	const w, h = 1920, 1080
	a, _ := screen(w, h, 1)
	c, _ := screen(w, h, 2)
	solid := [2][]byte{make([]byte, w*h*4), make([]byte, w*h*4)}
	for i := 0; i < w*h; i++ {
		solid[0][4*i], solid[0][4*i+1], solid[0][4*i+2] = 0x80, 0x40, 0x20
		solid[1][4*i], solid[1][4*i+1], solid[1][4*i+2] = 0x20, 0x60, 0x80
	}
	for _, tc := range []struct {
		name   string
		frames [2][]byte
	}{{"desktop", [2][]byte{a, c}}, {"solid", solid}} {
		enc, err := NewEncoder(EncoderConfig{Width: w, Height: h, BitrateKbps: 8000})
		if err != nil {
			b.Fatal(err)
		}
		var coded [][]byte
		b.Run(tc.name+"/convert", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				enc.Update(tc.frames[i%2], w*4, image.Rect(0, 0, w, h))
			}
		})
		b.Run(tc.name+"/encode", func(b *testing.B) {
			coded = coded[:0]
			for i := 0; b.Loop(); i++ {
				enc.Update(tc.frames[i%2], w*4, image.Rect(0, 0, w, h))
				f, _, err := enc.EncodePicture(time.Duration(i)*16*time.Millisecond, 16*time.Millisecond, i == 0)
				if err != nil {
					b.Fatal(err)
				}
				if len(coded) < 60 && f != nil {
					coded = append(coded, append([]byte(nil), f...))
				}
			}
		})
		enc.Close()
		dec, _ := NewDecoder()
		var img *image.RGBA
		b.Run(tc.name+"/decode", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if i > 0 && i%len(coded) == 0 {
					dec.Close()
					dec, _ = NewDecoder()
				}
				img, _, err = dec.Decode(coded[i%len(coded)], img)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		dec.Close()
	}
}
