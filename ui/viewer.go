package ui

import (
	"context"
	"image"
	"sync"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/assets"
	"github.com/handoff/handoff/stream"
)

func init() { app.ViewerWindow = RunViewer }

// AppID is the desktop application ID from FyneApp.toml.
const AppID = "dev.handoff.Handoff"

// RunViewer opens a window showing one app, wherever it runs, until the
// window is closed or ctx ends.
func RunViewer(ctx context.Context, c *app.Client, name string) error {
	a := fyneapp.NewWithID(AppID)
	a.SetIcon(fyne.NewStaticResource("icon.png", assets.Icon))
	w := a.NewWindow(name + " — connecting…")
	screen := newScreen()
	v := c.Viewer(name, func(where string) {
		fyne.Do(func() { w.SetTitle(name + " — on " + where) })
	})
	screen.send = v.Send
	v.OnFrame(screen.show)
	v.OnState(func(s stream.ViewerState) {
		if s.Err != nil {
			fyne.Do(func() { w.SetTitle(name + " — reconnecting…") })
		}
	})
	w.SetContent(screen)
	w.Canvas().SetOnTypedRune(func(r rune) { v.Send(stream.Input{Kind: stream.InputText, Text: string(r)}) })
	w.Canvas().SetOnTypedKey(func(k *fyne.KeyEvent) {
		if sym, ok := keysyms[k.Name]; ok {
			v.Send(stream.Input{Kind: stream.InputKey, Keysym: sym, Down: true})
			v.Send(stream.Input{Kind: stream.InputKey, Keysym: sym})
		}
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go v.Run(ctx)
	go func() {
		<-ctx.Done()
		fyne.Do(a.Quit)
	}()
	w.ShowAndRun()
	return v.Close()
}

// keysyms are the X keysyms of keys that type no character; characters go
// as text, so the user's own layout decides them.
var keysyms = map[fyne.KeyName]uint32{
	fyne.KeyReturn: 0xff0d, fyne.KeyEnter: 0xff8d, fyne.KeyBackspace: 0xff08, fyne.KeyTab: 0xff09,
	fyne.KeyEscape: 0xff1b, fyne.KeyDelete: 0xffff, fyne.KeyInsert: 0xff63,
	fyne.KeyHome: 0xff50, fyne.KeyEnd: 0xff57, fyne.KeyPageUp: 0xff55, fyne.KeyPageDown: 0xff56,
	fyne.KeyLeft: 0xff51, fyne.KeyUp: 0xff52, fyne.KeyRight: 0xff53, fyne.KeyDown: 0xff54,
	fyne.KeyF1: 0xffbe, fyne.KeyF2: 0xffbf, fyne.KeyF3: 0xffc0, fyne.KeyF4: 0xffc1,
	fyne.KeyF5: 0xffc2, fyne.KeyF6: 0xffc3, fyne.KeyF7: 0xffc4, fyne.KeyF8: 0xffc5,
	fyne.KeyF9: 0xffc6, fyne.KeyF10: 0xffc7, fyne.KeyF11: 0xffc8, fyne.KeyF12: 0xffc9,
}

// screen shows the app's frames at their own size and turns the pointer's
// movements, clicks and scrolling into input in the frame's pixels.
type screen struct {
	widget.BaseWidget
	img  *canvas.Image
	send func(stream.Input) error

	mu   sync.Mutex
	size image.Point
}

func newScreen() *screen {
	placeholder := image.NewRGBA(image.Rect(0, 0, 640, 400))
	for i := range placeholder.Pix {
		placeholder.Pix[i] = 0x30
	}
	s := &screen{img: canvas.NewImageFromImage(placeholder), send: func(stream.Input) error { return nil }}
	s.img.FillMode = canvas.ImageFillOriginal
	s.img.ScaleMode = canvas.ImageScalePixels
	s.ExtendBaseWidget(s)
	return s
}

// show takes a frame from the viewer (valid only during the call).
func (s *screen) show(frame *image.RGBA) {
	c := image.NewRGBA(frame.Rect)
	copy(c.Pix, frame.Pix)
	s.mu.Lock()
	s.size = frame.Rect.Size()
	s.mu.Unlock()
	fyne.Do(func() {
		s.img.Image = c
		s.img.Refresh()
	})
}

func (s *screen) CreateRenderer() fyne.WidgetRenderer {
	return widget.NewSimpleRenderer(s.img)
}

// pixel maps a position in the widget to the frame's pixels: the image is
// shown at its own size in device pixels, so divide by the canvas scale.
func (s *screen) pixel(p fyne.Position) (int, int) {
	scale := float32(1)
	if c := fyne.CurrentApp().Driver().CanvasForObject(s); c != nil {
		scale = c.Scale()
	}
	s.mu.Lock()
	size := s.size
	s.mu.Unlock()
	return clampTo(int(p.X*scale), size.X), clampTo(int(p.Y*scale), size.Y)
}

func clampTo(v, limit int) int {
	if v < 0 || limit == 0 {
		return 0
	}
	return min(v, limit-1)
}

var _ desktop.Mouseable = (*screen)(nil)
var _ desktop.Hoverable = (*screen)(nil)
var _ fyne.Scrollable = (*screen)(nil)

func (s *screen) MouseDown(e *desktop.MouseEvent) { s.button(e, true) }
func (s *screen) MouseUp(e *desktop.MouseEvent)   { s.button(e, false) }

func (s *screen) button(e *desktop.MouseEvent, down bool) {
	x, y := s.pixel(e.Position)
	b := map[desktop.MouseButton]int{desktop.MouseButtonPrimary: 1, desktop.MouseButtonTertiary: 2, desktop.MouseButtonSecondary: 3}[e.Button]
	if b != 0 {
		s.send(stream.Input{Kind: stream.InputButton, Button: b, Down: down, X: x, Y: y})
	}
}

func (s *screen) MouseIn(e *desktop.MouseEvent)    { s.MouseMoved(e) }
func (s *screen) MouseOut()                        {}
func (s *screen) MouseMoved(e *desktop.MouseEvent) {
	x, y := s.pixel(e.Position)
	s.send(stream.Input{Kind: stream.InputPointer, X: x, Y: y})
}

func (s *screen) Scrolled(e *fyne.ScrollEvent) {
	notches := func(d float32) int {
		switch {
		case d > 0:
			return -1 // fyne: positive is up or left; X: button 4 is up
		case d < 0:
			return 1
		}
		return 0
	}
	s.send(stream.Input{Kind: stream.InputWheel, WheelX: -notches(e.Scrolled.DX), WheelY: notches(e.Scrolled.DY)})
}

