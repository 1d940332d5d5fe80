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
	src     *fb.Framebuffer
	frame   []byte // BGRX, src.Stride bytes per row
	primed  bool
	damaged []image.Rectangle
	look    []bool // tiles GrabIn compares
}

func newCapturer(display Display) (*capturer, error) {
	file, err := display.OpenFramebuffer()
	if err != nil {
		return nil, fmt.Errorf("open framebuffer: %w", err)
	}
	f, err := fb.OpenFile(file)
	if err != nil {
		return nil, err
	}
	if f.BitsPerPixel != 32 || f.RedMask != 0xff0000 || f.GreenMask != 0xff00 || f.BlueMask != 0xff || !f.LittleEndianPixels {
		f.Close()
		return nil, fmt.Errorf("framebuffer: pixels are not 32-bit BGRX (bits %d, red mask %#x); start the display with depth 24", f.BitsPerPixel, f.RedMask)
	}
	return &capturer{src: f, frame: make([]byte, f.Stride*f.Height)}, nil
}

func (c *capturer) Size() image.Point { return image.Pt(c.src.Width, c.src.Height) }
func (c *capturer) Stride() int       { return c.src.Stride }

// Grab copies what changed since the last grab and returns the changed
// areas, runs of damaged tiles; none means the screen is still and there is
// nothing to send. It fails once the framebuffer file was cut short (the
// app can do that to it).
func (c *capturer) Grab() ([]image.Rectangle, error) { return c.GrabIn(nil) }

// GrabIn is Grab looking only at the tiles that meet the areas the display
// said it drew in; nil areas mean the whole screen.
func (c *capturer) GrabIn(areas []image.Rectangle) (changed []image.Rectangle, err error) {
	err = c.src.Read(func(live []byte) { changed = c.grabIn(live, areas) })
	return changed, err
}

func (c *capturer) grabIn(live []byte, areas []image.Rectangle) []image.Rectangle {
	if !c.primed {
		copy(c.frame, live)
		c.primed = true
		return []image.Rectangle{image.Rect(0, 0, c.src.Width, c.src.Height)}
	}
	c.damaged = c.damaged[:0]
	add := func(r image.Rectangle) {
		// Tiles of one row that touch make one rectangle.
		if n := len(c.damaged); n > 0 && c.damaged[n-1].Max.X == r.Min.X && c.damaged[n-1].Min.Y == r.Min.Y {
			c.damaged[n-1].Max.X = r.Max.X
			return
		}
		c.damaged = append(c.damaged, r)
	}
	if areas == nil {
		damage(c.frame, live, c.src.Width, c.src.Height, c.src.Stride, nil, add)
		return c.damaged
	}
	if len(areas) == 0 {
		return nil
	}
	cols, rows := (c.src.Width+tileSize-1)/tileSize, (c.src.Height+tileSize-1)/tileSize
	if len(c.look) != cols*rows {
		c.look = make([]bool, cols*rows)
	}
	clear(c.look)
	screen := image.Rect(0, 0, c.src.Width, c.src.Height)
	for _, a := range areas {
		a = a.Intersect(screen)
		if a.Empty() {
			continue
		}
		for ty := a.Min.Y / tileSize; ty <= (a.Max.Y-1)/tileSize; ty++ {
			for tx := a.Min.X / tileSize; tx <= (a.Max.X-1)/tileSize; tx++ {
				c.look[ty*cols+tx] = true
			}
		}
	}
	damage(c.frame, live, c.src.Width, c.src.Height, c.src.Stride, c.look, add)
	return c.damaged
}

// damage brings dst up to date with src tile by tile, reports each tile that
// differed and returns how many did. look, when not nil, has one entry per
// tile in rows of tiles: only tiles marked true are compared.
func damage(dst, src []byte, width, height, stride int, look []bool, changed func(image.Rectangle)) int {
	n := 0
	cols := (width + tileSize - 1) / tileSize
	for ty := 0; ty < height; ty += tileSize {
		rows := min(tileSize, height-ty)
		for tx := 0; tx < width; tx += tileSize {
			if look != nil && !look[ty/tileSize*cols+tx/tileSize] {
				continue
			}
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
					if changed != nil {
						changed(image.Rect(tx, ty, min(tx+tileSize, width), ty+rows))
					}
				}
			}
		}
	}
	return n
}

func (c *capturer) Close() error { return c.src.Close() }
