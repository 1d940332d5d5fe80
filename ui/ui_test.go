package ui

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
	"github.com/handoff/handoff/stream"
)

// fakeActions records the daemon calls the windows make.
type fakeActions struct {
	mu       sync.Mutex
	calls    []string
	sendErr  error
	pairCode app.PairCode
	added    app.AddedPeer // AddPeer's answer
	addErr   error
}

func (f *fakeActions) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeActions) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeActions) Run(_ context.Context, req app.RunRequest) (engine.Info, error) {
	f.record("run %s %q", req.Name, req.Args)
	return engine.Info{Name: req.Name, State: engine.StateRunning}, nil
}
func (f *fakeActions) Stop(_ context.Context, name string) error {
	f.record("stop %s", name)
	return nil
}
func (f *fakeActions) Suspend(_ context.Context, name string) (engine.Info, error) {
	f.record("suspend %s", name)
	return engine.Info{}, nil
}
func (f *fakeActions) Resume(_ context.Context, name string) (engine.Info, error) {
	f.record("resume %s", name)
	return engine.Info{}, nil
}
func (f *fakeActions) Send(_ context.Context, name, peer string) (migration.Result, error) {
	f.record("send %s %s", name, peer)
	return migration.Result{Downtime: time.Second}, f.sendErr
}
func (f *fakeActions) BringBack(_ context.Context, name string) (engine.Info, error) {
	f.record("bring-back %s", name)
	return engine.Info{}, nil
}
func (f *fakeActions) PairCode(_ context.Context, peer string) (app.PairCode, error) {
	f.record("pair-code %s", peer)
	return f.pairCode, nil
}
func (f *fakeActions) PairCancel(_ context.Context, peer string) error {
	f.record("pair-cancel %s", peer)
	return nil
}
func (f *fakeActions) Pair(_ context.Context, peer, code string) (app.PeerView, error) {
	f.record("pair %s %s", peer, code)
	return app.PeerView{Peer: discovery.Peer{ID: f.pairCode.ID, Name: f.pairCode.Peer}, Trusted: true}, nil
}
func (f *fakeActions) Answer(_ context.Context, id string, accept bool) error {
	f.record("answer %s %v", id, accept)
	return nil
}
func (f *fakeActions) Trust(_ context.Context, id string, req app.TrustRequest) (app.PeerView, error) {
	f.record("trust %s %s auto=%v", id, req.Name, req.AutoAccept)
	return app.PeerView{}, nil
}

func (f *fakeActions) AddPeer(_ context.Context, address string) (app.AddedPeer, error) {
	f.record("add-peer %s", address)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.added, f.addErr
}
func (f *fakeActions) RemovePeer(_ context.Context, peer string) ([]discovery.SavedAddress, error) {
	f.record("remove-peer %s", peer)
	return []discovery.SavedAddress{{Addr: "192.0.2.3:7466"}}, nil
}

// variant forces the default theme's light or dark colours.
type variant struct {
	fyne.Theme
	v fyne.ThemeVariant
}

func (t variant) Color(n fyne.ThemeColorName, _ fyne.ThemeVariant) color.Color {
	return t.Theme.Color(n, t.v)
}

// newTestTray is a tray on Fyne's test driver with fake daemon calls that
// run synchronously.
func newTestTray(t *testing.T, dark bool) (*Tray, *Model, *fakeActions) {
	t.Helper()
	a := test.NewApp()
	t.Cleanup(a.Quit)
	v := theme.VariantLight
	if dark {
		v = theme.VariantDark
	}
	a.Settings().SetTheme(variant{theme.DefaultTheme(), v})
	m := NewModel()
	fa := &fakeActions{}
	tr := NewTray(a, m, Options{Actions: fa, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tr.async = func(f func()) { f() }
	t.Cleanup(tr.Close)
	return tr, m, fa
}

func TestTrayMenu(t *testing.T) {
	m := NewModel()
	m.Reset(testSnapshot())
	s := m.State()
	var got []string
	do := menuActions{
		show: func(a string) { got = append(got, "show "+a) }, bringBack: func(a string) { got = append(got, "back "+a) },
		suspend: func(a string) { got = append(got, "suspend "+a) }, resume: func(a string) { got = append(got, "resume "+a) },
		stop: func(a string) { got = append(got, "stop "+a) }, send: func(a, p string) { got = append(got, "send "+a+" "+p) },
		run: func() { got = append(got, "run") }, devices: func() { got = append(got, "devices") },
		copyID: func() { got = append(got, "copy") }, quit: func() { got = append(got, "quit") },
	}
	menu := trayMenu(s, do)
	want := `0|This device: ws-a|true|false
0|Copy device ID ` + testID(1).Short() + `|false|false
0||false|true
0|clock — suspended|true|false
0|    Show|true|false
0|    Send to ws-b|true|false
0|    Resume|false|false
0|    Stop|false|false
0||false|true
0|eyes — on ws-b|true|false
0|    Show|false|false
0|    Bring back|false|false
0||false|true
0|notes — running here|true|false
0|    Show|false|false
0|    Send to ws-b|false|false
0|    Suspend|false|false
0|    Stop|false|false
0||false|true
0|Run app…|false|false
0|Devices…|false|false
0||false|true
0|Quit|false|false
`
	if sig := menuSignature(menu); sig != want {
		t.Errorf("menu:\n%s\nwant:\n%s", sig, want)
	}
	// The items do what they say.
	find := func(items []*fyne.MenuItem, label string) *fyne.MenuItem {
		for _, it := range items {
			if strings.TrimSpace(it.Label) == label {
				return it
			}
		}
		t.Fatalf("no item %q", label)
		return nil
	}
	notes := appGroup(menu.Items, "notes — running here")
	find(notes, "Send to ws-b").Action()
	find(notes, "Suspend").Action()
	find(appGroup(menu.Items, "eyes — on ws-b"), "Bring back").Action()
	find(appGroup(menu.Items, "clock — suspended"), "Resume").Action()
	find(menu.Items, "Run app…").Action()
	if w := []string{"send notes " + testID(2).String(), "suspend notes", "back eyes", "resume clock", "run"}; !equal(got, w) {
		t.Errorf("actions %q, want %q", got, w)
	}

	// While notes moves its items are disabled and its label says so.
	m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "final"}})
	menu = trayMenu(m.State(), do)
	moving := appGroup(menu.Items, "notes — moving to ws-b — 66%")
	if len(moving) == 0 {
		t.Errorf("no notes during the handoff:\n%s", menuSignature(menu))
	}
	for _, it := range moving {
		if !it.Disabled {
			t.Errorf("%q enabled during a handoff", it.Label)
		}
	}

	// Before the first attempt to reach the daemon: do not say it is not
	// running yet.
	menu = trayMenu(NewModel().State(), do)
	if sig := menuSignature(menu); menu.Items[0].Label != "Connecting to the Handoff daemon…" ||
		strings.Contains(sig, "not running") || !find(menu.Items, "Run app…").Disabled {
		t.Errorf("menu before connecting:\n%s", sig)
	}

	// Without the daemon: say so, and nothing to run.
	m.Disconnected(errors.New("connection refused"))
	menu = trayMenu(m.State(), do)
	if menu.Items[0].Label != "Handoff daemon not running" || !find(menu.Items, "Run app…").Disabled {
		t.Errorf("disconnected menu:\n%s", menuSignature(menu))
	}
	// The apps still run and stay listed, but nothing can be done to them.
	if it := find(menu.Items, "clock — suspended"); it == nil {
		t.Errorf("apps gone from the disconnected menu:\n%s", menuSignature(menu))
	}
	for _, header := range []string{"clock — suspended", "eyes — on ws-b", "notes — running here"} {
		group := appGroup(menu.Items, header)
		if len(group) == 0 {
			t.Errorf("no %s in the disconnected menu:\n%s", header, menuSignature(menu))
		}
		for _, it := range group {
			if !it.Disabled {
				t.Errorf("%s: %q enabled without the daemon", header, it.Label)
			}
		}
	}
	// No apps, no peers.
	m.Reset(Snapshot{Self: app.Identity{Name: "ws-a", Short: "AAAAAAA"}})
	if sig := menuSignature(trayMenu(m.State(), do)); !strings.Contains(sig, "0|No apps yet|true|false") {
		t.Errorf("empty menu:\n%s", sig)
	}
}

// appGroup returns an app's items in the tray menu: those after its
// header (its name and status) up to the next separator.
func appGroup(items []*fyne.MenuItem, header string) []*fyne.MenuItem {
	for i, it := range items {
		if it.Label != header {
			continue
		}
		var group []*fyne.MenuItem
		for _, g := range items[i+1:] {
			if g.IsSeparator {
				break
			}
			group = append(group, g)
		}
		return group
	}
	return nil
}

// TestTrayMenuFollowsModel: the tray's menu is rebuilt when the model
// changes, and only then.
func TestTrayMenuFollowsModel(t *testing.T) {
	tr, m, _ := newTestTray(t, false)
	tr.hasTray = true
	m.Reset(testSnapshot())
	first := tr.menuSig
	if !strings.Contains(first, "notes — running here") {
		t.Fatalf("menu not built:\n%s", first)
	}
	m.Apply(app.Event{Type: app.EventApp, App: running("calc")})
	if !strings.Contains(tr.menuSig, "calc — running here") {
		t.Errorf("menu not rebuilt after an app started:\n%s", tr.menuSig)
	}
}

// lateTray stands for Fyne's desktop driver, which starts the
// StatusNotifier item only once its event loop runs and then publishes the
// first menu it was given, after any later SetSystemTrayMenu calls.
type lateTray struct {
	fyne.App
	first, last *fyne.Menu
}

func (l *lateTray) SetSystemTrayMenu(m *fyne.Menu) {
	if l.first == nil {
		l.first = m
	}
	l.last = m
}
func (l *lateTray) SetSystemTrayIcon(fyne.Resource) {}
func (l *lateTray) SetSystemTrayWindow(fyne.Window) {}

// TestTrayMenuBeforeTheLoop: the menu made before the first connection is
// the one Fyne publishes when its loop starts; it must show the state the
// tray has by then, not the state it had when it was made.
func TestTrayMenuBeforeTheLoop(t *testing.T) {
	a := test.NewApp()
	t.Cleanup(a.Quit)
	late := &lateTray{App: a}
	m := NewModel()
	tr := NewTray(late, m, Options{Actions: &fakeActions{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(tr.Close)
	tr.Start(true, false)
	if sig := menuSignature(late.first); !strings.Contains(sig, "0|Connecting to the Handoff daemon…|true|false") ||
		strings.Contains(sig, "not running") {
		t.Errorf("menu before any connection:\n%s", sig)
	}
	m.Reset(testSnapshot())
	if sig := menuSignature(late.first); !strings.Contains(sig, "0|This device: ws-a|true|false") ||
		!strings.Contains(sig, "notes — running here") {
		t.Errorf("the first menu, published after the first connection:\n%s", sig)
	}
	m.Disconnected(errors.New("connection refused"))
	m.Reset(testSnapshot())
	m.Apply(app.Event{Type: app.EventApp, App: running("calc")})
	if late.last != late.first || !strings.Contains(menuSignature(late.first), "calc — running here") {
		t.Errorf("after a reconnection and an event:\n%s", menuSignature(late.first))
	}
}

// devicesFixture is a tray with its Devices window laid out on the test
// driver.
func devicesFixture(t *testing.T, dark bool) (*Tray, *Model, *fakeActions, fyne.Window) {
	tr, m, fa := newTestTray(t, dark)
	m.Reset(testSnapshot())
	tr.Start(false, true)
	w := tr.devices.win
	w.Resize(fyne.NewSize(720, 540))
	return tr, m, fa, w
}

func center(o fyne.CanvasObject) fyne.Position {
	p := fyne.CurrentApp().Driver().AbsolutePositionForObject(o)
	return p.Add(fyne.NewPos(o.Size().Width/2, o.Size().Height/2))
}

func TestDevicesDragAndDrop(t *testing.T) {
	tr, m, fa, w := devicesFixture(t, false)
	d := tr.devices
	notes, wsb := d.tiles["notes"], d.peers[testID(2).String()]
	wsc, wsd := d.peers[testID(3).String()], d.peers[testID(4).String()]
	if notes == nil || wsb == nil || wsc == nil || wsd == nil {
		t.Fatalf("tiles %v, peers %v", d.tiles, d.peers)
	}
	from := center(notes)
	delta := func(to fyne.CanvasObject) (float32, float32) {
		c := center(to)
		return c.X - from.X, c.Y - from.Y
	}

	// Hovering: valid and invalid targets are highlighted differently.
	dx, dy := delta(wsc)
	notes.Dragged(&fyne.DragEvent{PointEvent: fyne.PointEvent{Position: fyne.NewPos(notes.Size().Width/2, notes.Size().Height/2)}, Dragged: fyne.Delta{DX: dx, DY: dy}})
	if wsc.highlight != highlightInvalid || wsb.highlight != highlightNone || !d.ghost.Visible() {
		t.Errorf("over ws-c: highlight %v / %v, ghost %v", wsc.highlight, wsb.highlight, d.ghost.Visible())
	}
	if !strings.Contains(d.hint.Text, "pair with it first") {
		t.Errorf("hint over an unpaired device: %q", d.hint.Text)
	}
	bx, by := delta(wsb)
	notes.Dragged(&fyne.DragEvent{Dragged: fyne.Delta{DX: bx - dx, DY: by - dy}})
	if wsb.highlight != highlightValid || wsc.highlight != highlightNone {
		t.Errorf("over ws-b: highlight %v / %v", wsb.highlight, wsc.highlight)
	}
	notes.DragEnd()
	if got := fa.Calls(); len(got) != 1 || got[0] != "send notes "+testID(2).String() {
		t.Fatalf("calls after a drop on ws-b: %q", got)
	}
	if wsb.highlight != highlightNone || d.ghost.Visible() {
		t.Error("the highlight or the ghost stayed after the drop")
	}
	if tr.lastPeer() != testID(2).String() {
		t.Errorf("last peer %q", tr.lastPeer())
	}

	// Dropping on an unpaired or offline device, or on nothing, sends nothing.
	for _, target := range []fyne.CanvasObject{wsc, wsd, d.hint} {
		dx, dy := delta(target)
		test.Drag(w.Canvas(), from, dx, dy)
	}
	if got := fa.Calls(); len(got) != 1 {
		t.Errorf("calls after invalid drops: %q", got)
	}
	// A remote app cannot be dragged.
	eyes := d.tiles["eyes"]
	dx, dy = delta(wsb)
	test.Drag(w.Canvas(), center(eyes), dx, dy)
	if got := fa.Calls(); len(got) != 1 {
		t.Errorf("a remote app was sent: %q", got)
	}

	// Progress from the daemon's events shows on the tile.
	m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out",
		Phase: "pre-copy", Round: 1, Bytes: 4 << 20, Total: 8 << 20}})
	if !notes.moving.Visible() || notes.status.Visible() || notes.progress.TextFormatter() != "Copying 40%" {
		t.Errorf("tile during handoff: moving %v, progress %q", notes.moving.Visible(), notes.progress.TextFormatter())
	}
	m.Apply(app.Event{Type: app.EventAppRemoved, App: &engine.Info{Name: "notes"}})
	m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "done"}})
	if tile := d.tiles["notes"]; tile == nil || tile.moving.Visible() || tile.status.Text != "on ws-b" {
		t.Errorf("tile after the handoff: %+v", tile)
	}
}

// TestDevicesWindowConnecting: opened before the tray reached the daemon,
// the window does not claim the daemon is not running until an attempt
// failed.
func TestDevicesWindowConnecting(t *testing.T) {
	tr, m, _ := newTestTray(t, false)
	tr.Start(false, true)
	d := tr.devices
	if d.banner.Visible() || d.self.Text != "Connecting to the Handoff daemon…" {
		t.Errorf("before connecting: banner %v, %q", d.banner.Visible(), d.self.Text)
	}
	m.Disconnected(errors.New("connection refused"))
	if !d.banner.Visible() || d.self.Text != "Not connected" {
		t.Errorf("after a failed attempt: banner %v, %q", d.banner.Visible(), d.self.Text)
	}
	m.Reset(testSnapshot())
	if d.banner.Visible() || !strings.HasPrefix(d.self.Text, "This device: ws-a") {
		t.Errorf("connected: banner %v, %q", d.banner.Visible(), d.self.Text)
	}
}

func TestDevicesWindowUpdates(t *testing.T) {
	tr, m, fa, _ := devicesFixture(t, false)
	d := tr.devices
	if d.banner.Visible() {
		t.Error("banner shown while connected")
	}
	m.Apply(app.Event{Type: app.EventPeer, Peer: ptr(peer("ws-e", 5, true, false)), Change: "appeared"})
	if p := d.peers[testID(5).String()]; p == nil || !p.pair.Visible() || p.status.Text != "online · not paired" {
		t.Fatalf("new peer icon: %+v", p)
	}
	if p := d.peers[testID(2).String()]; p.pair.Visible() {
		t.Error("a paired device offers pairing")
	}
	m.Apply(app.Event{Type: app.EventPeer, Peer: ptr(peer("ws-e", 5, true, false)), Change: "left"})
	if d.peers[testID(5).String()] != nil || len(d.peerBox.Objects) != 3 {
		t.Error("a device that left is still shown")
	}

	// Pairing from the window: code dialog, confirm, pair.
	fa.pairCode = app.PairCode{Peer: "ws-c", ID: testID(3), Code: "123456"}
	tr.pair(d.peers[testID(3).String()].peer)
	overlay := d.win.Canvas().Overlays().Top()
	if overlay == nil {
		t.Fatal("no pairing dialog")
	}
	if !strings.Contains(test.RenderObjectToMarkup(overlay), "123 456") {
		t.Error("the pairing dialog does not show the code")
	}
	confirm := findButton(t, overlay, "The codes match")
	test.Tap(confirm)
	if got := fa.Calls(); len(got) != 2 || got[0] != "pair-code "+testID(3).String() || got[1] != "pair "+testID(3).String()+" 123456" {
		t.Errorf("calls: %q", got)
	}

	m.Disconnected(errors.New("the daemon went away"))
	if !d.banner.Visible() || !strings.Contains(d.bannerMsg.Text, "not running") {
		t.Error("no banner without the daemon")
	}
}

// TestDevicesAddByAddress: "Add by address…" takes only what can be an
// address, asks the daemon to add it, and says what answered; a device at
// a saved address offers to forget it, and stays listed offline.
func TestDevicesAddByAddress(t *testing.T) {
	tr, m, fa, w := devicesFixture(t, false)
	d := tr.devices
	fa.added = app.AddedPeer{
		Address: discovery.AddressState{SavedAddress: discovery.SavedAddress{Addr: "192.0.2.5:7466", ID: testID(5), Name: "ws-e"}, Online: true},
		Peer:    &app.PeerView{Peer: discovery.Peer{ID: testID(5), Name: "ws-e", Online: true}, Saved: []string{"192.0.2.5:7466"}},
	}
	test.Tap(d.addBtn)
	dlg := w.Canvas().Overlays().Top()
	if dlg == nil || d.addEntry == nil {
		t.Fatal("no dialog asking for an address")
	}
	add := findButton(t, dlg, "Add")
	test.Type(d.addEntry, "ws_e!")
	if !add.Disabled() {
		t.Error("the dialog takes an address that cannot be one")
	}
	d.addEntry.SetText("")
	test.Type(d.addEntry, "192.0.2.5")
	if add.Disabled() {
		t.Fatal("the dialog refuses a plain IP address")
	}
	test.Tap(add)
	if got := fa.Calls(); len(got) != 1 || got[0] != "add-peer 192.0.2.5" {
		t.Fatalf("calls: %q", got)
	}
	if !strings.Contains(d.hint.Text, "ws-e answers at 192.0.2.5:7466. Pair with it") {
		t.Errorf("after adding: %q", d.hint.Text)
	}

	// The daemon's events bring the device; it leaves, and stays, offline.
	m.Apply(app.Event{Type: app.EventPeer, Peer: fa.added.Peer, Change: "saved"})
	gone := *fa.added.Peer
	gone.Online = false
	m.Apply(app.Event{Type: app.EventPeer, Peer: &gone, Change: "left"})
	icon := d.peers[testID(5).String()]
	if icon == nil || icon.status.Text != "offline · by address" {
		t.Fatalf("a device at a saved address that left: %+v", icon)
	}
	// Its menu forgets the address.
	icon.TappedSecondary(&fyne.PointEvent{AbsolutePosition: center(icon)})
	pop := w.Canvas().Overlays().Top()
	menu := findMenu(t, pop)
	if menu == nil || len(menu.Items) != 1 || !strings.Contains(test.RenderObjectToMarkup(pop), "Forget its address (192.0.2.5:7466)") {
		t.Fatalf("no menu to forget the address of a device found by it: %s", test.RenderObjectToMarkup(pop))
	}
	test.Tap(menu.Items[0].(fyne.Tappable))
	if got := fa.Calls(); len(got) != 2 || got[1] != "remove-peer "+testID(5).String() {
		t.Fatalf("calls: %q", got)
	}
	// A device found otherwise has no such menu.
	w.Canvas().Overlays().Remove(pop)
	before := w.Canvas().Overlays().Top()
	d.peers[testID(3).String()].TappedSecondary(&fyne.PointEvent{})
	if top := w.Canvas().Overlays().Top(); top != before && findMenu(t, top) != nil {
		t.Error("a menu to forget the address of a device that has none saved")
	}
}

// findMenu finds a menu among an object's descendants.
func findMenu(t *testing.T, root fyne.CanvasObject) *widget.Menu {
	t.Helper()
	var found *widget.Menu
	var walk func(o fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		if found != nil || o == nil {
			return
		}
		switch c := o.(type) {
		case *widget.Menu:
			found = c
		case *widget.PopUpMenu:
			found = c.Menu
		case *fyne.Container:
			for _, ch := range c.Objects {
				walk(ch)
			}
		case fyne.Widget:
			for _, ch := range test.TempWidgetRenderer(t, c).Objects() {
				walk(ch)
			}
		}
	}
	walk(root)
	return found
}

func TestAddedText(t *testing.T) {
	at := discovery.SavedAddress{Addr: "192.0.2.5:7466", ID: testID(5), Name: "ws-e"}
	for _, tc := range []struct {
		added        app.AddedPeer
		title, words string
	}{
		{app.AddedPeer{Address: discovery.AddressState{SavedAddress: at, Online: true},
			Peer: &app.PeerView{Peer: discovery.Peer{Name: "ws-e"}, Trusted: true}}, "Found ws-e", "It is paired"},
		{app.AddedPeer{Address: discovery.AddressState{SavedAddress: at, Online: true},
			Peer: &app.PeerView{Peer: discovery.Peer{Name: "ws-e"}}}, "Found ws-e", "Pair with it"},
		{app.AddedPeer{Address: discovery.AddressState{SavedAddress: discovery.SavedAddress{Addr: "192.0.2.9:7466"},
			Error: "connection refused"}}, "Saved 192.0.2.9:7466", "Nothing answers at 192.0.2.9:7466 now (connection refused)"},
	} {
		title, words := addedText(tc.added)
		if title != tc.title || !strings.Contains(words, tc.words) {
			t.Errorf("addedText(%+v) = %q, %q; want %q, %q", tc.added, title, words, tc.title, tc.words)
		}
	}
}

// findButton finds a button by its text among an object's descendants.
func findButton(t *testing.T, root fyne.CanvasObject, text string) *widget.Button {
	t.Helper()
	var found *widget.Button
	var walk func(o fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		if found != nil {
			return
		}
		if b, ok := o.(*widget.Button); ok && b.Text == text {
			found = b
			return
		}
		switch c := o.(type) {
		case *fyne.Container:
			for _, ch := range c.Objects {
				walk(ch)
			}
		case fyne.Widget:
			r := test.TempWidgetRenderer(t, c)
			for _, ch := range r.Objects() {
				walk(ch)
			}
		}
	}
	walk(root)
	if found == nil {
		t.Fatalf("no button %q", text)
	}
	return found
}

func TestIncomingRequest(t *testing.T) {
	tr, m, fa := newTestTray(t, false)
	m.Reset(testSnapshot())
	req := app.HandoffRequest{ID: "calc-1", Kind: "handoff", App: "calc", From: "ws-b", FromID: testID(2)}
	m.Apply(app.Event{Type: app.EventRequest, Request: &req})
	p := tr.prompts["calc-1"]
	if p == nil {
		t.Fatal("no prompt for the request")
	}
	if !strings.Contains(test.RenderToMarkup(p.win.Canvas()), "ws-b ("+testID(2).Short()+") wants to hand you calc") {
		t.Error("the prompt does not say who hands what")
	}
	p.always.SetChecked(true)
	test.Tap(p.accept)
	// The name stored when the device was trusted stays.
	want := []string{"trust " + testID(2).String() + "  auto=true", "answer calc-1 true"}
	if got := fa.Calls(); !equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if tr.prompts["calc-1"] != nil || len(m.State().Requests) != 0 {
		t.Error("the prompt or the request stayed after the answer")
	}
	// Its arrival is announced.
	test.AssertNotificationSent(t, fyne.NewNotification("calc arrived from ws-b", "calc runs on this device now."), func() {
		m.Apply(app.Event{Type: app.EventApp, App: running("calc")})
	})

	// Declined, and a pairing request withdrawn by its sender.
	req2 := app.HandoffRequest{ID: "x-2", Kind: "handoff", App: "x", From: "ws-b", FromID: testID(2)}
	m.Apply(app.Event{Type: app.EventRequest, Request: &req2})
	test.Tap(tr.prompts["x-2"].refuse)
	if got := fa.Calls(); got[len(got)-1] != "answer x-2 false" {
		t.Errorf("decline: %q", got)
	}
	pairReq := app.HandoffRequest{ID: "pair-C", Kind: "pair", From: "ws-c", FromID: testID(3), Code: "654321"}
	m.Apply(app.Event{Type: app.EventRequest, Request: &pairReq})
	pp := tr.prompts["pair-C"]
	if pp == nil || pp.always != nil || !strings.Contains(test.RenderToMarkup(pp.win.Canvas()), "654 321") {
		t.Fatal("pairing prompt without its code")
	}
	m.Apply(app.Event{Type: app.EventRequest, Request: &app.HandoffRequest{ID: "pair-C", Kind: "pair-cancelled", From: "ws-c"}})
	if !pp.accept.Disabled() || !pp.status.Visible() {
		t.Error("a withdrawn request can still be accepted")
	}
}

func TestHandoffNotifications(t *testing.T) {
	tr, m, fa := newTestTray(t, false)
	m.Reset(testSnapshot())
	// A handoff started elsewhere (the CLI) is told from the events.
	test.AssertNotificationSent(t, fyne.NewNotification("Could not move notes to ws-b",
		"ws-b refused the handoff: the user of ws-b declined. notes keeps running where it was."), func() {
		m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out",
			Phase: "rollback", Error: "ws-b refused the handoff: the user of ws-b declined"}})
	})
	// One this tray started is told from Send's answer, with the reason.
	fa.sendErr = &app.APIError{Status: 409, Message: `send "notes" to ws-b: dial tcp 192.0.2.11:7466: connect: connection refused`}
	test.AssertNotificationSent(t, fyne.NewNotification("Could not move notes to ws-b",
		"Could not reach ws-b: is its Handoff daemon running? notes keeps running where it was."), func() {
		tr.send("notes", "ws-b")
	})
	fa.sendErr = nil
	test.AssertNotificationSent(t, fyne.NewNotification("notes moved to ws-b",
		"notes runs on ws-b now; it was paused for 1s."), func() {
		tr.send("notes", testID(2).String())
	})
}

func TestViewerWindow(t *testing.T) {
	tr, m, fa := newTestTray(t, false)
	m.Reset(testSnapshot())
	tr.showViewer("notes")
	v := tr.viewers["notes"]
	if v.win.Title() != "notes — on ws-a" || !v.screen.placeholder.Visible() {
		t.Fatalf("title %q, placeholder %v", v.win.Title(), v.screen.placeholder.Visible())
	}
	var sent []string
	v.screen.send = func(in stream.Input) error { sent = append(sent, fmt.Sprint(in)); return nil }
	v.screen.showFrame(testFrame(320, 200))
	if v.screen.placeholder.Visible() || v.screen.frameSize() != image.Pt(320, 200) {
		t.Fatal("the frame is not shown")
	}
	v.win.Resize(fyne.NewSize(320, 200+v.win.Content().MinSize().Height-v.screen.MinSize().Height))
	// Keys typed into the window reach the display.
	test.Type(v.screen, "a")
	if len(sent) == 0 {
		t.Error("typing sent nothing")
	}
	// Toolbar: send enabled for a running app with a peer online.
	if v.sendBtn.Disabled() || !v.backBtn.Disabled() {
		t.Error("buttons wrong for a local app")
	}
	test.Tap(v.sendBtn)
	if pop := v.win.Canvas().Overlays().Top(); pop == nil || !strings.Contains(test.RenderObjectToMarkup(pop), "ws-b") {
		t.Error("Send to… shows no menu with ws-b")
	}
	// During a handoff: overlay; afterwards the title names the peer.
	m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "freeze"}})
	if !v.screen.overlay.Visible() || v.screen.overlay.phase.Text != "Pausing the app…" || !v.sendBtn.Disabled() {
		t.Error("no overlay during the handoff")
	}
	m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "done"}})
	if !v.backBtn.Disabled() {
		t.Error("Bring back enabled before the daemon lists the app as remote")
	}
	m.SetRemote([]app.RemoteApp{{Name: "eyes", PeerID: testID(2), PeerName: "ws-b"}, {Name: "notes", PeerID: testID(2), PeerName: "ws-b"}})
	if v.screen.overlay.Visible() || v.win.Title() != "notes — on ws-b" || v.backBtn.Disabled() {
		t.Errorf("after the handoff: overlay %v, title %q", v.screen.overlay.Visible(), v.win.Title())
	}
	test.Tap(v.backBtn)
	if got := fa.Calls(); got[len(got)-1] != "bring-back notes" {
		t.Errorf("calls %q", got)
	}
	// Coming back: the overlay says so until the app runs here.
	if !v.screen.overlay.Visible() || v.screen.overlay.title.Text != "Arriving from ws-b" {
		t.Errorf("overlay while coming back: %v %q", v.screen.overlay.Visible(), v.screen.overlay.title.Text)
	}
	m.Apply(app.Event{Type: app.EventApp, App: running("notes")})
	if v.screen.overlay.Visible() || v.win.Title() != "notes — on ws-a" {
		t.Errorf("after coming back: overlay %v, title %q", v.screen.overlay.Visible(), v.win.Title())
	}
	// The in-window shortcut (when the global grab is unavailable): no
	// device used yet, so the chooser opens; the keys do not reach the app.
	v.screen.KeyDown(&fyne.KeyEvent{Name: desktop.KeyControlLeft})
	v.screen.KeyDown(&fyne.KeyEvent{Name: desktop.KeyAltLeft})
	n := len(sent)
	v.screen.KeyDown(&fyne.KeyEvent{Name: fyne.KeyH})
	if len(sent) != n || tr.chooser == nil || tr.chooser.app.Selected != "notes" {
		t.Errorf("Ctrl+Alt+H in the viewer: sent %d keys, chooser %v", len(sent)-n, tr.chooser)
	}
}

// testFrame is a recognisable picture: a gradient with a white square.
func testFrame(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 160, 255}
			if x > w/4 && x < w/2 && y > h/4 && y < h/2 {
				c = color.RGBA{255, 255, 255, 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

// assertGolden compares a rendering with testdata/NAME, allowing small
// differences (font rasterising differs a little between machines).
// UPDATE_GOLDEN=1 rewrites the goldens: do it deliberately and look at them.
func assertGolden(t *testing.T, name string, img image.Image) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		writePNG(t, path, img)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		out := filepath.Join(t.TempDir(), name)
		writePNG(t, out, img)
		t.Fatalf("no golden %s (the rendering is in %s; UPDATE_GOLDEN=1 writes it)", path, out)
	}
	defer f.Close()
	want, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if want.Bounds().Size() != img.Bounds().Size() {
		t.Fatalf("%s: size %v, golden %v", name, img.Bounds().Size(), want.Bounds().Size())
	}
	b, wb := img.Bounds(), want.Bounds()
	differ := 0
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			if colorDistance(img.At(b.Min.X+x, b.Min.Y+y), want.At(wb.Min.X+x, wb.Min.Y+y)) > 48 {
				differ++
			}
		}
	}
	if frac := float64(differ) / float64(b.Dx()*b.Dy()); frac > 0.005 {
		out := filepath.Join(os.TempDir(), "handoff-ui-failed-"+name)
		writePNG(t, out, img)
		t.Errorf("%s: %.2f%% of pixels differ from the golden; the rendering is in %s", name, frac*100, out)
	}
}

func colorDistance(a, b color.Color) float64 {
	ar, ag, ab, aa := a.RGBA()
	br, bg, bb, ba := b.RGBA()
	d := 0.0
	for _, p := range [][2]uint32{{ar, br}, {ag, bg}, {ab, bb}, {aa, ba}} {
		d = math.Max(d, math.Abs(float64(p[0]>>8)-float64(p[1]>>8)))
	}
	return d
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// TestGoldens renders the Devices window (with a drag over a peer and a
// handoff in progress), the incoming dialog and the viewer with its
// overlay, in the light and the dark theme.
func TestGoldens(t *testing.T) {
	for _, dark := range []bool{false, true} {
		suffix := "light"
		if dark {
			suffix = "dark"
		}
		t.Run(suffix, func(t *testing.T) {
			tr, m, _, w := devicesFixture(t, dark)
			m.Apply(app.Event{Type: app.EventApp, App: running("calc")})
			m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "calc", Peer: "ws-b", Direction: "out",
				Phase: "pre-copy", Bytes: 6 << 20, Total: 16 << 20}})
			d := tr.devices
			notes, wsb := d.tiles["notes"], d.peers[testID(2).String()]
			c, from := center(wsb), center(notes)
			notes.Dragged(&fyne.DragEvent{PointEvent: fyne.PointEvent{Position: fyne.NewPos(notes.Size().Width/2, notes.Size().Height/2)},
				Dragged: fyne.Delta{DX: c.X - from.X + 20, DY: c.Y - from.Y + 30}})
			assertGolden(t, "devices-"+suffix+".png", w.Canvas().Capture())
			notes.DragEnd()

			req := app.HandoffRequest{ID: "r", Kind: "handoff", App: "notes", From: "ws-b", FromID: testID(2)}
			m.Apply(app.Event{Type: app.EventRequest, Request: &req})
			assertGolden(t, "incoming-"+suffix+".png", tr.prompts["r"].win.Canvas().Capture())

			tr.showViewer("notes")
			v := tr.viewers["notes"]
			v.screen.showFrame(testFrame(480, 300))
			v.win.Resize(fyne.NewSize(480, 300+v.win.Content().MinSize().Height-v.screen.MinSize().Height))
			m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out",
				Phase: "final", Bytes: 300 << 10, Total: 1200 << 10}})
			assertGolden(t, "viewer-"+suffix+".png", v.win.Canvas().Capture())
		})
	}
}
