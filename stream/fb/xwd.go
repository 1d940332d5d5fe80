package fb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/bits"
	"os"

	"golang.org/x/sys/unix"
)

// xwdHeader is the fixed part of an XWD file header (X11 XWDFileHeader):
// 25 CARD32 fields, followed by the window name, the colormap and the pixels.
type xwdHeader struct {
	HeaderSize, FileVersion, PixmapFormat, PixmapDepth, PixmapWidth, PixmapHeight uint32
	XOffset, ByteOrder, BitmapUnit, BitmapBitOrder, BitmapPad, BitsPerPixel       uint32
	BytesPerLine, VisualClass, RedMask, GreenMask, BlueMask, BitsPerRGB           uint32
	ColormapEntries, NColors, WindowWidth, WindowHeight, WindowX, WindowY         uint32
	WindowBorderWidth                                                             uint32
}

const (
	xwdHeaderLen   = 100
	xwdFileVersion = 7
	xwdColorLen    = 12
	zPixmap        = 2
)

// Format describes the pixels of a framebuffer.
type Format struct {
	Width, Height, Stride int
	BitsPerPixel          int
	RedMask               uint32
	GreenMask             uint32
	BlueMask              uint32
	LittleEndianPixels    bool
	PixelOffset           int // where the pixels start in the file
}

// ErrFormat is returned for files that are not framebuffers this package reads.
var ErrFormat = errors.New("not a supported XWD framebuffer")

// ParseHeader reads the header of an XWD file and says where the pixels are.
func ParseHeader(b []byte) (Format, error) {
	if len(b) < xwdHeaderLen {
		return Format{}, fmt.Errorf("%w: %d bytes is too short", ErrFormat, len(b))
	}
	var order binary.ByteOrder = binary.BigEndian
	if binary.BigEndian.Uint32(b[4:]) != xwdFileVersion {
		order = binary.LittleEndian
	}
	var h xwdHeader
	fields := []*uint32{
		&h.HeaderSize, &h.FileVersion, &h.PixmapFormat, &h.PixmapDepth, &h.PixmapWidth, &h.PixmapHeight,
		&h.XOffset, &h.ByteOrder, &h.BitmapUnit, &h.BitmapBitOrder, &h.BitmapPad, &h.BitsPerPixel,
		&h.BytesPerLine, &h.VisualClass, &h.RedMask, &h.GreenMask, &h.BlueMask, &h.BitsPerRGB,
		&h.ColormapEntries, &h.NColors, &h.WindowWidth, &h.WindowHeight, &h.WindowX, &h.WindowY,
		&h.WindowBorderWidth,
	}
	for i, f := range fields {
		*f = order.Uint32(b[i*4:])
	}
	if h.FileVersion != xwdFileVersion || h.PixmapFormat != zPixmap {
		return Format{}, fmt.Errorf("%w: version %d format %d", ErrFormat, h.FileVersion, h.PixmapFormat)
	}
	if h.BitsPerPixel != 32 && h.BitsPerPixel != 16 {
		return Format{}, fmt.Errorf("%w: %d bits per pixel (run Xvfb with depth 24 or 16)", ErrFormat, h.BitsPerPixel)
	}
	if h.PixmapWidth == 0 || h.PixmapHeight == 0 || h.PixmapWidth > 16384 || h.PixmapHeight > 16384 ||
		uint64(h.BytesPerLine) < uint64(h.PixmapWidth)*uint64(h.BitsPerPixel)/8 || h.NColors > 1<<16 {
		return Format{}, fmt.Errorf("%w: bad geometry %dx%d stride %d", ErrFormat, h.PixmapWidth, h.PixmapHeight, h.BytesPerLine)
	}
	return Format{
		Width: int(h.PixmapWidth), Height: int(h.PixmapHeight), Stride: int(h.BytesPerLine),
		BitsPerPixel: int(h.BitsPerPixel),
		RedMask:      h.RedMask, GreenMask: h.GreenMask, BlueMask: h.BlueMask,
		LittleEndianPixels: h.ByteOrder == 0,
		PixelOffset:        int(h.HeaderSize) + int(h.NColors)*xwdColorLen,
	}, nil
}

// Framebuffer is a mapped Xvfb screen file.
type Framebuffer struct {
	Format
	mem  []byte
	file *os.File
}

// Open maps the framebuffer file at path read-only. The mapping follows the
// X server's drawing as it happens.
func Open(path string) (*Framebuffer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open framebuffer: %w", err)
	}
	return OpenFile(f)
}

// OpenFile is Open for a file the caller opened (the engine opens an app's
// framebuffer without following links); the Framebuffer owns f from then on.
func OpenFile(f *os.File) (*Framebuffer, error) {
	path := f.Name()
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map framebuffer %s: %w", path, err)
	}
	fmtInfo, err := ParseHeader(mem)
	if err == nil && fmtInfo.PixelOffset+fmtInfo.Stride*fmtInfo.Height > len(mem) {
		err = fmt.Errorf("%w: file shorter than its pixels", ErrFormat)
	}
	if err != nil {
		unix.Munmap(mem)
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Framebuffer{Format: fmtInfo, mem: mem, file: f}, nil
}

// Close unmaps the framebuffer.
func (fb *Framebuffer) Close() error {
	err := unix.Munmap(fb.mem)
	if cerr := fb.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// Pixels is the raw pixel memory, Stride bytes per row. It changes under the
// caller as the X server draws.
func (fb *Framebuffer) Pixels() []byte {
	return fb.mem[fb.PixelOffset : fb.PixelOffset+fb.Stride*fb.Height]
}

// Snapshot copies the current screen into an RGBA image.
func (fb *Framebuffer) Snapshot() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, fb.Width, fb.Height))
	ToRGBA(fb.Format, fb.Pixels(), img)
	return img
}

// ToRGBA converts raw pixels in format f into dst (which must be f.Width×f.Height).
func ToRGBA(f Format, src []byte, dst *image.RGBA) {
	rs, gs, bs := shift(f.RedMask), shift(f.GreenMask), shift(f.BlueMask)
	rb, gb, bb := maskBits(f.RedMask), maskBits(f.GreenMask), maskBits(f.BlueMask)
	bpp := f.BitsPerPixel / 8
	for y := 0; y < f.Height; y++ {
		row := src[y*f.Stride:]
		out := dst.Pix[y*dst.Stride:]
		for x := 0; x < f.Width; x++ {
			var p uint32
			if bpp == 4 {
				if f.LittleEndianPixels {
					p = binary.LittleEndian.Uint32(row[x*4:])
				} else {
					p = binary.BigEndian.Uint32(row[x*4:])
				}
			} else {
				if f.LittleEndianPixels {
					p = uint32(binary.LittleEndian.Uint16(row[x*2:]))
				} else {
					p = uint32(binary.BigEndian.Uint16(row[x*2:]))
				}
			}
			o := out[x*4 : x*4+4 : x*4+4]
			o[0] = scale8((p&f.RedMask)>>rs, rb)
			o[1] = scale8((p&f.GreenMask)>>gs, gb)
			o[2] = scale8((p&f.BlueMask)>>bs, bb)
			o[3] = 0xff
		}
	}
}

func shift(mask uint32) uint32    { return uint32(bits.TrailingZeros32(mask)) }
func maskBits(mask uint32) uint32 { return uint32(bits.OnesCount32(mask)) }

func scale8(v, nbits uint32) uint8 {
	switch {
	case nbits == 8:
		return uint8(v)
	case nbits == 0:
		return 0
	case nbits > 8:
		return uint8(v >> (nbits - 8))
	default:
		return uint8(v<<(8-nbits) | v>>(2*nbits-8)&0)
	}
}

// WritePNG writes the current screen as PNG.
func (fb *Framebuffer) WritePNG(w io.Writer) error {
	return png.Encode(w, fb.Snapshot())
}

// SnapshotFile opens, reads and closes the framebuffer at path.
func SnapshotFile(path string) (*image.RGBA, error) {
	fb, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	return fb.Snapshot(), nil
}

// SnapshotOf reads the framebuffer in f and closes f.
func SnapshotOf(f *os.File) (*image.RGBA, error) {
	fb, err := OpenFile(f)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	return fb.Snapshot(), nil
}
