package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"
)

// chooser is the small window the handoff shortcut opens when it cannot
// tell what to send where: pick the app, then click the device.
type chooser struct {
	t      *Tray
	win    fyne.Window
	app    *widget.Select
	peers  *fyne.Container
	note   *widget.Label
	picked string
}

func newChooser(t *Tray) *chooser {
	c := &chooser{t: t}
	c.win = t.fa.NewWindow("Handoff — Send an app")
	c.win.SetIcon(iconApp)
	c.app = widget.NewSelect(nil, func(s string) { c.picked = s; c.update(c.t.state) })
	c.app.PlaceHolder = "Choose an app"
	c.peers = container.NewVBox()
	c.note = widget.NewLabel("")
	c.note.Wrapping = fyne.TextWrapWord
	c.win.SetContent(container.NewPadded(container.NewVBox(
		widget.NewLabelWithStyle("Send", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), c.app,
		widget.NewLabelWithStyle("to", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), c.peers, c.note)))
	c.win.Resize(fyne.NewSize(340, 220))
	c.win.SetCloseIntercept(func() { c.win.Hide() })
	return c
}

func (c *chooser) open(preselect string, s State) {
	if preselect != "" {
		c.picked = preselect
	}
	c.update(s)
	c.win.Show()
	c.win.RequestFocus()
}

func (c *chooser) update(s State) {
	var names []string
	for _, a := range s.Apps {
		if sendable(a, s) {
			names = append(names, a.Name)
		}
	}
	c.app.Options = names
	if _, ok := s.App(c.picked); ok && contains(names, c.picked) {
		c.app.Selected = c.picked
	} else {
		c.app.Selected = ""
		if len(names) == 1 {
			c.app.Selected = names[0]
		}
	}
	c.app.Refresh()
	c.peers.RemoveAll()
	targets := s.Targets()
	for _, p := range targets {
		key, name := p.ID.String(), p.Name
		b := widget.NewButtonWithIcon(name, iconDeviceReady, func() {
			if c.app.Selected == "" {
				return
			}
			c.t.send(c.app.Selected, key)
			c.win.Hide()
		})
		if key == c.t.lastPeer() {
			b.Importance = widget.HighImportance
		}
		if c.app.Selected == "" {
			b.Disable()
		}
		c.peers.Add(b)
	}
	switch {
	case s.Connecting():
		c.note.SetText("Connecting to the Handoff daemon…")
	case !s.Connected:
		c.note.SetText("The Handoff daemon is not running.")
	case len(names) == 0:
		c.note.SetText("No app runs here that could be sent.")
	case len(targets) == 0:
		c.note.SetText("No paired device is online. Pair one in the Devices window.")
	default:
		c.note.SetText("")
	}
	showIf(c.note, c.note.Text != "")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
