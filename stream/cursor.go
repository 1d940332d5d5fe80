package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"sync"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xfixes"
	"github.com/jezek/xgb/xproto"
)

// The framebuffer never holds the mouse pointer: the X server draws it
// elsewhere. So the app's cursor shape travels on the data channel, from the
// host to the viewers, and each viewer draws it at its own mouse position,
// as remote-desktop protocols do (no round trip for the pointer to move):
//
//	{"kind":"cursor","png":"<base64 PNG>","hotX":3,"hotY":4}
//
// png is the pointer's image, at most maxCursor pixels either way, and
// hotX, hotY the pixel of it that points. The host sends the current shape
// when a viewer's channel opens and again whenever the app's display shows
// another one.

// kindCursor is the kind of a cursor message; only a host sends it.
const kindCursor InputKind = "cursor"

// maxCursor bounds a cursor image's width and height, in pixels. A larger
// one is cut to this size around its hot spot.
const maxCursor = 128

// hostMessage is one message from the host to a viewer.
type hostMessage struct {
	Kind InputKind `json:"kind"`
	Text string    `json:"text,omitempty"` // clipboard: what the app copied
	// Cursor: the pointer's image as PNG (base64 in JSON) and its hot spot.
	PNG  []byte `json:"png,omitempty"`
	HotX int    `json:"hotX,omitempty"`
	HotY int    `json:"hotY,omitempty"`

	cursor image.Image // PNG decoded, by parseHostMessage
}

// parseHostMessage decodes and validates a message from the host to a
// viewer: the app's clipboard text, or its cursor with the image decoded.
func parseHostMessage(b []byte) (hostMessage, error) {
	var m hostMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return hostMessage{}, fmt.Errorf("message from the app's machine: %w", err)
	}
	switch m.Kind {
	case InputClipboard:
		if len(m.Text) > maxClipboard {
			return hostMessage{}, fmt.Errorf("message from the app's machine: %d bytes of clipboard, more than %d", len(m.Text), maxClipboard)
		}
	case kindCursor:
		img, err := decodeCursor(m.PNG, m.HotX, m.HotY)
		if err != nil {
			return hostMessage{}, fmt.Errorf("message from the app's machine: %w", err)
		}
		m.cursor = img
	default:
		return hostMessage{}, fmt.Errorf("message from the app's machine: unexpected kind %q", m.Kind)
	}
	return m, nil
}

// cursorMessage encodes a cursor image and its hot spot for the viewers,
// cut to maxCursor around the hot spot if it is larger.
func cursorMessage(img image.Image, hotX, hotY int) ([]byte, error) {
	b := img.Bounds()
	if b.Empty() {
		return nil, fmt.Errorf("cursor: empty image")
	}
	hotX, hotY = hotX-b.Min.X, hotY-b.Min.Y
	if hotX < 0 || hotY < 0 || hotX >= b.Dx() || hotY >= b.Dy() {
		return nil, fmt.Errorf("cursor: hot spot %d,%d outside its %dx%d image", hotX, hotY, b.Dx(), b.Dy())
	}
	// Keep the hot spot near the middle of what is kept.
	x0 := min(max(hotX-maxCursor/2, 0), max(b.Dx()-maxCursor, 0))
	y0 := min(max(hotY-maxCursor/2, 0), max(b.Dy()-maxCursor, 0))
	keep := image.Rect(x0, y0, min(x0+maxCursor, b.Dx()), min(y0+maxCursor, b.Dy())).Add(b.Min)
	out := image.NewNRGBA(image.Rect(0, 0, keep.Dx(), keep.Dy()))
	for y := 0; y < keep.Dy(); y++ {
		for x := 0; x < keep.Dx(); x++ {
			out.Set(x, y, img.At(keep.Min.X+x, keep.Min.Y+y))
		}
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, out); err != nil {
		return nil, fmt.Errorf("cursor: %w", err)
	}
	return json.Marshal(hostMessage{Kind: kindCursor, PNG: buf.Bytes(), HotX: hotX - x0, HotY: hotY - y0})
}

// decodeCursor reads a cursor message's image, refusing one larger than
// maxCursor before decoding it, or whose hot spot is off it.
func decodeCursor(data []byte, hotX, hotY int) (image.Image, error) {
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("cursor image: %w", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > maxCursor || cfg.Height > maxCursor {
		return nil, fmt.Errorf("cursor image: %dx%d, not within 1x1 to %dx%d", cfg.Width, cfg.Height, maxCursor, maxCursor)
	}
	if hotX < 0 || hotY < 0 || hotX >= cfg.Width || hotY >= cfg.Height {
		return nil, fmt.Errorf("cursor: hot spot %d,%d outside its %dx%d image", hotX, hotY, cfg.Width, cfg.Height)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("cursor image: %w", err)
	}
	return img, nil
}

// cursorImage makes an image of XFIXES' cursor pixels: ARGB, alpha
// premultiplied, as image.RGBA keeps them.
func cursorImage(r *xfixes.GetCursorImageReply) (*image.RGBA, error) {
	w, h := int(r.Width), int(r.Height)
	if w == 0 || h == 0 || len(r.CursorImage) < w*h {
		return nil, fmt.Errorf("cursor: %dx%d image with %d pixels", w, h, len(r.CursorImage))
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, p := range r.CursorImage[:w*h] {
		a, cr, cg, cb := byte(p>>24), byte(p>>16), byte(p>>8), byte(p)
		// A premultiplied colour is never above its alpha; keep it so.
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = min(cr, a), min(cg, a), min(cb, a), a
	}
	return img, nil
}

// cursorWatch follows the cursor the app's display shows, through a
// connection of its own to the display (XFIXES cursor events). Like the
// clipboard's, that connection must be closed before the app is
// checkpointed; Host.Close does it.
type cursorWatch struct {
	conn    *xgb.Conn
	log     *slog.Logger
	changed func(msg []byte) // a new cursor's message; called on the event goroutine
	done    chan struct{}

	// sendMu keeps a viewer that just connected from being sent a shape
	// older than one the loop is broadcasting.
	sendMu sync.Mutex
	mu     sync.Mutex
	msg    []byte // the current cursor's message, nil if none could be made
	serial uint32 // the current cursor's serial number
}

// dialCursor connects to the X display, reads its current cursor and
// starts following it; changed hears each new one.
func dialCursor(ctx context.Context, display Display, log *slog.Logger, changed func([]byte)) (*cursorWatch, error) {
	conn, err := dialX(ctx, display, " for its cursor")
	if err != nil {
		return nil, err
	}
	c := &cursorWatch{conn: conn, log: log, changed: changed, done: make(chan struct{})}
	if err := c.setup(); err != nil {
		conn.Close()
		return nil, err
	}
	go c.loop()
	return c, nil
}

func (c *cursorWatch) setup() error {
	if err := xfixes.Init(c.conn); err != nil {
		return fmt.Errorf("the app's display has no XFIXES extension: %w", err)
	}
	// Cursor events and images came with XFIXES 2 and 1; the version must
	// be agreed before any other request.
	v, err := xfixes.QueryVersion(c.conn, 5, 0).Reply()
	if err != nil {
		return fmt.Errorf("XFIXES version: %w", err)
	}
	if v.MajorVersion < 2 {
		return fmt.Errorf("the app's display has XFIXES %d, cursor events need 2", v.MajorVersion)
	}
	root := xproto.Setup(c.conn).DefaultScreen(c.conn).Root
	if err := xfixes.SelectCursorInputChecked(c.conn, root, xfixes.CursorNotifyMaskDisplayCursor).Check(); err != nil {
		return fmt.Errorf("watch the app's cursor: %w", err)
	}
	_, err = c.update()
	return err
}

// update reads the display's cursor and, when it is another one than
// before, makes its message and says so.
func (c *cursorWatch) update() (bool, error) {
	r, err := xfixes.GetCursorImage(c.conn).Reply()
	if err != nil {
		return false, fmt.Errorf("read the app's cursor: %w", err)
	}
	c.mu.Lock()
	same := c.msg != nil && r.CursorSerial == c.serial
	c.mu.Unlock()
	if same {
		return false, nil
	}
	img, err := cursorImage(r)
	if err != nil {
		return false, err
	}
	// A hot spot off the image (a broken cursor) points at its nearest pixel.
	msg, err := cursorMessage(img, min(int(r.Xhot), img.Rect.Dx()-1), min(int(r.Yhot), img.Rect.Dy()-1))
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.msg, c.serial = msg, r.CursorSerial
	c.mu.Unlock()
	return true, nil
}

// current is the message of the cursor shown now, nil if none.
func (c *cursorWatch) current() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msg
}

// sendCurrent passes the current cursor's message to send, if there is one,
// in order with the changes the loop broadcasts.
func (c *cursorWatch) sendCurrent(send func([]byte)) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if msg := c.current(); msg != nil {
		send(msg)
	}
}

// loop follows cursor changes until the connection closes.
func (c *cursorWatch) loop() {
	defer close(c.done)
	for {
		ev, err := c.conn.WaitForEvent()
		if ev == nil && err == nil {
			return // the connection closed
		}
		if err != nil {
			c.log.Debug("cursor: X error", "err", err)
			continue
		}
		e, ok := ev.(xfixes.CursorNotifyEvent)
		if !ok {
			continue
		}
		c.mu.Lock()
		same := c.msg != nil && e.CursorSerial == c.serial
		c.mu.Unlock()
		if same {
			continue
		}
		c.sendMu.Lock()
		changed, uerr := c.update()
		if uerr != nil {
			c.log.Debug("cursor: not sent to viewers", "err", uerr)
		} else if changed && c.changed != nil {
			c.changed(c.current())
		}
		c.sendMu.Unlock()
	}
}

// Close disconnects from the display.
func (c *cursorWatch) Close() {
	c.conn.Close()
	<-c.done
}
