package stream

import (
	"bytes"
	"fmt"
	"image"

	"github.com/handoff/handoff/stream/fb"
)

// tileSize is the side of the squares damage is tracked in. 64 pixels of
// 4 bytes is one 256-byte row compare per tile row: cheap next to encoding.
const tileSize = 64

// capturer keeps a private copy of a framebuffer and refreshes it tile by
// tile. The encoder reads the copy, never the live mapping, so it never sees
// a half-drawn frame change under it.
type capturer struct {
	src    *fb.Framebuffer
	frame  []byte // BGRX, src.Stride bytes per row
	primed bool
}

func newCapturer(path string) (*capturer, error) {
	f, err := fb.Open(path)
	if err != nil {
		return nil, err
	}
	if f.BitsPerPixel != 32 || f.RedMask != 0xff0000 || f.GreenMask != 0xff00 || f.BlueMask != 0xff || !f.LittleEndianPixels {
		f.Close()
		return nil, fmt.Errorf("framebuffer %s: pixels are not 32-bit BGRX (bits %d, red mask %#x); start the display with depth 24", path, f.BitsPerPixel, f.RedMask)
	}
	return &capturer{src: f, frame: make([]byte, f.Stride*f.Height)}, nil
}

func (c *capturer) Size() image.Point { return image.Pt(c.src.Width, c.src.Height) }
func (c *capturer) Stride() int       { return c.src.Stride }

// Grab copies what changed since the last grab and returns the number of
// damaged tiles; 0 means the screen is still and there is nothing to send.
func (c *capturer) Grab() int {
	live := c.src.Pixels()
	if !c.primed {
		copy(c.frame, live)
		c.primed = true
		return c.tiles()
	}
	return damage(c.frame, live, c.src.Width, c.src.Height, c.src.Stride)
}

func (c *capturer) tiles() int {
	return ((c.src.Width + tileSize - 1) / tileSize) * ((c.src.Height + tileSize - 1) / tileSize)
}

// damage brings dst up to date with src tile by tile and counts the tiles
// that differed.
func damage(dst, src []byte, width, height, stride int) int {
	n := 0
	for ty := 0; ty < height; ty += tileSize {
		rows := min(tileSize, height-ty)
		for tx := 0; tx < width; tx += tileSize {
			lo, hi := tx*4, min(tx+tileSize, width)*4
			for y := ty; y < ty+rows; y++ {
				off := y * stride
				if !bytes.Equal(dst[off+lo:off+hi], src[off+lo:off+hi]) {
					// The tile changed: copy the rest of it from this row on.
					for ; y < ty+rows; y++ {
						off := y * stride
						copy(dst[off+lo:off+hi], src[off+lo:off+hi])
					}
					n++
				}
			}
		}
	}
	return n
}

func (c *capturer) Close() error { return c.src.Close() }
