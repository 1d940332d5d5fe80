package ui

import (
	"context"
	"image"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/stream"
)

func init() { app.ViewerWindow = RunViewer }

// viewerWindow shows one app, wherever it runs, with "Send to…" and "Bring
// back" above it and the handoff's progress over it while it moves. The
// display reconnects by itself when the app moved, so the window stays.
type viewerWindow struct {
	t       *Tray
	name    string
	win     fyne.Window
	screen  *screen
	sendBtn *widget.Button
	backBtn *widget.Button
	muteBtn *widget.Button
	muted   bool // the user turned this viewer's sound off
	where   *widget.Label
	display Display
	cancel  context.CancelFunc
	sized   bool
	xid     uint32 // the X window, for the global shortcut
	// clip is the text last sent to the app's clipboard or heard from it,
	// so that focusing the window does not send the same text again.
	clip string
}

func newViewerWindow(t *Tray, name string) *viewerWindow {
	v := &viewerWindow{t: t, name: name, screen: newScreen()}
	v.win = t.fa.NewWindow(name)
	v.win.SetIcon(iconApp)
	v.sendBtn = widget.NewButtonWithIcon("Send to…", iconSend, v.sendMenu)
	v.backBtn = widget.NewButtonWithIcon("Bring back", iconBringBack, func() { t.bringBack(name) })
	v.where = widget.NewLabelWithStyle("", fyne.TextAlignTrailing, fyne.TextStyle{})
	v.where.Truncation = fyne.TextTruncateEllipsis
	v.muteBtn = widget.NewButtonWithIcon("", theme.VolumeUpIcon(), v.toggleSound)
	bar := container.NewBorder(nil, nil, container.NewHBox(v.sendBtn, v.backBtn), v.muteBtn, v.where)
	v.win.SetContent(container.NewBorder(container.NewVBox(bar, widget.NewSeparator()), nil, nil, nil, v.screen))
	v.win.Resize(fyne.NewSize(640, 400+bar.MinSize().Height))
	v.screen.hotkey = t.hotkey
	v.screen.onHotkey = func() { t.hotkeyPressed(name) }
	v.screen.onFocus = func(in bool) {
		if in {
			t.focused = name
			v.offerClipboard(false) // the user may have copied elsewhere
		} else if t.focused == name {
			t.focused = ""
		}
		t.updateSound()
	}
	v.screen.onPaste = func() { v.offerClipboard(true) }
	v.screen.onResize = v.fitToFrame
	v.win.SetOnClosed(func() {
		v.disconnect()
		t.viewerClosed(name)
	})
	v.win.Canvas().Focus(v.screen)
	return v
}

// toggleSound turns this viewer's sound off or on again.
func (v *viewerWindow) toggleSound() {
	v.muted = !v.muted
	if v.muted {
		v.muteBtn.SetIcon(theme.VolumeMuteIcon())
	} else {
		v.muteBtn.SetIcon(theme.VolumeUpIcon())
	}
	v.t.updateSound()
}

// fitToFrame sizes the window so that the frame shows at its own size, once.
func (v *viewerWindow) fitToFrame(frame image.Point) {
	if v.sized {
		return
	}
	v.sized = true
	scale := v.win.Canvas().Scale()
	if scale <= 0 {
		scale = 1
	}
	// Everything around the picture (tool bar, separator, the window's
	// padding) as laid out now, or, before the first layout, as the layout
	// will make it.
	around := v.win.Canvas().Size().Subtract(v.screen.Size())
	if v.screen.Size().IsZero() {
		pad := 2 * theme.Padding()
		around = v.win.Content().MinSize().Subtract(v.screen.MinSize()).Add(fyne.NewSize(pad, pad))
	}
	v.win.Resize(fyne.NewSize(float32(frame.X)/scale, float32(frame.Y)/scale).Add(around))
}

// connect opens the app's display in the background; until it is there,
// the window says "connecting…".
func (v *viewerWindow) connect() {
	if openDisplay == nil || v.t.client == nil {
		return
	}
	ctx, cancel := context.WithCancel(v.t.ctx)
	v.cancel = cancel
	client := v.t.client
	go func() {
		d, err := openDisplay(ctx, client, v.name)
		if err != nil {
			if ctx.Err() == nil {
				fyne.Do(func() {
					v.screen.placeholder.SetText("Cannot show " + v.name + ": " + plainReason(err.Error(), ""))
				})
			}
			return
		}
		if ctx.Err() != nil {
			d.Close()
			return
		}
		d.OnFrame(v.screen.showFrame)
		fyne.Do(func() {
			if ctx.Err() != nil {
				d.Close()
				return
			}
			v.attach(d)
		})
	}()
}

// attach makes d the window's display: input goes to it, and the app's
// copies and pointer shape come from it.
func (v *viewerWindow) attach(d Display) {
	v.display = d
	v.screen.send = d.Send
	// The speaker plays it when it is this viewer's turn.
	d.OnAudio(func(pcm []int16) { v.t.speaker.play(v.name, pcm) })
	d.OnClipboard(func(text string) {
		fyne.Do(func() {
			if v.display != d {
				return // from a display this window has let go
			}
			v.clip = text
			v.t.fa.Clipboard().SetContent(text)
		})
	})
	d.OnCursor(func(img image.Image, hotX, hotY int) {
		fyne.Do(func() {
			if v.display != d {
				return
			}
			v.screen.setCursor(img, hotX, hotY)
		})
	})
}

// offerClipboard gives the app the text on this machine's clipboard: when
// the window gets the focus if it changed, and always before a paste
// shortcut reaches the app. Text the display refuses (too large, or no
// connection) is simply not offered.
func (v *viewerWindow) offerClipboard(always bool) {
	if v.display == nil {
		return
	}
	text := v.t.fa.Clipboard().Content()
	if text == "" || (!always && text == v.clip) {
		return
	}
	if err := v.display.Send(stream.Input{Kind: stream.InputClipboard, Text: text}); err != nil {
		v.t.log.Debug("clipboard not offered to the app", "app", v.name, "err", err)
		return
	}
	v.clip = text
}

func (v *viewerWindow) disconnect() {
	if v.cancel != nil {
		v.cancel()
	}
	if v.display != nil {
		v.display.Close()
		v.display = nil
	}
}

// update shows a state: where the app runs, what the buttons may do, and
// the handoff's progress.
func (v *viewerWindow) update(s State) {
	a, ok := s.App(v.name)
	machine := s.Self.Name
	if machine == "" {
		machine = "this device"
	}
	switch {
	case s.Connecting():
		v.where.SetText("connecting…")
	case !s.Connected:
		v.where.SetText("daemon not running")
	case !ok:
		v.where.SetText("stopped")
		machine = ""
	case a.Remote:
		machine = a.Peer
		v.where.SetText("running on " + a.Peer)
	default:
		v.where.SetText(appStatus(a, s))
	}
	if machine != "" {
		v.win.SetTitle(v.name + " — on " + machine)
	} else {
		v.win.SetTitle(v.name + " — stopped")
	}
	if ok && sendable(a, s) {
		v.sendBtn.Enable()
	} else {
		v.sendBtn.Disable()
	}
	_, busy := s.Handoffs[v.name]
	if ok && a.Remote && !a.Pending && !busy {
		v.backBtn.Enable()
	} else {
		v.backBtn.Disable()
	}
	if h, busy := s.Handoffs[v.name]; busy {
		v.screen.overlay.set(&h)
	} else {
		v.screen.overlay.set(nil)
	}
}

// sendMenu pops the list of devices the app can go to under the button.
func (v *viewerWindow) sendMenu() {
	var items []*fyne.MenuItem
	for _, p := range v.t.state.Targets() {
		key := p.ID.String()
		items = append(items, fyne.NewMenuItemWithIcon(p.Name, iconDeviceReady, func() { v.t.send(v.name, key) }))
	}
	if len(items) == 0 {
		none := fyne.NewMenuItem("No paired device online", nil)
		none.Disabled = true
		devices := fyne.NewMenuItem("Devices…", v.t.showDevices)
		items = append(items, none, devices)
	}
	pos := fyne.CurrentApp().Driver().AbsolutePositionForObject(v.sendBtn).Add(fyne.NewPos(0, v.sendBtn.Size().Height))
	widget.ShowPopUpMenuAtPosition(fyne.NewMenu("", items...), v.win.Canvas(), pos)
}

// xWindow is the viewer's X window ID, 0 when unknown.
func (v *viewerWindow) xWindow() uint32 {
	if v.xid != 0 {
		return v.xid
	}
	if nw, ok := v.win.(driver.NativeWindow); ok {
		nw.RunNative(func(ctx any) {
			if x, ok := ctx.(driver.X11WindowContext); ok {
				v.xid = uint32(x.WindowHandle)
			}
		})
	}
	return v.xid
}

// viewerForXWindow says which app's viewer has the keyboard focus, given
// the focused X window and its ancestors.
func (t *Tray) viewerForXWindow(focus []uint32) string {
	for name, v := range t.viewers {
		for _, xid := range focus {
			if xid != 0 && v.xWindow() == xid {
				return name
			}
		}
	}
	return ""
}

// RunViewer opens a viewer window for one app (`handoff view NAME`) until
// the window is closed or ctx ends. It follows the daemon like the tray
// does, so the title, the buttons and the handoff overlay are live.
func RunViewer(ctx context.Context, c *app.Client, name string) error {
	fa := fyneapp.NewWithID(AppID)
	fa.SetIcon(iconApp)
	model := NewModel()
	spec, _ := hotkeyFromSettings("", fa.Preferences())
	t := NewTray(fa, model, Options{Client: c, Hotkey: spec})
	go (&Feed{Source: c, Model: model}).Run(t.ctx)
	t.showViewer(name)
	v := t.viewers[name]
	v.win.SetMaster()
	go func() {
		select {
		case <-ctx.Done():
			fyne.Do(t.quit)
		case <-t.ctx.Done():
		}
	}()
	fa.Run()
	t.Close()
	return nil
}
