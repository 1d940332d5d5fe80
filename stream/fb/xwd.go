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
	"runtime/debug"
	"unsafe"

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

// ErrTruncated is returned when the framebuffer file became shorter than
// its pixels while it was mapped: reading them then faults.
var ErrTruncated = errors.New("the framebuffer file was cut short")

// Bounds of a header this package takes: the app controls the file, so
// nothing it declares may make a size overflow or a read leave the file.
const (
	maxSide       = 16384
	maxHeaderSize = 64 << 10 // the fixed part and the window's name
	maxColors     = 1 << 16
)

// ParseHeader reads the header of an XWD file and says where the pixels
// are; Format.Size is how long the file must be to hold them (check it
// against the file before reading pixels).
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
	if h.HeaderSize < xwdHeaderLen || h.HeaderSize > maxHeaderSize || h.NColors > maxColors {
		return Format{}, fmt.Errorf("%w: header of %d bytes with %d colors", ErrFormat, h.HeaderSize, h.NColors)
	}
	// All in 64 bits and bounded: Size below cannot overflow.
	row := uint64(h.PixmapWidth) * uint64(h.BitsPerPixel) / 8
	if h.PixmapWidth == 0 || h.PixmapHeight == 0 || h.PixmapWidth > maxSide || h.PixmapHeight > maxSide ||
		uint64(h.BytesPerLine) < row || uint64(h.BytesPerLine) > 2*row+64 {
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

// Size is how many bytes a file in format f takes, through its last pixel.
func (f Format) Size() int64 {
	return int64(f.PixelOffset) + int64(f.Stride)*int64(f.Height)
}

// Framebuffer is a mapped Xvfb screen file.
type Framebuffer struct {
	Format
	mem  []byte
	file *os.File
}

// Open maps the framebuffer file at path read-only. The mapping follows the
// X server's drawing as it happens. The last component of path must not be
// a symlink, and only a regular file is mapped: the file lives where the
// app can write.
func Open(path string) (*Framebuffer, error) {
	// O_NONBLOCK: a FIFO put in its place must not hold the open.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open framebuffer: %w", err)
	}
	fb, err := OpenFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return fb, nil
}

// OpenFile maps the framebuffer file f (which it then owns and closes,
// also on error): the engine opens an app's framebuffer without following
// links and passes it here.
// Only the header's bytes and the pixels it declares are mapped, and only
// if the file holds them.
func OpenFile(f *os.File) (*Framebuffer, error) {
	fail := func(err error) (*Framebuffer, error) {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("%w: not a regular file (%v)", ErrFormat, st.Mode().Type()))
	}
	header := make([]byte, xwdHeaderLen)
	if _, err := f.ReadAt(header, 0); err != nil {
		return fail(fmt.Errorf("%w: read the header: %v", ErrFormat, err))
	}
	format, err := ParseHeader(header)
	if err != nil {
		return fail(err)
	}
	if format.Size() > st.Size() {
		return fail(fmt.Errorf("%w: file of %d bytes is shorter than its pixels (%d)", ErrFormat, st.Size(), format.Size()))
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(format.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("map framebuffer: %w", err))
	}
	return &Framebuffer{Format: format, mem: mem, file: f}, nil
}

// Close unmaps the framebuffer.
func (fb *Framebuffer) Close() error {
	err := unix.Munmap(fb.mem)
	if cerr := fb.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read calls read with the raw pixel memory, Stride bytes per row, which
// changes under it as the X server draws; read must not keep it. If the
// file is cut short meanwhile, reading past its new end faults: Read then
// returns ErrTruncated instead of the process dying of SIGBUS, and so will
// every later Read. read runs on the calling goroutine.
func (fb *Framebuffer) Read(read func(pixels []byte)) (err error) {
	pixels := fb.mem[fb.PixelOffset:fb.Size()]
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		fault, ok := r.(interface{ Addr() uintptr })
		start := uintptr(unsafe.Pointer(unsafe.SliceData(fb.mem)))
		if !ok || fault.Addr() < start || fault.Addr() >= start+uintptr(len(fb.mem)) {
			panic(r) // not ours
		}
		size := int64(-1)
		if st, serr := fb.file.Stat(); serr == nil {
			size = st.Size()
		}
		err = fmt.Errorf("%w: %d bytes now, its pixels end at %d", ErrTruncated, size, fb.Size())
	}()
	read(pixels)
	return nil
}

// Snapshot copies the current screen into an RGBA image.
func (fb *Framebuffer) Snapshot() (*image.RGBA, error) {
	img := image.NewRGBA(image.Rect(0, 0, fb.Width, fb.Height))
	if err := fb.Read(func(pixels []byte) { ToRGBA(fb.Format, pixels, img) }); err != nil {
		return nil, err
	}
	return img, nil
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
		// Repeat the bits down: 5-bit 31 is 255, not 248.
		x := v << (8 - nbits)
		for have := nbits; have < 8; have *= 2 {
			x |= x >> have
		}
		return uint8(x)
	}
}

// WritePNG writes the current screen as PNG.
func (fb *Framebuffer) WritePNG(w io.Writer) error {
	img, err := fb.Snapshot()
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

// SnapshotFile opens, reads and closes the framebuffer at path.
func SnapshotFile(path string) (*image.RGBA, error) {
	fb, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	return fb.Snapshot()
}

// SnapshotOf reads the framebuffer in f and closes f.
func SnapshotOf(f *os.File) (*image.RGBA, error) {
	fb, err := OpenFile(f)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	return fb.Snapshot()
}
