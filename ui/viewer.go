package ui

import (
	"context"
	"image"
	"image/color"
	"math"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/stream"
)

// Display is an app's screen as a viewer window needs it: frames and the
// app's copies in, input and our clipboard out. The stream package's viewer
// is one.
type Display interface {
	// OnFrame sets the function each new frame goes to; the image is only
	// valid during the call.
	OnFrame(func(*image.RGBA))
	// OnClipboard sets the function told the text the app copied; it is
	// called on the display's goroutine.
	OnClipboard(func(string))
	// OnCursor sets the function told the app's pointer shape and its hot
	// spot, which the window draws at the mouse's position; it is called on
	// the display's goroutine.
	OnCursor(func(img image.Image, hotX, hotY int))
	// OnAudio sets the function told the app's sound as it arrives (48 kHz
	// stereo, interleaved); it is called on the display's goroutine.
	OnAudio(func(pcm []int16))
	Send(stream.Input) error
	Close() error
}

// openDisplay connects to an app's display wherever it runs. While it is
// nil, viewer windows show "connecting…" and nothing else.
var openDisplay func(ctx context.Context, c *app.Client, appName string) (Display, error)

// fit is where a frame is drawn inside the screen widget: scaled to fit,
// keeping its proportions, centred.
type fit struct {
	scale      float32 // widget units per frame pixel
	offX, offY float32
}

func fitFrame(size fyne.Size, frame image.Point) fit {
	if frame.X <= 0 || frame.Y <= 0 || size.Width <= 0 || size.Height <= 0 {
		return fit{scale: 1}
	}
	s := min(size.Width/float32(frame.X), size.Height/float32(frame.Y))
	return fit{scale: s, offX: (size.Width - s*float32(frame.X)) / 2, offY: (size.Height - s*float32(frame.Y)) / 2}
}

// toFrame maps a point in the widget to the frame's pixel, clamped to the
// frame; inside says whether the point was on the picture at all.
func (f fit) toFrame(p fyne.Position, frame image.Point) (x, y int, inside bool) {
	fx := (p.X - f.offX) / f.scale
	fy := (p.Y - f.offY) / f.scale
	inside = fx >= 0 && fy >= 0 && fx < float32(frame.X) && fy < float32(frame.Y)
	return clampTo(int(fx), frame.X), clampTo(int(fy), frame.Y), inside
}

func clampTo(v, limit int) int {
	if v < 0 || limit <= 0 {
		return 0
	}
	return min(v, limit-1)
}

// mouseButton is the X button number of a Fyne mouse button.
func mouseButton(b desktop.MouseButton) int {
	switch b {
	case desktop.MouseButtonPrimary:
		return 1
	case desktop.MouseButtonTertiary:
		return 2
	case desktop.MouseButtonSecondary:
		return 3
	}
	return 0
}

// wheelNotches turns a Fyne scroll (positive: up or left) into X wheel
// notches (positive: down or right).
func wheelNotches(d fyne.Delta) (x, y int) {
	sign := func(v float32) int {
		switch {
		case v > 0:
			return -1
		case v < 0:
			return 1
		}
		return 0
	}
	return sign(d.DX), sign(d.DY)
}

// screen shows an app's frames and turns keyboard and mouse into input in
// the frame's pixels.
type screen struct {
	widget.BaseWidget
	img         *canvas.Image
	placeholder *widget.Label
	overlay     *handoffOverlay

	send      func(stream.Input) error
	onHotkey  func()
	hotkey    hotkeySpec
	onFocus   func(bool)
	onPaste   func()            // a paste shortcut, before it goes to the app
	onResize  func(image.Point) // the frame's size, when it first comes or changes
	keys      *keyboard
	mu        sync.Mutex
	frame     image.Point // size of the frame shown
	latest    *image.RGBA // the newest frame, not yet shown
	scheduled bool

	// The app's pointer, as the app draws it (nil until the display says),
	// and the same scaled like the picture, which Cursor returns. Only the
	// UI goroutine touches them.
	appCursor *remoteCursor
	shown     *remoteCursor
	shownFor  *remoteCursor
	shownK    float32
}

func newScreen() *screen {
	s := &screen{
		img:         canvas.NewImageFromImage(image.NewRGBA(image.Rect(0, 0, 1, 1))),
		placeholder: widget.NewLabelWithStyle("connecting…", fyne.TextAlignCenter, fyne.TextStyle{Italic: true}),
		overlay:     newHandoffOverlay(),
		send:        func(stream.Input) error { return nil },
		keys:        newKeyboard(),
	}
	s.img.FillMode = canvas.ImageFillContain
	s.img.ScaleMode = canvas.ImageScaleFastest
	s.img.Hide()
	s.ExtendBaseWidget(s)
	return s
}

// MinSize is small: the window is sized to the frame once, then the user
// may shrink it and the picture scales.
func (s *screen) MinSize() fyne.Size { return fyne.NewSize(320, 200) }

func (s *screen) CreateRenderer() fyne.WidgetRenderer {
	bg := canvas.NewRectangle(color.Black)
	return widget.NewSimpleRenderer(container.NewStack(bg, s.img, container.NewCenter(s.placeholder), s.overlay))
}

// showFrame takes a frame from the display's goroutine. Frames coalesce:
// only the newest is drawn when the UI gets to it.
func (s *screen) showFrame(frame *image.RGBA) {
	s.mu.Lock()
	if s.latest == nil || s.latest.Rect != frame.Rect {
		s.latest = image.NewRGBA(frame.Rect)
	}
	copy(s.latest.Pix, frame.Pix)
	pending := s.scheduled
	s.scheduled = true
	s.mu.Unlock()
	if !pending {
		fyne.Do(s.draw)
	}
}

// draw puts the newest frame on screen; it reports a change of frame size.
func (s *screen) draw() {
	s.mu.Lock()
	img := s.latest
	s.latest = nil
	s.scheduled = false
	old := s.frame
	if img != nil {
		s.frame = img.Rect.Size()
	}
	s.mu.Unlock()
	if img == nil {
		return
	}
	s.placeholder.Hide()
	s.img.Image = img
	s.img.Show()
	s.img.Refresh()
	if old != img.Rect.Size() && s.onResize != nil {
		s.onResize(img.Rect.Size())
	}
}

func (s *screen) frameSize() image.Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frame
}

func (s *screen) input(ins ...stream.Input) {
	for _, in := range ins {
		_ = s.send(in) // input while reconnecting is lost, as on a real screen that is off
	}
}

// Focus and keyboard.

var _ fyne.Focusable = (*screen)(nil)
var _ desktop.Keyable = (*screen)(nil)

func (s *screen) FocusGained() {
	if s.onFocus != nil {
		s.onFocus(true)
	}
}

func (s *screen) FocusLost() {
	s.input(s.keys.releaseAll()...)
	if s.onFocus != nil {
		s.onFocus(false)
	}
}

func (s *screen) TypedRune(r rune) { s.input(s.keys.typedRune(r)...) }

func (s *screen) TypedKey(e *fyne.KeyEvent) { s.input(s.keys.typedKey(e.Name)...) }

func (s *screen) KeyDown(e *fyne.KeyEvent) {
	if s.onHotkey != nil && s.hotkey.Keysym != 0 && s.hotkey.matches(e.Name, s.keys.mods) {
		s.onHotkey() // the global grab failed, or this display has none
		return
	}
	if s.onPaste != nil && isPaste(e.Name, s.keys.mods) {
		s.onPaste() // the app pastes our clipboard, not what it had
	}
	s.input(s.keys.keyDown(e.Name)...)
}

func (s *screen) KeyUp(e *fyne.KeyEvent) { s.input(s.keys.keyUp(e.Name)...) }

// isPaste says whether a key, with the modifiers held, is one of the
// shortcuts X apps paste with: Ctrl+V, Ctrl+Shift+V (terminals), Shift+Insert.
func isPaste(name fyne.KeyName, mods fyne.KeyModifier) bool {
	switch name {
	case fyne.KeyV:
		return mods&fyne.KeyModifierControl != 0
	case fyne.KeyInsert:
		return mods&fyne.KeyModifierShift != 0
	}
	return false
}

// Mouse.

var _ desktop.Cursorable = (*screen)(nil)

// remoteCursor is an app's pointer shape. The framebuffer holds no
// pointer: this machine draws this one at its own mouse position, so it
// moves without a round trip to the app.
type remoteCursor struct {
	img        image.Image
	hotX, hotY int
}

func (c *remoteCursor) Image() (image.Image, int, int) { return c.img, c.hotX, c.hotY }

// setCursor makes img, with its hot spot, the pointer over the picture.
// Fyne applies it when the mouse next moves.
func (s *screen) setCursor(img image.Image, hotX, hotY int) {
	s.appCursor = &remoteCursor{img: img, hotX: hotX, hotY: hotY}
}

// Cursor is the app's pointer, scaled as the picture is; the system's
// until the app's is known.
func (s *screen) Cursor() desktop.Cursor {
	if s.appCursor == nil {
		return desktop.DefaultCursor
	}
	k := float32(1)
	if frame := s.frameSize(); frame != (image.Point{}) {
		k = fitFrame(s.Size(), frame).scale
		if c := fyne.CurrentApp().Driver().CanvasForObject(s); c != nil && c.Scale() > 0 {
			k *= c.Scale()
		}
	}
	k = float32(math.Round(float64(k)*20) / 20) // no new cursor for every pixel of a resize
	if s.shown == nil || s.shownFor != s.appCursor || s.shownK != k {
		s.shown, s.shownFor, s.shownK = scaleCursor(s.appCursor, k), s.appCursor, k
	}
	return s.shown
}

// scaleCursor resizes a cursor by k, nearest pixel, at most to
// maxCursorSide either way; k 1 (the picture at its size) keeps it.
func scaleCursor(c *remoteCursor, k float32) *remoteCursor {
	b := c.img.Bounds()
	if k <= 0 || k == 1 || b.Empty() {
		return c
	}
	k = min(k, float32(maxCursorSide)/float32(max(b.Dx(), b.Dy())))
	w, h := max(1, int(float32(b.Dx())*k+0.5)), max(1, int(float32(b.Dy())*k+0.5))
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			out.Set(x, y, c.img.At(b.Min.X+x*b.Dx()/w, b.Min.Y+y*b.Dy()/h))
		}
	}
	return &remoteCursor{img: out, hotX: min(c.hotX*w/b.Dx(), w-1), hotY: min(c.hotY*h/b.Dy(), h-1)}
}

// maxCursorSide bounds a scaled cursor, in screen pixels.
const maxCursorSide = 256

var _ desktop.Mouseable = (*screen)(nil)
var _ desktop.Hoverable = (*screen)(nil)
var _ fyne.Scrollable = (*screen)(nil)
var _ fyne.Tappable = (*screen)(nil)

func (s *screen) pixel(p fyne.Position) (int, int) {
	frame := s.frameSize()
	x, y, _ := fitFrame(s.Size(), frame).toFrame(p, frame)
	return x, y
}

// Tapped focuses the screen so that keys go to the app; the button itself
// went with MouseDown and MouseUp.
func (s *screen) Tapped(*fyne.PointEvent) {
	if c := fyne.CurrentApp().Driver().CanvasForObject(s); c != nil {
		c.Focus(s)
	}
}

func (s *screen) MouseDown(e *desktop.MouseEvent) { s.button(e, true) }
func (s *screen) MouseUp(e *desktop.MouseEvent)   { s.button(e, false) }

func (s *screen) button(e *desktop.MouseEvent, down bool) {
	if s.frameSize() == (image.Point{}) {
		return
	}
	if b := mouseButton(e.Button); b != 0 {
		x, y := s.pixel(e.Position)
		s.input(stream.Input{Kind: stream.InputButton, Button: b, Down: down, X: x, Y: y})
	}
}

func (s *screen) MouseIn(e *desktop.MouseEvent) { s.MouseMoved(e) }
func (s *screen) MouseOut()                     {}
func (s *screen) MouseMoved(e *desktop.MouseEvent) {
	if s.frameSize() == (image.Point{}) {
		return
	}
	x, y := s.pixel(e.Position)
	s.input(stream.Input{Kind: stream.InputPointer, X: x, Y: y})
}

func (s *screen) Scrolled(e *fyne.ScrollEvent) {
	x, y := wheelNotches(e.Scrolled)
	if x != 0 || y != 0 {
		s.input(stream.Input{Kind: stream.InputWheel, WheelX: x, WheelY: y})
	}
}

// handoffOverlay covers the screen while the app moves: the phase and a
// progress bar on a dimmed picture.
type handoffOverlay struct {
	widget.BaseWidget
	shade    *canvas.Rectangle
	card     *canvas.Rectangle
	title    *widget.Label
	phase    *widget.Label
	progress *widget.ProgressBar
}

func newHandoffOverlay() *handoffOverlay {
	o := &handoffOverlay{
		shade:    canvas.NewRectangle(color.NRGBA{A: 0x90}),
		card:     canvas.NewRectangle(theme.Color(theme.ColorNameOverlayBackground)),
		title:    widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{Bold: true}),
		phase:    widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{}),
		progress: widget.NewProgressBar(),
	}
	o.card.CornerRadius = theme.Size(theme.SizeNameInputRadius) * 2
	o.ExtendBaseWidget(o)
	o.Hide()
	return o
}

func (o *handoffOverlay) CreateRenderer() fyne.WidgetRenderer {
	box := container.NewVBox(o.title, o.phase, o.progress)
	card := container.NewStack(o.card, container.NewPadded(container.NewPadded(box)))
	sized := container.New(layout.NewGridWrapLayout(fyne.NewSize(380, card.MinSize().Height)), card)
	return widget.NewSimpleRenderer(container.NewStack(o.shade, container.NewCenter(sized)))
}

func (o *handoffOverlay) Refresh() {
	o.card.FillColor = theme.Color(theme.ColorNameOverlayBackground)
	o.BaseWidget.Refresh()
}

// set shows the overlay for a handoff, or hides it.
func (o *handoffOverlay) set(h *Handoff) {
	if h == nil {
		o.Hide()
		return
	}
	if h.Direction == "in" {
		o.title.SetText("Arriving from " + h.Peer)
	} else {
		o.title.SetText("Moving to " + h.Peer)
	}
	o.phase.SetText(phaseText(*h))
	o.progress.SetValue(h.Fraction())
	o.Show()
	o.Refresh()
}
