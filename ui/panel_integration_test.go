//go:build integration

package ui

import (
	"context"
	"github.com/handoff/handoff/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/internal/testnet"
)

// The desktop tests run `handoff tray` as a person's desktop would: on an
// X display (Xvfb) with a D-Bus session bus, beside a real StatusNotifier
// host (xfce4-panel's status tray, LXQt's panel) or without any. They read the menu the
// way the panel does, over D-Bus (com.canonical.dbusmenu), and leave
// screenshots in testOut for people to look at.

// panelSize is the height of the test panels; the status tray is their only
// plugin, at their left end, so the first tray icon sits at (panelSize/2,
// panelSize/2).
const panelSize = 32

// followWithin is how long the menu may take to follow a change before the
// test fails. It is generous for a loaded machine; the times measured are
// logged ("menu followed …").
const followWithin = 15 * time.Second

// statusHost is a packaged StatusNotifier host: a panel with a status tray.
type statusHost struct {
	name  string
	start func(d *xdesktop, t *testing.T)
	// dropped is what the host logs when it could not show part of a menu.
	dropped string
	// menuButton is the mouse button that opens an item's menu: LXQt's
	// left click asks the item to activate, which Fyne's item ignores.
	menuButton string
}

var statusHosts = []statusHost{
	{name: "xfce4-panel", start: (*xdesktop).startXfcePanel, menuButton: "1",
		dropped: "Children but no menu"}, // libdbusmenu-gtk3: a submenu it showed empty
	{name: "lxqt-panel", start: (*xdesktop).startLXQtPanel, menuButton: "3"},
}

// TestTrayOnDesktop: on each panel, the tray's menu is right from the first
// connection, follows an app through its life and a handoff, and says when
// the daemon is gone and when it is back. Without a StatusNotifier host
// the Devices window opens instead.
func TestTrayOnDesktop(t *testing.T) {
	bins := []string{"Xvfb", "dbus-daemon", "xdotool", "xwininfo", "import"}
	for _, h := range statusHosts {
		bins = append(bins, h.name)
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing: run make deps", bin)
		}
	}
	for _, h := range statusHosts {
		t.Run(h.name, func(t *testing.T) { testTrayOnPanel(t, h) })
	}
	t.Run("no StatusNotifier host", testTrayWithoutHost)
}

func testTrayOnPanel(t *testing.T, host statusHost) {
	out := testOut(t)
	desk := startDesktop(t, out)
	host.start(desk, t)
	desk.menuButton = host.menuButton

	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	ctx := context.Background()
	idA, err := a.client.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idB, err := b.client.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Trust(ctx, idB.ID.String(), app.TrustRequest{Name: "ws-b", AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Trust(ctx, idA.ID.String(), app.TrustRequest{Name: "ws-a", AutoAccept: true}); err != nil {
		t.Fatal(err)
	}

	started := time.Now()
	tray := desk.startTray(t, a.client.Socket)
	// From the first menu the panel can read on, and for as long as the
	// daemon runs, the menu never says it is not running.
	watch := tray.watch(t)
	first := tray.waitMenu(t, followWithin, "the tray's first menu", func(m menuTree) bool { return len(m) > 0 })
	t.Logf("first menu the panel read, %v after the tray started:\n%s", time.Since(started).Round(time.Millisecond), first)
	tray.follow(t, "the tray's start", started, func(m menuTree) bool {
		return m.find("This device: ws-a") != nil && m.find("No apps yet") != nil
	})
	desk.screenshotMenu(t, "1-connected.png")

	// An app starts, is suspended and resumed (from the menu, as the panel
	// clicks), handed to ws-b, brought back (from the menu) and stopped.
	if _, err := a.client.Run(ctx, app.RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	tray.follow(t, "the app's start", time.Now(), func(m menuTree) bool {
		return m.group("notes — running here").child("Suspend").enabled() && m.find("No apps yet") == nil
	})
	time.Sleep(2 * time.Second) // let xterm settle before it is checkpointed
	if _, err := a.client.Suspend(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	tray.follow(t, "the suspension", time.Now(), func(m menuTree) bool {
		return m.group("notes — suspended").child("Resume").enabled()
	})
	tray.click(t, "notes — suspended", "Resume")
	eventually(t, 90*time.Second, "notes resumed on ws-a", func() bool {
		info, err := a.client.App(ctx, "notes")
		return err == nil && info.State == engine.StateRunning
	})
	tray.follow(t, "the resumption", time.Now(), func(m menuTree) bool { return m.find("notes — running here") != nil })

	tray.waitMenu(t, time.Minute, "ws-b as a target in notes' menu", func(m menuTree) bool {
		return m.group("notes — running here").child("Send to ws-b").enabled()
	})
	time.Sleep(2 * time.Second) // as a person would: not in the instant the app came back
	labels := tray.record(t, "notes — ")
	if _, err := a.client.Send(ctx, "notes", idB.ID.String()); err != nil {
		t.Fatal(err)
	}
	tray.follow(t, "the handoff", time.Now(), func(m menuTree) bool {
		return m.group("notes — on ws-b").child("Bring back").enabled()
	})
	seen := labels()
	moving := false
	for _, l := range seen {
		moving = moving || strings.HasPrefix(l, "notes — moving to ws-b — ")
	}
	if !moving {
		t.Errorf("the handoff's progress never showed in the menu; labels seen: %q", seen)
	}
	desk.screenshotMenu(t, "2-handed-off.png")

	tray.click(t, "notes — on ws-b", "Bring back")
	eventually(t, 3*time.Minute, "notes back on ws-a", func() bool {
		info, err := a.client.App(ctx, "notes")
		return err == nil && info.State == engine.StateRunning
	})
	tray.follow(t, "the return", time.Now(), func(m menuTree) bool {
		return m.group("notes — running here").child("Stop").enabled()
	})
	desk.screenshotMenu(t, "3-app-running.png")

	// The daemon stops: the menu says so. It starts again: the menu shows
	// the device and the app it re-adopted.
	watch.stop()
	a.stop()
	tray.follow(t, "the daemon's stop", time.Now(), func(m menuTree) bool {
		it := m.group("notes — running here") // it does: only the daemon is gone
		return m.find("Handoff daemon not running") != nil && !m.find("Run app…").enabled() &&
			it.child("Stop") != nil && !it.child("Stop").enabled() && !it.child("Show").enabled()
	})
	desk.screenshotMenu(t, "4-daemon-stopped.png")
	a.start(t)
	tray.follow(t, "the daemon's return", time.Now(), func(m menuTree) bool {
		return m.find("Handoff daemon not running") == nil && m.find("This device: ws-a") != nil &&
			m.find("notes — running here") != nil
	})
	watch = tray.watch(t)

	if err := a.client.Stop(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	tray.follow(t, "the app's stop", time.Now(), func(m menuTree) bool {
		return m.find("notes — ") == nil && m.find("No apps yet") != nil
	})
	desk.screenshotMenu(t, "5-app-stopped.png")
	watch.stop()

	if host.dropped != "" {
		log, _ := os.ReadFile(filepath.Join(out, host.name+".log"))
		if n := strings.Count(string(log), host.dropped); n > 0 {
			t.Errorf("%s could not show parts of the menu %d times (%q in its log)", host.name, n, host.dropped)
		}
	}
}

func testTrayWithoutHost(t *testing.T) {
	out := testOut(t)
	desk := startDesktop(t, out)
	dir := testutil.StateDir(t)
	state, socket := filepath.Join(dir, "state"), filepath.Join(dir, "h.sock")
	d := startDaemon(t, state, socket)
	t.Cleanup(func() { d.Close() })

	tray := desk.startTray(t, socket)
	var win string
	eventually(t, 30*time.Second, "the Devices window on the screen", func() bool {
		win = desk.viewableWindow("Handoff — Devices")
		return win != ""
	})
	geom, _ := desk.run("xwininfo", "-id", win)
	t.Logf("Devices window %s:\n%s", win, geom)
	time.Sleep(time.Second) // the window's first frames
	desk.screenshot(t, "devices-window.png")
	if names := desk.busNames(t); tray.itemName(names) != "" {
		t.Errorf("the tray registered a StatusNotifier item without a host: %q", names)
	}
	logData, _ := os.ReadFile(tray.log)
	if !strings.Contains(string(logData), "no tray") {
		t.Errorf("the tray's log does not say why it shows no tray:\n%s", logData)
	}
}

// testOut is where a test leaves what people should look at: under
// $HANDOFF_TEST_OUT or ui/testdata/out (ignored by git), one folder per test.
func testOut(t *testing.T) string {
	t.Helper()
	base := os.Getenv("HANDOFF_TEST_OUT")
	if base == "" {
		base = filepath.Join("testdata", "out")
	}
	dir, err := filepath.Abs(filepath.Join(base, strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots and logs in %s", dir)
	return dir
}
