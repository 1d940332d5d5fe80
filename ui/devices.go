package ui

import (
	"fmt"
	"image/color"
	"sort"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/discovery"
)

const defaultHint = "Drag an app onto a device to send it there. Click an app to show it."

// devicesWindow shows the peers and the apps; dragging an app's tile onto a
// peer's icon sends the app there.
type devicesWindow struct {
	t       *Tray
	win     fyne.Window
	visible bool

	banner    *fyne.Container
	bannerMsg *widget.Label
	self      *widget.Label
	peerBox   *fyne.Container
	appBox    *fyne.Container
	noPeers   *widget.Label
	noApps    *widget.Label
	hint      *widget.Label
	peers     map[string]*peerIcon // by device ID
	peerOrder []string
	tiles     map[string]*appTile // by app name
	appOrder  []string

	addBtn   *widget.Button
	addEntry *widget.Entry // in the "Add by address" dialog, while it is up
	addForm  dialog.Dialog // that dialog

	dragLayer *fyne.Container
	ghost     *fyne.Container
	ghostName *widget.Label
	hovered   string // device ID under a dragged tile
}

func newDevicesWindow(t *Tray) *devicesWindow {
	d := &devicesWindow{t: t, peers: map[string]*peerIcon{}, tiles: map[string]*appTile{}}
	d.win = t.fa.NewWindow("Handoff — Devices")
	d.win.SetIcon(iconApp)

	d.bannerMsg = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	d.bannerMsg.Wrapping = fyne.TextWrapWord
	bannerBG := canvas.NewRectangle(theme.Color(theme.ColorNameError))
	bannerBG.CornerRadius = theme.InputRadiusSize()
	d.banner = container.NewStack(bannerBG, container.NewPadded(container.NewBorder(nil, nil,
		widget.NewIcon(theme.NewInvertedThemedResource(theme.WarningIcon())), nil, d.bannerMsg)))
	d.banner.Hide()

	d.self = widget.NewLabel("")
	runBtn := widget.NewButtonWithIcon("Run app…", theme.ContentAddIcon(), t.showRun)
	d.addBtn = widget.NewButtonWithIcon("Add by address…", theme.ComputerIcon(), d.showAddPeer)
	header := container.NewBorder(nil, nil, widget.NewIcon(iconLogo), container.NewHBox(d.addBtn, runBtn), d.self)

	d.peerBox = container.New(layout.NewGridWrapLayout(peerIconSize))
	d.appBox = container.New(layout.NewGridWrapLayout(appTileSize))
	d.noPeers = widget.NewLabel("No other devices seen yet. They appear here when Handoff runs on them on the same network; " +
		"where they do not (a network that blocks multicast), add one with “Add by address…”.")
	d.noPeers.Wrapping = fyne.TextWrapWord
	d.noApps = widget.NewLabel("No apps yet. Start one with “Run app…”.")
	d.hint = widget.NewLabelWithStyle(defaultHint, fyne.TextAlignCenter, fyne.TextStyle{Italic: true})
	d.hint.Wrapping = fyne.TextWrapWord

	heading := func(s string) fyne.CanvasObject {
		return widget.NewLabelWithStyle(s, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	body := container.NewVBox(
		heading("Devices"), d.noPeers, d.peerBox,
		widget.NewSeparator(),
		heading("Apps"), d.noApps, d.appBox,
	)
	main := container.NewBorder(container.NewVBox(d.banner, header, widget.NewSeparator()), d.hint, nil, nil,
		container.NewVScroll(body))

	d.ghostName = widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{Bold: true})
	ghostBG := canvas.NewRectangle(withAlpha(theme.Color(theme.ColorNamePrimary), 0x60))
	ghostBG.CornerRadius = theme.InputRadiusSize() * 2
	ghostBG.StrokeColor = theme.Color(theme.ColorNamePrimary)
	ghostBG.StrokeWidth = 2
	d.ghost = container.NewStack(ghostBG, container.NewCenter(container.NewVBox(
		container.NewCenter(sizedIcon(iconAppTile, 40)), d.ghostName)))
	d.ghost.Resize(fyne.NewSize(120, 90))
	d.ghost.Hide()
	d.dragLayer = container.NewWithoutLayout(d.ghost)

	d.win.SetContent(container.NewStack(main, d.dragLayer))
	d.win.Resize(fyne.NewSize(760, 560))
	if t.hasTray {
		d.win.SetCloseIntercept(func() { d.visible = false; d.win.Hide() })
	} else {
		d.win.SetMaster() // without a tray, this window is the app
	}
	return d
}

func (d *devicesWindow) show() {
	d.visible = true
	d.win.Show()
	d.win.RequestFocus()
}

// update shows a state: keeps the widgets of peers and apps that stay, so
// that a drag in progress is not disturbed.
func (d *devicesWindow) update(s State) {
	if s.Connected {
		d.banner.Hide()
		name := s.Self.Name
		if name == "" {
			name = "this device"
		}
		if s.Self.Short != "" {
			d.self.SetText("This device: " + name + "  ·  ID " + s.Self.Short)
		} else {
			d.self.SetText("This device: " + name)
		}
	} else if s.Connecting() {
		d.banner.Hide()
		d.self.SetText("Connecting to the Handoff daemon…")
	} else {
		d.bannerMsg.SetText("The Handoff daemon is not running, so nothing can be shown or moved. " +
			"Start it with: sudo handoff daemon (or sudo systemctl start handoffd). Retrying…")
		d.banner.Show()
		d.self.SetText("Not connected")
	}

	// Peers.
	var order []string
	seen := map[string]bool{}
	for _, p := range s.Peers {
		key := p.ID.String()
		seen[key] = true
		order = append(order, key)
		icon := d.peers[key]
		if icon == nil {
			icon = newPeerIcon(d)
			d.peers[key] = icon
		}
		icon.set(p)
	}
	for key := range d.peers {
		if !seen[key] {
			delete(d.peers, key)
		}
	}
	if !equal(order, d.peerOrder) {
		d.peerOrder = order
		objs := make([]fyne.CanvasObject, 0, len(order))
		for _, k := range order {
			objs = append(objs, d.peers[k])
		}
		d.peerBox.Objects = objs
		d.peerBox.Refresh()
	}
	showIf(d.noPeers, len(order) == 0 && s.Connected)
	showIf(d.peerBox, len(order) > 0)

	// Apps.
	order = order[:0:0]
	seen = map[string]bool{}
	for _, a := range s.Apps {
		seen[a.Name] = true
		order = append(order, a.Name)
		tile := d.tiles[a.Name]
		if tile == nil {
			tile = newAppTile(d)
			d.tiles[a.Name] = tile
		}
		h, busy := s.Handoffs[a.Name]
		if busy {
			tile.set(a, appStatus(a, s), &h)
		} else {
			tile.set(a, appStatus(a, s), nil)
		}
	}
	for name := range d.tiles {
		if !seen[name] {
			delete(d.tiles, name)
		}
	}
	sort.Strings(order)
	if !equal(order, d.appOrder) {
		d.appOrder = order
		objs := make([]fyne.CanvasObject, 0, len(order))
		for _, n := range order {
			objs = append(objs, d.tiles[n])
		}
		d.appBox.Objects = objs
		d.appBox.Refresh()
	}
	showIf(d.noApps, len(order) == 0 && s.Connected)
	showIf(d.appBox, len(order) > 0)
}

// showAddPeer asks for an address where a device may be found, for
// networks where discovery does not find it by itself.
func (d *devicesWindow) showAddPeer() {
	entry := widget.NewEntry()
	entry.SetPlaceHolder("192.0.2.2 or ws-b.example.org:7466")
	entry.Validator = func(s string) error {
		_, err := discovery.NormalizeAddress(s, app.DefaultPeerPort)
		return err
	}
	item := widget.NewFormItem("Address", entry)
	item.HintText = "Adding an address trusts nothing: pair with the device found there."
	d.addEntry = entry
	d.addForm = dialog.NewForm("Add a device by its address", "Add", "Cancel", []*widget.FormItem{item}, func(ok bool) {
		d.addEntry, d.addForm = nil, nil
		if ok {
			d.t.addPeer(strings.TrimSpace(entry.Text))
		}
	}, d.win)
	d.addForm.Resize(fyne.NewSize(460, d.addForm.MinSize().Height))
	d.addForm.Show()
	d.win.Canvas().Focus(entry)
}

// addedText words what adding an address found: a title and a message.
func addedText(a app.AddedPeer) (string, string) {
	switch v := a.Peer; {
	case v != nil && a.Address.Online && v.Trusted:
		return "Found " + v.Name, v.Name + " answers at " + a.Address.Addr + ". It is paired: drag an app onto it to send it there."
	case v != nil && a.Address.Online:
		return "Found " + v.Name, v.Name + " answers at " + a.Address.Addr + ". Pair with it to send apps there: both screens then show a code to compare."
	default:
		why := ""
		if a.Address.Error != "" {
			why = " (" + a.Address.Error + ")"
		}
		return "Saved " + a.Address.Addr, "Nothing answers at " + a.Address.Addr + " now" + why +
			". Handoff looks there again when the network changes, and from time to time."
	}
}

func showIf(o fyne.CanvasObject, show bool) {
	if show {
		o.Show()
	} else {
		o.Hide()
	}
}

// targets are the peer icons where they are drawn now.
func (d *devicesWindow) targets() []dropTarget {
	drv := d.t.fa.Driver()
	var out []dropTarget
	for _, key := range d.peerOrder {
		icon := d.peers[key]
		if icon == nil || !icon.Visible() {
			continue
		}
		pos := drv.AbsolutePositionForObject(icon)
		size := icon.Size()
		out = append(out, dropTarget{Key: key, Name: icon.peer.Name, Box: box{pos.X, pos.Y, size.Width, size.Height},
			Online: icon.peer.Online && !icon.peer.Impostor, Trusted: icon.peer.Trusted})
	}
	return out
}

// dragTo moves the ghost of a dragged tile and highlights the peer under it.
func (d *devicesWindow) dragTo(tile *appTile, at fyne.Position) {
	origin := d.t.fa.Driver().AbsolutePositionForObject(d.dragLayer)
	d.ghostName.SetText(tile.item.Name)
	gs := d.ghost.Size()
	d.ghost.Move(at.Subtract(origin).Subtract(fyne.NewPos(gs.Width/2, gs.Height/2)))
	d.ghost.Show()
	target, ok := targetAt(d.targets(), at.X, at.Y)
	d.setHovered(target, ok)
	switch {
	case !ok:
		d.hint.SetText("Drop " + tile.item.Name + " on a device to send it there.")
	default:
		if yes, why := target.accepts(); yes {
			d.hint.SetText("Drop to send " + tile.item.Name + " to " + target.Name + ".")
		} else {
			d.hint.SetText(why + ".")
		}
	}
}

func (d *devicesWindow) setHovered(target dropTarget, ok bool) {
	d.hovered = ""
	if ok {
		d.hovered = target.Key
	}
	for key, icon := range d.peers {
		h := highlightNone
		if ok && key == target.Key {
			h = highlightInvalid
			if yes, _ := target.accepts(); yes {
				h = highlightValid
			}
		}
		icon.setHighlight(h)
	}
}

// drop ends a drag: sends the app when it was let go over a valid target.
func (d *devicesWindow) drop(tile *appTile, at fyne.Position) {
	d.ghost.Hide()
	target, ok := targetAt(d.targets(), at.X, at.Y)
	d.setHovered(dropTarget{}, false)
	if !ok {
		d.hint.SetText(defaultHint)
		return
	}
	if yes, why := target.accepts(); !yes {
		d.hint.SetText(why + ".")
		return
	}
	d.hint.SetText("Sending " + tile.item.Name + " to " + target.Name + "…")
	d.t.send(tile.item.Name, target.Key)
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: a}
}

func sizedIcon(res fyne.Resource, size float32) fyne.CanvasObject {
	img := canvas.NewImageFromResource(res)
	img.FillMode = canvas.ImageFillContain
	img.SetMinSize(fyne.NewSize(size, size))
	return img
}

var (
	peerIconSize = fyne.NewSize(150, 176)
	appTileSize  = fyne.NewSize(168, 132)
)

type highlight int

const (
	highlightNone highlight = iota
	highlightValid
	highlightInvalid
)

// peerIcon is a device: its symbol, name, state, and a Pair button when it
// is online and not paired.
type peerIcon struct {
	widget.BaseWidget
	d         *devicesWindow
	peer      app.PeerView
	highlight highlight
	bg        *canvas.Rectangle
	icon      *canvas.Image
	name      *widget.Label
	status    *widget.Label
	pair      *widget.Button
}

func newPeerIcon(d *devicesWindow) *peerIcon {
	p := &peerIcon{d: d, bg: canvas.NewRectangle(color.Transparent),
		icon:   canvas.NewImageFromResource(iconDeviceReady),
		name:   widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{Bold: true}),
		status: widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{}),
	}
	p.name.Truncation = fyne.TextTruncateEllipsis
	p.status.Truncation = fyne.TextTruncateEllipsis
	p.icon.FillMode = canvas.ImageFillContain
	p.icon.SetMinSize(fyne.NewSize(56, 56))
	p.bg.CornerRadius = theme.InputRadiusSize() * 2
	p.pair = widget.NewButtonWithIcon("Pair…", iconPair, func() { d.t.pair(p.peer) })
	p.pair.Importance = widget.HighImportance
	p.ExtendBaseWidget(p)
	return p
}

func (p *peerIcon) CreateRenderer() fyne.WidgetRenderer {
	box := container.NewVBox(p.icon, p.name, p.status, p.pair)
	return widget.NewSimpleRenderer(container.NewStack(p.bg, container.NewPadded(box)))
}

func (p *peerIcon) set(v app.PeerView) {
	p.peer = v
	p.name.SetText(v.Name)
	var status string
	res := fyne.Resource(iconDeviceOffline)
	switch {
	case v.Impostor:
		status = "wrong certificate!"
	case v.Online && v.Trusted:
		status, res = "online · paired", iconDeviceReady
	case v.Online:
		status, res = "online · not paired", iconDeviceUnpaired
	case v.Trusted:
		status = "offline · paired"
	case len(v.Saved) > 0:
		status = "offline · by address"
	default:
		status = "offline"
	}
	p.status.SetText(status)
	if p.icon.Resource != res {
		p.icon.Resource = res
		p.icon.Refresh()
	}
	if v.Online && !v.Trusted && !v.Impostor {
		p.pair.Show()
	} else {
		p.pair.Hide()
	}
	p.Refresh()
}

// TappedSecondary offers to forget the saved address of a device found by
// address (its trust stays as it is).
func (p *peerIcon) TappedSecondary(e *fyne.PointEvent) {
	if len(p.peer.Saved) == 0 {
		return
	}
	v := p.peer
	forget := fyne.NewMenuItem("Forget its address ("+strings.Join(v.Saved, ", ")+")", func() { p.d.t.removePeer(v) })
	widget.ShowPopUpMenuAtPosition(fyne.NewMenu("", forget), p.d.win.Canvas(), e.AbsolutePosition)
}

func (p *peerIcon) setHighlight(h highlight) {
	if p.highlight == h {
		return
	}
	p.highlight = h
	p.Refresh()
}

func (p *peerIcon) Refresh() {
	switch p.highlight {
	case highlightValid:
		p.bg.FillColor = withAlpha(theme.Color(theme.ColorNamePrimary), 0x50)
		p.bg.StrokeColor = theme.Color(theme.ColorNamePrimary)
		p.bg.StrokeWidth = 3
	case highlightInvalid:
		p.bg.FillColor = withAlpha(theme.Color(theme.ColorNameError), 0x30)
		p.bg.StrokeColor = theme.Color(theme.ColorNameError)
		p.bg.StrokeWidth = 3
	default:
		p.bg.FillColor = theme.Color(theme.ColorNameInputBackground)
		p.bg.StrokeColor = color.Transparent
		p.bg.StrokeWidth = 0
	}
	p.bg.Refresh()
	p.BaseWidget.Refresh()
}

// appTile is an app: tap to show it, drag it onto a device to send it,
// right-click for its menu. During a handoff it shows the phase and a
// progress bar.
type appTile struct {
	widget.BaseWidget
	d        *devicesWindow
	item     AppItem
	bg       *canvas.Rectangle
	icon     *canvas.Image
	name     *widget.Label
	status   *widget.Label
	progress *widget.ProgressBar
	phase    string
	moving   *fyne.Container

	dragging bool
	dragAt   fyne.Position
}

func newAppTile(d *devicesWindow) *appTile {
	t := &appTile{d: d, bg: canvas.NewRectangle(color.Transparent),
		icon:     canvas.NewImageFromResource(iconAppTile),
		name:     widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{Bold: true}),
		status:   widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{}),
		progress: widget.NewProgressBar(),
	}
	t.name.Truncation = fyne.TextTruncateEllipsis
	t.status.Truncation = fyne.TextTruncateEllipsis
	t.icon.FillMode = canvas.ImageFillContain
	t.icon.SetMinSize(fyne.NewSize(40, 40))
	t.bg.CornerRadius = theme.InputRadiusSize() * 2
	t.progress.TextFormatter = func() string {
		return fmt.Sprintf("%s %d%%", t.phase, int(t.progress.Value*100))
	}
	t.moving = container.NewPadded(t.progress)
	t.moving.Hide()
	t.ExtendBaseWidget(t)
	return t
}

func (t *appTile) CreateRenderer() fyne.WidgetRenderer {
	box := container.NewVBox(t.icon, t.name, container.NewStack(t.status, t.moving))
	return widget.NewSimpleRenderer(container.NewStack(t.bg, container.NewPadded(box)))
}

func (t *appTile) set(a AppItem, status string, h *Handoff) {
	t.item = a
	t.name.SetText(a.Name)
	t.status.SetText(status)
	res := fyne.Resource(iconAppTile)
	if a.Remote {
		res = iconAppRemote
	}
	if t.icon.Resource != res {
		t.icon.Resource = res
		t.icon.Refresh()
	}
	if h != nil {
		t.phase = shortPhase(*h)
		t.progress.SetValue(h.Fraction())
		t.status.Hide()
		t.moving.Show()
	} else {
		t.status.Show()
		t.moving.Hide()
	}
	t.Refresh()
}

func (t *appTile) Refresh() {
	t.bg.FillColor = theme.Color(theme.ColorNameInputBackground)
	if t.dragging {
		t.bg.FillColor = theme.Color(theme.ColorNameHover)
	}
	t.bg.Refresh()
	t.BaseWidget.Refresh()
}

// draggable: a local app that runs and is not moving already.
func (t *appTile) draggable() bool { return sendable(t.item, t.d.t.state) }

func (t *appTile) Tapped(*fyne.PointEvent) {
	if t.item.Remote || t.item.State == "running" {
		t.d.t.showViewer(t.item.Name)
	}
}

func (t *appTile) TappedSecondary(e *fyne.PointEvent) {
	items := appItems(t.item, t.d.t.state, t.d.t.menuActions())
	widget.ShowPopUpMenuAtPosition(fyne.NewMenu("", items...), t.d.win.Canvas(), e.AbsolutePosition)
}

// Dragged follows the pointer. The real driver gives the pointer's
// absolute position; the test driver only a start and deltas, so both are
// handled.
func (t *appTile) Dragged(e *fyne.DragEvent) {
	if !t.draggable() {
		if !t.dragging {
			t.d.hint.SetText(t.item.Name + " cannot be sent now: only apps running here can be.")
		}
		t.dragging = true
		return
	}
	if !t.dragging {
		t.dragging = true
		t.dragAt = t.d.t.fa.Driver().AbsolutePositionForObject(t).Add(e.Position)
		t.Refresh()
	}
	if !e.AbsolutePosition.IsZero() {
		t.dragAt = e.AbsolutePosition
	} else {
		t.dragAt = t.dragAt.Add(e.Dragged)
	}
	t.d.dragTo(t, t.dragAt)
}

func (t *appTile) DragEnd() {
	was := t.dragging
	t.dragging = false
	t.Refresh()
	if was && t.draggable() {
		t.d.drop(t, t.dragAt)
	}
}
