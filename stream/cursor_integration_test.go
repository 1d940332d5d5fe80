//go:build integration

package stream

import (
	"context"
	"image"
	"image/color"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/res"
	"github.com/jezek/xgb/xfixes"
	"github.com/jezek/xgb/xproto"
)

// cursors collects the cursor shapes a viewer is told.
type cursors struct {
	mu   sync.Mutex
	list []shownCursor
}

type shownCursor struct {
	img        image.Image
	hotX, hotY int
}

func (c *cursors) add(img image.Image, hotX, hotY int) {
	c.mu.Lock()
	c.list = append(c.list, shownCursor{img, hotX, hotY})
	c.mu.Unlock()
}

func (c *cursors) last() (shownCursor, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.list) == 0 {
		return shownCursor{}, 0
	}
	return c.list[len(c.list)-1], len(c.list)
}

// xfixesConn is a test's own connection to the display, to read its
// cursor as XFIXES reports it.
func xfixesConn(t *testing.T, d display) *xgb.Conn {
	t.Helper()
	nc, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := xgb.NewConnNet(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if err := xfixes.Init(conn); err != nil {
		t.Fatal(err)
	}
	if _, err := xfixes.QueryVersion(conn, 5, 0).Reply(); err != nil {
		t.Fatal(err)
	}
	return conn
}

// setRootCursor gives the root window a glyph of the core cursor font
// (150 is XC_watch), as xsetroot -cursor_name does.
func setRootCursor(t *testing.T, conn *xgb.Conn, glyph uint16) {
	t.Helper()
	font, err := xproto.NewFontId(conn)
	if err != nil {
		t.Fatal(err)
	}
	name := "cursor"
	if err := xproto.OpenFontChecked(conn, font, uint16(len(name)), name).Check(); err != nil {
		t.Fatal(err)
	}
	cur, err := xproto.NewCursorId(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := xproto.CreateGlyphCursorChecked(conn, cur, font, font, glyph, glyph+1, 0, 0, 0, 0xffff, 0xffff, 0xffff).Check(); err != nil {
		t.Fatal(err)
	}
	root := xproto.Setup(conn).DefaultScreen(conn).Root
	if err := xproto.ChangeWindowAttributesChecked(conn, root, xproto.CwCursor, []uint32{uint32(cur)}).Check(); err != nil {
		t.Fatal(err)
	}
}

// sameCursor reports how a cursor a viewer got differs from the one
// XFIXES says the display shows; "" when it does not.
func sameCursor(got shownCursor, want *xfixes.GetCursorImageReply) string {
	b := got.img.Bounds()
	if b.Dx() != int(want.Width) || b.Dy() != int(want.Height) {
		return "size " + b.Size().String() + ", display's " + image.Pt(int(want.Width), int(want.Height)).String()
	}
	if got.hotX != int(want.Xhot) || got.hotY != int(want.Yhot) {
		return "hot spot " + image.Pt(got.hotX, got.hotY).String() + ", display's " + image.Pt(int(want.Xhot), int(want.Yhot)).String()
	}
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			r, g, bl, a := got.img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			p := want.CursorImage[y*b.Dx()+x]
			w := color.RGBA{byte(p >> 16), byte(p >> 8), byte(p), byte(p >> 24)}
			if !close8(r>>8, w.R) || !close8(g>>8, w.G) || !close8(bl>>8, w.B) || !close8(a>>8, w.A) {
				return "pixel " + image.Pt(x, y).String() + " differs"
			}
		}
	}
	return ""
}

func close8(a uint32, b byte) bool { return a+1 >= uint32(b) && a <= uint32(b)+1 }

func differentCursors(a, b shownCursor) bool {
	if a.img.Bounds() != b.img.Bounds() || a.hotX != b.hotX || a.hotY != b.hotY {
		return true
	}
	bb := a.img.Bounds()
	for y := bb.Min.Y; y < bb.Max.Y; y++ {
		for x := bb.Min.X; x < bb.Max.X; x++ {
			if a.img.At(x, y) != b.img.At(x, y) {
				return true
			}
		}
	}
	return false
}

// TestCursorShape: a viewer is told the display's cursor when it connects,
// exactly as XFIXES reports it, and the new one when the pointer moves
// onto an app with a cursor of its own.
func TestCursorShape(t *testing.T) {
	d := startDisplay(t, "640x480x24")
	xc := xfixesConn(t, d)
	setRootCursor(t, xc, 150) // a watch over the desktop
	// Away from the middle of the screen, where the pointer starts: the
	// desktop's cursor stays until the test moves it.
	startApp(t, d, t.TempDir(), "xterm", "-geometry", "40x10+380+10")

	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket)})
	t.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	var got cursors
	v.OnCursor(got.add)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); v.Close(); <-done })

	// On connecting, before any input: the desktop's watch.
	waitFor(t, "the first cursor", 15*time.Second, func() bool { _, n := got.last(); return n > 0 })
	first, _ := got.last()
	want, err := xfixes.GetCursorImage(xc).Reply()
	if err != nil {
		t.Fatal(err)
	}
	if diff := sameCursor(first, want); diff != "" {
		t.Fatalf("first cursor: %s", diff)
	}
	t.Logf("first cursor %v, hot spot %d,%d", first.img.Bounds().Size(), first.hotX, first.hotY)

	// The pointer onto xterm, whose text cursor is another shape; xterm
	// may still be mapping its window, so keep moving until it shows.
	var second shownCursor
	waitFor(t, "a second, different cursor", 15*time.Second, func() bool {
		v.Send(Input{Kind: InputPointer, X: 440 + time.Now().Nanosecond()%20, Y: 60})
		c, n := got.last()
		if n < 2 || !differentCursors(c, first) {
			return false
		}
		second = c
		return true
	})
	want, err = xfixes.GetCursorImage(xc).Reply()
	if err != nil {
		t.Fatal(err)
	}
	if diff := sameCursor(second, want); diff != "" {
		t.Fatalf("second cursor: %s", diff)
	}
	t.Logf("second cursor %v, hot spot %d,%d", second.img.Bounds().Size(), second.hotX, second.hotY)

	// A viewer connecting now is told xterm's cursor at once.
	v2 := NewViewer(host.Answer, nil)
	var got2 cursors
	v2.OnCursor(got2.add)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { v2.Run(ctx2); close(done2) }()
	t.Cleanup(func() { cancel2(); v2.Close(); <-done2 })
	waitFor(t, "the second viewer's cursor", 15*time.Second, func() bool { _, n := got2.last(); return n > 0 })
	if c, _ := got2.last(); differentCursors(c, second) {
		t.Errorf("second viewer got %v hot %d,%d, want xterm's %v hot %d,%d",
			c.img.Bounds().Size(), c.hotX, c.hotY, second.img.Bounds().Size(), second.hotX, second.hotY)
	}

	// Host.Close, which runs before a checkpoint, leaves no connection of
	// the cursor watch on the display.
	host.cursorMu.Lock()
	base := xproto.Setup(host.cursor.conn).ResourceIdBase
	host.cursorMu.Unlock()
	if !hasClient(t, xc, base) {
		t.Fatalf("the display lists no client with the cursor watch's resource base %#x", base)
	}
	host.Close()
	waitFor(t, "the cursor watch's connection to close", 5*time.Second, func() bool { return !hasClient(t, xc, base) })
}

// hasClient says whether the display has a client with this resource base
// (X-Resource).
func hasClient(t *testing.T, conn *xgb.Conn, base uint32) bool {
	t.Helper()
	if err := res.Init(conn); err != nil {
		t.Fatal(err)
	}
	r, err := res.QueryClients(conn).Reply()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Clients {
		if c.ResourceBase == base {
			return true
		}
	}
	return false
}

// TestCursorWithoutXFixes: a display without XFIXES streams as before,
// and viewers are simply told no cursor. (Xvfb started so aborts when its
// first client disconnects, here the host's failed clipboard and cursor
// connections: the test checks only that the stream starts and that the
// data channel carries no cursor.)
func TestCursorWithoutXFixes(t *testing.T) {
	d := startDisplay(t, "320x240x24", "-extension", "XFIXES")
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket)})
	t.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	var got cursors
	v.OnCursor(got.add)
	f := newFrames(v)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); v.Close(); <-done })

	waitFor(t, "a frame", 15*time.Second, func() bool { _, n := f.snapshot(); return n > 0 })
	waitFor(t, "the input channel", 15*time.Second, func() bool {
		return v.Send(Input{Kind: InputPointer, X: 10, Y: 10}) == nil
	})
	time.Sleep(500 * time.Millisecond)
	if _, n := got.last(); n != 0 {
		t.Errorf("viewer told %d cursors by a display without XFIXES", n)
	}
}
