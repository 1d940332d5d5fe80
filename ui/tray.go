package ui

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
)

// AppID is the desktop application ID from FyneApp.toml.
const AppID = "dev.handoff.Handoff"

// Preference keys.
const (
	prefHotkey   = "hotkey"    // the handoff shortcut, e.g. "Ctrl+Alt+H"
	prefLastPeer = "last-peer" // the device ID the last app went to
)

// Actions are the daemon calls the windows make; *app.Client has them all.
type Actions interface {
	Run(ctx context.Context, req app.RunRequest) (engine.Info, error)
	Stop(ctx context.Context, name string) error
	Suspend(ctx context.Context, name string) (engine.Info, error)
	Resume(ctx context.Context, name string) (engine.Info, error)
	Send(ctx context.Context, name, peer string) (migration.Result, error)
	BringBack(ctx context.Context, name string) (engine.Info, error)
	PairCode(ctx context.Context, peer string) (app.PairCode, error)
	Pair(ctx context.Context, peer, code string) (app.PeerView, error)
	PairCancel(ctx context.Context, peer string) error
	Answer(ctx context.Context, id string, accept bool) error
	Trust(ctx context.Context, id string, req app.TrustRequest) (app.PeerView, error)
	AddPeer(ctx context.Context, address string) (app.AddedPeer, error)
	RemovePeer(ctx context.Context, peer string) ([]discovery.SavedAddress, error)
}

var _ Actions = (*app.Client)(nil)

// Tray is the desktop side of Handoff: the tray menu (or, without a tray
// host, the Devices window), viewer windows, prompts and notifications, all
// rendered from one Model. Its methods run on Fyne's goroutine; calls to
// the daemon run in goroutines of their own and come back with fyne.Do.
type Tray struct {
	fa     fyne.App
	client *app.Client // for viewers' displays; nil in tests
	do     Actions
	model  *Model
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	hotkey hotkeySpec

	// hasTray: a StatusNotifier host shows our menu.
	hasTray bool
	menuSig string
	// menu is the one menu the tray shows: later states replace its items
	// (see updateMenu).
	menu *fyne.Menu

	state    State // as last rendered
	devices  *devicesWindow
	viewers  map[string]*viewerWindow
	prompts  map[string]*prompt // open request prompts by request ID
	runWin   *runWindow
	chooser  *chooser
	focused  string          // the app whose viewer has the keyboard
	opened   []string        // the apps whose viewers are open, in the order they opened
	speaker  *speaker        // plays one viewer's sound (see sound.go)
	sending  map[string]bool // handoffs this tray started: their result is told by Send's answer
	quitting bool

	// async runs a call to the daemon; tests make it synchronous.
	async func(func())
}

// Options configure a Tray.
type Options struct {
	Client  *app.Client
	Actions Actions // the client, unless set
	Hotkey  hotkeySpec
	Log     *slog.Logger
}

// NewTray makes a tray over a Fyne app and a model. Nothing shows until
// Start.
func NewTray(fa fyne.App, m *Model, opt Options) *Tray {
	ctx, cancel := context.WithCancel(context.Background())
	t := &Tray{fa: fa, client: opt.Client, do: opt.Actions, model: m, log: opt.Log, ctx: ctx, cancel: cancel,
		hotkey: opt.Hotkey, viewers: map[string]*viewerWindow{}, prompts: map[string]*prompt{},
		sending: map[string]bool{}, async: func(f func()) { go f() }}
	t.speaker = newSpeaker(t.log)
	if t.do == nil && opt.Client != nil {
		t.do = opt.Client
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.hotkey.Keysym == 0 {
		t.hotkey, _ = parseHotkey(DefaultHotkey)
	}
	t.state = m.State()
	m.Listen(func(s State, notes []Notice) {
		fyne.Do(func() { t.render(s, notes) })
	})
	return t
}

// Start shows the tray menu when there is a tray host, the Devices window
// when there is none (or when asked).
func (t *Tray) Start(hasTray, showDevices bool) {
	t.hasTray = hasTray
	if hasTray {
		if desk, ok := t.fa.(desktop.App); ok {
			desk.SetSystemTrayIcon(iconApp)
		}
		t.updateMenu(t.state)
	}
	if !hasTray || showDevices {
		t.showDevices()
	}
	t.render(t.model.State(), nil)
}

// Close stops what the tray started.
func (t *Tray) Close() {
	t.cancel()
	for _, v := range t.viewers {
		v.disconnect()
	}
	t.speaker.Close()
}

// updateSound gives the speaker to the viewer whose turn it is: the one
// with the focus, or else the one opened last.
func (t *Tray) updateSound() {
	muted := map[string]bool{}
	for name, v := range t.viewers {
		muted[name] = v.muted
	}
	t.speaker.turn(soundFrom(t.focused, t.opened, muted))
}

// render shows a new state and tells the user what they should hear about.
func (t *Tray) render(s State, notes []Notice) {
	if t.quitting {
		return
	}
	t.state = s
	if t.hasTray {
		t.updateMenu(s)
	}
	if t.devices != nil {
		t.devices.update(s)
	}
	for _, v := range t.viewers {
		v.update(s)
	}
	if t.chooser != nil {
		t.chooser.update(s)
	}
	for _, n := range notes {
		t.notice(n)
	}
}

func (t *Tray) notice(n Notice) {
	switch n.Kind {
	case NoticeRequest:
		t.showRequest(n.Request)
	case NoticeRequestGone:
		if p := t.prompts[n.Request.ID]; p != nil {
			p.withdrawn()
		}
	case NoticeHandoffDone:
		if n.Direction == "in" {
			t.notify(n.App+" arrived from "+n.Peer, n.App+" runs on this device now.")
		} else if !t.sending[n.App] {
			t.notify(n.App+" moved to "+n.Peer, n.App+" runs on "+n.Peer+" now.")
		}
	case NoticeHandoffFailed:
		if !t.sending[n.App] {
			t.notifyFailed(n.App, n.Peer, n.Reason)
		}
	case NoticeDisconnected:
		t.notify("Handoff daemon stopped", "Apps keep running. The tray reconnects when the daemon is back.")
	case NoticeMessage:
		t.notify(n.Title, n.Body)
	}
}

func (t *Tray) notify(title, body string) {
	t.log.Info("notification", "title", title, "body", body)
	n := fyne.NewNotification(title, body)
	t.fa.SendNotification(n)
}

func (t *Tray) notifyFailed(name, peer, reason string) {
	t.notify("Could not move "+name+" to "+peer, plainReason(reason, peer)+" "+name+" keeps running where it was.")
}

// updateMenu rebuilds the tray menu when what it shows changed.
//
// Fyne starts the StatusNotifier item only once its event loop runs, and
// then publishes the menu it was first given, after any later
// SetSystemTrayMenu call. Handing it a new *fyne.Menu each time left the
// panel showing the first menu ("daemon not running", made before the
// first connection) until the next change. So there is one menu whose
// items are replaced: whatever Fyne publishes, and whenever, it is the
// current state.
func (t *Tray) updateMenu(s State) {
	m := trayMenu(s, t.menuActions())
	sig := menuSignature(m)
	if sig == t.menuSig {
		return
	}
	t.menuSig = sig
	if t.menu == nil {
		t.menu = m
	} else {
		t.menu.Label, t.menu.Items = m.Label, m.Items
	}
	if desk, ok := t.fa.(desktop.App); ok {
		desk.SetSystemTrayMenu(t.menu)
	}
}

func (t *Tray) menuActions() menuActions {
	return menuActions{
		show: t.showViewer, send: t.send, bringBack: t.bringBack,
		suspend: t.suspend, resume: t.resume, stop: t.stop,
		run: t.showRun, devices: t.showDevices, copyID: t.copyID, quit: t.quit,
	}
}

func (t *Tray) copyID() {
	if t.state.Self.ID.IsZero() {
		return
	}
	if cb := t.fa.Clipboard(); cb != nil {
		cb.SetContent(t.state.Self.ID.String())
	}
	t.notify("Device ID copied", "Give it to the other device's user: "+t.state.Self.ID.String())
}

func (t *Tray) quit() {
	t.quitting = true
	t.Close()
	t.fa.Quit()
}

// Daemon calls.

// call runs op against the daemon in the background; a failure is told as
// "Could not <what>".
func (t *Tray) call(what string, op func(ctx context.Context) error) {
	t.async(func() {
		ctx, cancel := context.WithTimeout(t.ctx, 10*time.Minute)
		defer cancel()
		if err := op(ctx); err != nil && !errors.Is(err, context.Canceled) {
			fyne.Do(func() { t.failed("Could not "+what, err) })
		}
	})
}

// failed tells of an error: in the Devices window when it is open, and as
// a notification.
func (t *Tray) failed(title string, err error) {
	msg := plainReason(err.Error(), "")
	t.notify(title, msg)
	if t.devices != nil && t.devices.visible {
		dialog.ShowInformation(title, wrapText(msg, 60), t.devices.win)
	}
}

func (t *Tray) suspend(name string) {
	t.call("suspend "+name, func(ctx context.Context) error { _, err := t.do.Suspend(ctx, name); return err })
}

func (t *Tray) resume(name string) {
	t.call("resume "+name, func(ctx context.Context) error { _, err := t.do.Resume(ctx, name); return err })
}

func (t *Tray) stop(name string) {
	t.call("stop "+name, func(ctx context.Context) error { return t.do.Stop(ctx, name) })
}

func (t *Tray) bringBack(name string) {
	peer := "the other device"
	if a, ok := t.state.App(name); ok && a.Peer != "" {
		peer = a.Peer
	}
	t.model.Returning(name, peer)
	t.call("bring "+name+" back", func(ctx context.Context) error {
		_, err := t.do.BringBack(ctx, name)
		if err != nil {
			t.model.Ended(name)
		}
		return err
	})
}

// send hands an app to a peer (a device ID, or a name); the result comes
// as a notification.
func (t *Tray) send(name, peer string) {
	display := peer
	if p, ok := t.state.Peer(peer); ok {
		display, peer = p.Name, p.ID.String()
		t.fa.Preferences().SetString(prefLastPeer, peer)
	}
	t.sending[name] = true
	t.async(func() {
		ctx, cancel := context.WithTimeout(t.ctx, 30*time.Minute)
		defer cancel()
		res, err := t.do.Send(ctx, name, peer)
		fyne.Do(func() {
			delete(t.sending, name)
			if t.devices != nil && strings.HasPrefix(t.devices.hint.Text, "Sending "+name+" ") {
				t.devices.hint.SetText(defaultHint)
			}
			if errors.Is(err, context.Canceled) {
				return
			}
			if err != nil {
				t.notifyFailed(name, display, err.Error())
				return
			}
			t.notify(name+" moved to "+display, fmt.Sprintf("%s runs on %s now; it was paused for %s.",
				name, display, res.Downtime.Round(10*time.Millisecond)))
		})
	})
}

// lastPeer is the device the last app was sent to.
func (t *Tray) lastPeer() string { return t.fa.Preferences().String(prefLastPeer) }

// Windows.

func (t *Tray) showDevices() {
	if t.devices == nil {
		t.devices = newDevicesWindow(t)
		t.devices.update(t.state)
	}
	t.devices.show()
}

func (t *Tray) showViewer(name string) {
	if v := t.viewers[name]; v != nil {
		v.win.Show()
		v.win.RequestFocus()
		return
	}
	v := newViewerWindow(t, name)
	t.viewers[name] = v
	t.opened = append(t.opened, name)
	t.updateSound()
	v.update(t.state)
	v.win.Show()
	v.connect()
}

func (t *Tray) viewerClosed(name string) {
	delete(t.viewers, name)
	t.opened = slices.DeleteFunc(t.opened, func(n string) bool { return n == name })
	if t.focused == name {
		t.focused = ""
	}
	t.updateSound()
}

func (t *Tray) showRun() {
	if t.runWin == nil {
		t.runWin = newRunWindow(t, installedApps(appDirs))
	}
	t.runWin.win.Show()
	t.runWin.win.RequestFocus()
}

// hotkeyPressed carries out the handoff shortcut. focusedApp is the app
// whose viewer has the keyboard, when the caller knows; else the tray's
// own record of it.
func (t *Tray) hotkeyPressed(focusedApp string) {
	if focusedApp == "" {
		focusedApp = t.focused
	}
	last := t.lastPeer()
	act := decideHotkey(t.state, focusedApp, last)
	t.log.Info("handoff shortcut", "app", act.App, "peer", act.Peer, "action", act.Kind)
	switch act.Kind {
	case hotkeySend:
		t.send(act.App, act.Peer)
	case hotkeyBringBack:
		t.bringBack(act.App)
	default:
		t.showChooser(act.App)
	}
}

func (t *Tray) showChooser(preselect string) {
	if t.chooser == nil {
		t.chooser = newChooser(t)
	}
	t.chooser.open(preselect, t.state)
}

// Main runs `handoff [--socket PATH] tray [flags]`.
func Main(args []string) int {
	fs := flag.NewFlagSet("handoff tray", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	socket := fs.String("socket", "", "the daemon's socket (default $HANDOFF_SOCKET or "+app.DefaultSocket+")")
	hotkey := fs.String("hotkey", "", "the handoff shortcut, e.g. Ctrl+Alt+H (saved for next time)")
	devices := fs.Bool("devices", false, "open the Devices window even when there is a tray")
	noHotkey := fs.Bool("no-hotkey", false, "do not grab the handoff shortcut")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: handoff [--socket PATH] tray [--hotkey KEYS] [--devices] [--no-hotkey]")
		fs.PrintDefaults()
	}
	global, rest := splitTrayArgs(args)
	if len(rest) > 0 && rest[0] == "tray" {
		rest = rest[1:]
	}
	if err := fs.Parse(append(global, rest...)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(os.Stderr, "handoff tray:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	fa := fyneapp.NewWithID(AppID)
	fa.SetIcon(iconApp)
	spec, err := hotkeyFromSettings(*hotkey, fa.Preferences())
	if err != nil {
		fmt.Fprintln(os.Stderr, "handoff tray:", err)
		return 2
	}
	client := app.NewClient(*socket)
	model := NewModel()
	t := NewTray(fa, model, Options{Client: client, Hotkey: spec, Log: log})
	feed := &Feed{Source: client, Model: model, Log: log}
	go feed.Run(t.ctx)

	hasTray := trayHostAvailable(log)
	t.Start(hasTray, *devices)
	if !*noHotkey {
		stop, err := grabHotkey(spec, func(focus []uint32) {
			fyne.Do(func() { t.hotkeyPressed(t.viewerForXWindow(focus)) })
		})
		if err != nil {
			log.Warn("the handoff shortcut works only inside viewer windows", "hotkey", spec.String(), "err", err)
		} else {
			log.Info("handoff shortcut ready", "hotkey", spec.String())
			defer stop()
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			fyne.Do(t.quit)
		case <-t.ctx.Done():
		}
	}()
	fa.Run()
	t.Close()
	return 0
}

// hotkeyFromSettings reads the shortcut: the flag's value (saved for next
// time) or the saved preference or the default.
func hotkeyFromSettings(flagValue string, prefs fyne.Preferences) (hotkeySpec, error) {
	if flagValue != "" {
		spec, err := parseHotkey(flagValue)
		if err == nil {
			prefs.SetString(prefHotkey, spec.String())
		}
		return spec, err
	}
	spec, err := parseHotkey(prefs.StringWithFallback(prefHotkey, DefaultHotkey))
	if err != nil {
		slog.Warn("the saved handoff shortcut is not valid; using the default", "err", err)
		return parseHotkey(DefaultHotkey)
	}
	return spec, nil
}

// IsTray reports whether a command line (without the program name) is
// `handoff [global flags] tray …`.
func IsTray(args []string) bool {
	_, rest := splitTrayArgs(args)
	return len(rest) > 0 && rest[0] == "tray"
}

// splitTrayArgs splits the global flags (--socket PATH, --socket=PATH) from
// the command word and what follows it.
func splitTrayArgs(args []string) (global, rest []string) {
	i := 0
	for i < len(args) {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "--" {
			break
		}
		global = append(global, a)
		name := strings.TrimLeft(a, "-")
		if (name == "socket") && i+1 < len(args) {
			global = append(global, args[i+1])
			i++
		}
		i++
	}
	return global, args[i:]
}

// wrapText breaks long messages for dialogs, which do not wrap by themselves.
func wrapText(s string, width int) string {
	var b strings.Builder
	col := 0
	for _, w := range strings.Fields(s) {
		if col > 0 && col+1+len(w) > width {
			b.WriteByte('\n')
			col = 0
		} else if col > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}
