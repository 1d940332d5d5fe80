//go:build integration

package ui

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/internal/testutil"
)

func TestMain(m *testing.M) {
	// Daemons in other network namespaces run this binary as `handoff`.
	// The desktop tests run it as `handoff tray`.
	if os.Getenv("HANDOFF_TEST_MAIN") == "1" && (len(os.Args) < 2 || os.Args[1] != "init") {
		if IsTray(os.Args[1:]) {
			os.Exit(Main(os.Args[1:]))
		}
		os.Exit(app.Main(os.Args[1:]))
	}
	testutil.Main(m)
}

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startDaemon(t *testing.T, state, socket string) *app.Daemon {
	t.Helper()
	d, err := app.StartDaemon(context.Background(), app.DaemonConfig{StateDir: state, Socket: socket,
		PeerListen: "127.0.0.1:0", NoDiscovery: true, Name: "ws-test", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liveTray is a tray on the test driver fed by a real daemon's client.
func liveTray(t *testing.T, c *app.Client) (*Tray, *Model) {
	t.Helper()
	a := test.NewApp()
	t.Cleanup(a.Quit)
	m := NewModel()
	tr := NewTray(a, m, Options{Client: c, Log: quietLog()})
	t.Cleanup(tr.Close)
	go (&Feed{Source: c, Model: m, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Log: quietLog()}).Run(tr.ctx)
	tr.Start(false, true)
	return tr, m
}

func appState(m *Model, name string) engine.State {
	a, ok := m.State().App(name)
	if !ok || a.Remote {
		return ""
	}
	return a.State
}

// TestTrayWithDaemon drives a real daemon through the tray's windows: run
// an app from the Run window, see it stream in its viewer and type into
// it, suspend and resume it from the menu, lose and regain the daemon,
// stop the app.
func TestTrayWithDaemon(t *testing.T) {
	dir := testutil.StateDir(t)
	state, socket := filepath.Join(dir, "state"), filepath.Join(dir, "h.sock")
	d := startDaemon(t, state, socket)
	t.Cleanup(func() {
		if d != nil {
			d.Engine().Stop(context.Background(), "notes")
			d.Close()
		}
	})
	c := app.NewClient(socket)
	tr, m := liveTray(t, c)
	eventually(t, 10*time.Second, "the tray to connect", func() bool { return m.State().Connected })
	// The tray runs as root here, as under sudo: its apps are the user's.
	t.Setenv("SUDO_USER", testutil.AppUser(t))

	// Run window: a command and a name.
	tr.showRun()
	r := tr.runWin
	r.command.SetText("xterm -geometry 60x10+0+0")
	if r.name.Text != "xterm" {
		t.Errorf("suggested name %q", r.name.Text)
	}
	r.name.SetText("notes")
	test.Tap(r.run)
	eventually(t, 60*time.Second, "notes to run", func() bool { return appState(m, "notes") == engine.StateRunning })
	eventually(t, 10*time.Second, "the Devices window's tile", func() bool { return tr.devices.tiles["notes"] != nil })

	// Its viewer opens once Run's answer is in (the daemon's event about the
	// running app may come first) and streams.
	eventually(t, 10*time.Second, "the viewer after Run", func() bool { return tr.viewers["notes"] != nil })
	v := tr.viewers["notes"]
	eventually(t, 60*time.Second, "a frame in the viewer", func() bool { return v.screen.frameSize() != image0 })
	if got := v.screen.frameSize(); got.X != 1280 || got.Y != 800 {
		t.Errorf("frame %v, want the display's 1280x800", got)
	}
	if v.win.Title() != "notes — on ws-test" {
		t.Errorf("viewer title %q", v.win.Title())
	}
	var before bytes.Buffer
	if err := c.Screenshot(context.Background(), "notes", &before); err != nil {
		t.Fatal(err)
	}
	// Point at the xterm, then type: the app's screen changes.
	eventually(t, 30*time.Second, "typing to reach the app", func() bool {
		fyne.DoAndWait(func() {
			v.screen.MouseMoved(mouseAt(v.screen, 40, 40))
			for _, r := range "echo typed-in-the-viewer" {
				v.screen.TypedRune(r)
			}
		})
		time.Sleep(700 * time.Millisecond)
		var after bytes.Buffer
		c.Screenshot(context.Background(), "notes", &after)
		return !bytes.Equal(before.Bytes(), after.Bytes())
	})

	// The menu's Suspend and Resume.
	menuAction(t, tr, "notes", "Suspend")
	eventually(t, 90*time.Second, "notes suspended", func() bool { return appState(m, "notes") == engine.StateSuspended })
	if s := tr.devices.tiles["notes"].status.Text; s != "suspended" {
		t.Errorf("tile says %q", s)
	}
	menuAction(t, tr, "notes", "Resume")
	eventually(t, 90*time.Second, "notes running again", func() bool { return appState(m, "notes") == engine.StateRunning })

	// The daemon goes away: the window says so; it comes back: reconnected,
	// the app re-adopted.
	d.Close()
	d = nil
	eventually(t, 10*time.Second, "the daemon's absence to show", func() bool {
		return !m.State().Connected && tr.devices.banner.Visible()
	})
	d = startDaemon(t, state, socket)
	eventually(t, 20*time.Second, "reconnection", func() bool {
		return m.State().Connected && appState(m, "notes") == engine.StateRunning && !tr.devices.banner.Visible()
	})

	menuAction(t, tr, "notes", "Stop")
	eventually(t, 30*time.Second, "notes gone", func() bool { _, ok := m.State().App("notes"); return !ok })
	eventually(t, 5*time.Second, "its tile gone", func() bool { return tr.devices.tiles["notes"] == nil })
}

var image0 = image.Point{}

// mouseAt is a pointer event over the frame's pixel x, y.
func mouseAt(s *screen, x, y int) *desktop.MouseEvent {
	f := fitFrame(s.Size(), s.frameSize())
	pos := fyne.NewPos(f.offX+(float32(x)+0.5)*f.scale, f.offY+(float32(y)+0.5)*f.scale)
	return &desktop.MouseEvent{PointEvent: fyne.PointEvent{Position: pos}}
}

func menuAction(t *testing.T, tr *Tray, appName, label string) {
	t.Helper()
	var done bool
	fyne.DoAndWait(func() {
		menu := trayMenu(tr.state, tr.menuActions())
		for _, it := range menu.Items {
			if !strings.HasPrefix(it.Label, appName+" — ") {
				continue
			}
			for _, action := range appGroup(menu.Items, it.Label) {
				if strings.TrimSpace(action.Label) == label && !action.Disabled {
					action.Action()
					done = true
				}
			}
		}
	})
	if !done {
		t.Fatalf("no enabled %q for %s in the menu", label, appName)
	}
}

// workstation is a daemon in a network namespace of its own.
type workstation struct {
	host   *testnet.Host
	name   string
	dir    string // its state, socket and log
	client *app.Client
	pid    int
	done   chan struct{} // closed when the daemon exited; nil when stopped
}

// startWorkstation starts a daemon named name on a workstation; it is
// stopped, with its apps, when the test ends.
func startWorkstation(t *testing.T, h *testnet.Host, name string) *workstation {
	t.Helper()
	dir := testutil.StateDir(t)
	w := &workstation{host: h, name: name, dir: dir, client: app.NewClient(filepath.Join(dir, "h.sock"))}
	t.Cleanup(func() {
		ctx := context.Background()
		if w.done == nil { // stopped by the test, which then failed: its apps still run
			if err := w.launch(); err != nil {
				t.Logf("restart %s to stop its apps: %v", name, err)
			}
		}
		if apps, err := w.client.Apps(ctx); err == nil {
			for _, a := range apps {
				w.client.Stop(ctx, a.Name)
			}
		}
		w.stop()
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Logf("%s daemon log:\n%s", name, data)
		}
	})
	w.start(t)
	return w
}

// start starts the daemon (again) and waits until it answers.
func (w *workstation) start(t *testing.T) {
	t.Helper()
	if err := w.launch(); err != nil {
		t.Fatal(err)
	}
}

func (w *workstation) launch() error {
	cmd := w.host.Command(context.Background(), os.Args[0], "--socket", w.client.Socket, "daemon",
		"--state-dir", filepath.Join(w.dir, "state"), "--listen", ":7466", "--name", w.name, "--web", "")
	cmd.Env = append(os.Environ(), "HANDOFF_TEST_MAIN=1")
	logf, err := os.OpenFile(filepath.Join(w.dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := w.host.Start(cmd); err != nil {
		return fmt.Errorf("start %s's daemon: %w", w.name, err)
	}
	w.pid = cmd.Process.Pid
	done := make(chan struct{})
	w.done = done
	go func() { cmd.Wait(); close(done) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := w.client.Status(context.Background()); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s's daemon exited (see its log)", w.name)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s's daemon does not answer after 20s", w.name)
		}
	}
}

// stop ends the daemon (its apps keep running) and waits until it exited.
func (w *workstation) stop() {
	if w.done == nil {
		return
	}
	syscall.Kill(w.pid, syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(w.pid, syscall.SIGKILL)
		<-w.done
	}
	w.done = nil
}

// TestDragToWorkstation is the handoff as a user does it: two workstations
// (network namespaces on a bridge, a daemon each, paired), the tray of
// ws-a; dragging the app's tile onto ws-b's icon hands it over, progress
// shows on the tile, and the app then runs on ws-b; Bring back returns it.
func TestDragToWorkstation(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	ctx := context.Background()
	idA, err := a.client.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idB, _ := b.client.ID(ctx)
	if _, err := a.client.Trust(ctx, idB.ID.String(), app.TrustRequest{Name: "ws-b", AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Trust(ctx, idA.ID.String(), app.TrustRequest{Name: "ws-a", AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Run(ctx, app.RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}

	tr, m := liveTray(t, a.client)
	tr.devices.win.Resize(fyne.NewSize(720, 540))
	phases := map[string]bool{}
	m.Listen(func(s State, _ []Notice) {
		if h, ok := s.Handoffs["notes"]; ok {
			phases[h.Phase] = true
		}
	})
	key := idB.ID.String()
	eventually(t, 20*time.Second, "ws-b online and paired in the tray", func() bool {
		p, ok := m.State().Peer(key)
		return ok && canReceive(p) && appState(m, "notes") == engine.StateRunning
	})
	time.Sleep(2 * time.Second) // let the app settle before it is frozen

	var from, to fyne.Position
	fyne.DoAndWait(func() {
		from, to = center(tr.devices.tiles["notes"]), center(tr.devices.peers[key])
		test.Drag(tr.devices.win.Canvas(), from, to.X-from.X, to.Y-from.Y)
	})
	eventually(t, 3*time.Minute, "notes to run on ws-b", func() bool {
		info, err := b.client.App(ctx, "notes")
		return err == nil && info.State == engine.StateRunning
	})
	eventually(t, 20*time.Second, "the tray to show notes on ws-b", func() bool {
		a, ok := m.State().App("notes")
		return ok && a.Remote && !a.Pending && a.Peer == "ws-b" && len(m.State().Handoffs) == 0
	})
	if !phases["pre-copy"] || !phases["restore"] {
		t.Errorf("phases seen on the way: %v", phases)
	}
	if last := tr.lastPeer(); last != key {
		t.Errorf("last peer %q, want ws-b's ID", last)
	}
	fyne.DoAndWait(func() {
		if tile := tr.devices.tiles["notes"]; tile == nil || tile.status.Text != "on ws-b" {
			t.Errorf("tile after the handoff: %+v", tile)
		}
	})

	menuAction(t, tr, "notes", "Bring back")
	eventually(t, 3*time.Minute, "notes back on ws-a", func() bool { return appState(m, "notes") == engine.StateRunning })
	eventually(t, 20*time.Second, "ws-b to release notes", func() bool {
		_, err := b.client.App(ctx, "notes")
		return app.IsNotFound(err)
	})
	eventually(t, 10*time.Second, "the tray to show notes here", func() bool {
		a, ok := m.State().App("notes")
		return ok && !a.Remote
	})
}
