package ui

import (
	"image"
	"sync"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/handoff/handoff/stream"
)

// fakeDisplay records what a viewer window sends and lets a test play the
// app copying text or changing its cursor.
type fakeDisplay struct {
	mu     sync.Mutex
	sent   []stream.Input
	copied func(string)
	cursor func(image.Image, int, int)
}

func (f *fakeDisplay) OnFrame(func(*image.RGBA)) {}
func (f *fakeDisplay) OnClipboard(fn func(string)) {
	f.mu.Lock()
	f.copied = fn
	f.mu.Unlock()
}
func (f *fakeDisplay) OnCursor(fn func(image.Image, int, int)) {
	f.mu.Lock()
	f.cursor = fn
	f.mu.Unlock()
}
func (f *fakeDisplay) OnAudio(func([]int16)) {}
func (f *fakeDisplay) Send(in stream.Input) error {
	f.mu.Lock()
	f.sent = append(f.sent, in)
	f.mu.Unlock()
	return nil
}
func (f *fakeDisplay) Close() error { return nil }

// clipboards returns the clipboard texts sent so far, and clears them.
func (f *fakeDisplay) clipboards() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, in := range f.sent {
		if in.Kind == stream.InputClipboard {
			out = append(out, in.Text)
		}
	}
	f.sent = nil
	return out
}

func TestViewerWindowClipboard(t *testing.T) {
	tr, m, _ := newTestTray(t, false)
	m.Reset(testSnapshot())
	tr.showViewer("notes")
	v := tr.viewers["notes"]
	d := &fakeDisplay{}
	v.attach(d)
	cb := tr.fa.Clipboard()

	// Focus with something copied here: the app gets it, once.
	cb.SetContent("from here")
	v.screen.FocusGained()
	v.screen.FocusLost()
	v.screen.FocusGained()
	if got := d.clipboards(); len(got) != 1 || got[0] != "from here" {
		t.Errorf("after focusing twice, sent %q; want [\"from here\"]", got)
	}

	// The app copies: our clipboard holds it, and focusing does not send
	// it back.
	d.copied("from the app")
	if got := cb.Content(); got != "from the app" {
		t.Errorf("clipboard %q after the app copied", got)
	}
	v.screen.FocusLost()
	v.screen.FocusGained()
	if got := d.clipboards(); len(got) != 0 {
		t.Errorf("the app's own copy was sent back: %q", got)
	}

	// A paste shortcut sends the clipboard first, even unchanged, then the keys.
	for _, keys := range [][]fyne.KeyName{
		{desktop.KeyControlLeft, fyne.KeyV},
		{desktop.KeyControlLeft, desktop.KeyShiftLeft, fyne.KeyV},
		{desktop.KeyShiftLeft, fyne.KeyInsert},
	} {
		for _, k := range keys {
			v.screen.KeyDown(&fyne.KeyEvent{Name: k})
		}
		d.mu.Lock()
		sent := append([]stream.Input(nil), d.sent...)
		d.mu.Unlock()
		if len(sent) == 0 || sent[len(sent)-1].Kind != stream.InputKey || !clipboardBefore(sent) {
			t.Errorf("%v: sent %+v; want the clipboard, then the key", keys, sent)
		}
		for i := len(keys) - 1; i >= 0; i-- {
			v.screen.KeyUp(&fyne.KeyEvent{Name: keys[i]})
		}
		d.clipboards()
	}

	// A plain V is typing, not pasting.
	v.screen.KeyDown(&fyne.KeyEvent{Name: fyne.KeyV})
	v.screen.KeyUp(&fyne.KeyEvent{Name: fyne.KeyV})
	if got := d.clipboards(); len(got) != 0 {
		t.Errorf("a plain V sent the clipboard: %q", got)
	}

	// After the window let go of the display, late copies are ignored.
	v.disconnect()
	d.copied("late")
	if got := cb.Content(); got != "from the app" {
		t.Errorf("clipboard %q after a copy from a closed display", got)
	}
}

// clipboardBefore says whether a clipboard event precedes the last key.
func clipboardBefore(sent []stream.Input) bool {
	for _, in := range sent {
		if in.Kind == stream.InputClipboard {
			return true
		}
	}
	return false
}
