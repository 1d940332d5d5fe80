//go:build integration

package ui

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

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
	if _, err := a.client.Run(ctx, app.RunRequest{Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
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
	dir := t.TempDir()
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

// xdesktop is an X display with a D-Bus session bus, as a login gives.
type xdesktop struct {
	out        string
	display    string
	bus        string
	env        []string
	conn       *dbus.Conn
	menuButton string // opens the tray's menu: "1" or "3"
}

// startDesktop starts Xvfb and a session bus. When the test ends, every
// process connected to that bus is stopped by PID, then the bus and Xvfb.
func startDesktop(t *testing.T, out string) *xdesktop {
	t.Helper()
	home := t.TempDir()
	runtime := filepath.Join(home, "runtime")
	if err := os.Mkdir(runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &xdesktop{out: out, menuButton: "1"}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1024x600x24", "-nolisten", "tcp")
	x.ExtraFiles = []*os.File{w}
	x.Stderr, _ = os.Create(filepath.Join(out, "xvfb.log"))
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	stopLater(t, x)
	num, err := readLine(r, 20*time.Second)
	r.Close()
	if err != nil {
		t.Fatalf("Xvfb did not report its display: %v", err)
	}
	d.display = ":" + num

	// What a session has: the display, private config, cache, data and
	// runtime folders (the panels and Fyne keep their settings there), and
	// no accessibility bus.
	d.env = append(os.Environ(), "DISPLAY="+d.display,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_RUNTIME_DIR="+runtime,
		"NO_AT_BRIDGE=1", "GTK_A11Y=none", "QT_ACCESSIBILITY=0")
	d.env = withoutEnv(d.env, "DBUS_SESSION_BUS_ADDRESS", "SESSION_MANAGER")

	bus := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1")
	bus.Env = d.env // the services it starts (xfconfd) inherit it
	stdout, err := bus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	bus.Stderr, _ = os.Create(filepath.Join(out, "dbus.log"))
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	stopLater(t, bus)
	if d.bus, err = readLine(stdout, 20*time.Second); err != nil {
		t.Fatalf("dbus-daemon did not report its address: %v", err)
	}
	d.env = append(d.env, "DBUS_SESSION_BUS_ADDRESS="+d.bus)
	if d.conn, err = dbus.Connect(d.bus); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stopBusClients(t)
		d.conn.Close()
	})
	t.Logf("desktop on display %s, session bus %s", d.display, d.bus)
	return d
}

// stopLater stops a process this test started, by its PID, when the test
// ends.
func stopLater(t *testing.T, cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// stopBusClients stops the processes connected to the desktop's bus that
// the bus started or that were started by others than this test (xfconfd,
// the panel's plugin processes), by the PIDs the bus reports.
func (d *xdesktop) stopBusClients(t *testing.T) {
	var names []string
	if err := d.conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		t.Logf("listing the bus's clients: %v", err)
		return
	}
	pids := map[int]bool{}
	for _, n := range names {
		if !strings.HasPrefix(n, ":") {
			continue
		}
		var pid uint32
		if err := d.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, n).Store(&pid); err == nil && int(pid) != os.Getpid() {
			pids[int(pid)] = true
		}
	}
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// alive: the process exists and is not a zombie waiting for its parent.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func readLine(r interface{ Read([]byte) (int, error) }, within time.Duration) (string, error) {
	got := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil && line == "" {
			errc <- err
			return
		}
		got <- strings.TrimSpace(line)
	}()
	select {
	case l := <-got:
		return l, nil
	case err := <-errc:
		return "", err
	case <-time.After(within):
		return "", fmt.Errorf("nothing after %v", within)
	}
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, n := range names {
			keep = keep && !strings.HasPrefix(kv, n+"=")
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// xfcePanelConfig is one panel along the top of the screen with the status
// tray as its only plugin, as xfconfd reads it from XDG_CONFIG_HOME (so the
// panel does not ask how to set itself up).
const xfcePanelConfig = `<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="%d"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
`

// startXfcePanel starts xfce4-panel with its status tray and waits until
// it is registered as the session's StatusNotifier host.
func (d *xdesktop) startXfcePanel(t *testing.T) {
	t.Helper()
	conf := filepath.Join(d.getenv("XDG_CONFIG_HOME"), "xfce4", "xfconf", "xfce-perchannel-xml")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "xfce4-panel.xml"), fmt.Appendf(nil, xfcePanelConfig, panelSize), 0o644); err != nil {
		t.Fatal(err)
	}
	d.startPanel(t, "xfce4-panel", "--disable-wm-check")
}

// startPanel starts a panel and waits until its status tray is registered
// as the session's StatusNotifier host.
func (d *xdesktop) startPanel(t *testing.T, name string, args ...string) {
	t.Helper()
	panel := exec.Command(name, args...)
	panel.Env = d.env
	logf, _ := os.Create(filepath.Join(d.out, name+".log"))
	panel.Stdout, panel.Stderr = logf, logf
	if err := panel.Start(); err != nil {
		t.Fatal(err)
	}
	stopLater(t, panel)
	eventually(t, 30*time.Second, name+"'s status tray as the StatusNotifier host", func() bool {
		v, err := d.conn.Object(sniWatcher, sniWatcherPath).GetProperty(sniWatcher + ".IsStatusNotifierHostRegistered")
		registered, _ := v.Value().(bool)
		return err == nil && registered
	})
}

// lxqtPanelConfig is one panel along the top of the screen with the status
// notifier as its only plugin.
const lxqtPanelConfig = `panels=panel1

[panel1]
plugins=statusnotifier
position=Top
desktop=0
panelSize=%d
iconSize=22

[statusnotifier]
type=statusnotifier
alignment=Left
`

// startLXQtPanel starts lxqt-panel with its status notifier and waits until
// it is registered as the session's StatusNotifier host.
func (d *xdesktop) startLXQtPanel(t *testing.T) {
	t.Helper()
	conf := filepath.Join(d.getenv("XDG_CONFIG_HOME"), "lxqt")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "panel.conf"), fmt.Appendf(nil, lxqtPanelConfig, panelSize), 0o644); err != nil {
		t.Fatal(err)
	}
	d.startPanel(t, "lxqt-panel")
}

func (d *xdesktop) getenv(name string) string {
	for i := len(d.env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(d.env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

func (d *xdesktop) run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// viewableWindow returns the ID of a viewable window with that title.
func (d *xdesktop) viewableWindow(title string) string {
	out, err := d.run("xdotool", "search", "--onlyvisible", "--name", "^"+regexp.QuoteMeta(title)+"$")
	if err != nil {
		return ""
	}
	for _, id := range strings.Fields(out) {
		info, err := d.run("xwininfo", "-id", id)
		if err == nil && strings.Contains(info, "Map State: IsViewable") {
			return id
		}
	}
	return ""
}

func (d *xdesktop) screenshot(t *testing.T, name string) {
	t.Helper()
	path := filepath.Join(d.out, name)
	if out, err := d.run("import", "-window", "root", path); err != nil {
		t.Errorf("screenshot %s: %v\n%s", name, err, out)
		return
	}
	t.Logf("screenshot: %s", path)
}

// screenshotMenu opens the tray's menu as a person does (a click on the
// icon), presses keys in it (to open a submenu), takes a screenshot of the
// panel with the open menu, and closes it.
func (d *xdesktop) screenshotMenu(t *testing.T, name string, keys ...string) {
	t.Helper()
	before := d.popups()
	for try := 0; try < 3; try++ {
		d.run("xdotool", "mousemove", strconv.Itoa(panelSize/2), strconv.Itoa(panelSize/2), "click", d.menuButton)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if d.popupOpened(before) {
				for _, k := range keys {
					time.Sleep(150 * time.Millisecond)
					d.run("xdotool", "key", k)
				}
				time.Sleep(1500 * time.Millisecond) // its first frame
				d.screenshot(t, name)
				d.run("xdotool", "key", "Escape", "Escape", "Escape")
				eventually(t, 5*time.Second, "the menu to close", func() bool { return !d.popupOpened(before) })
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	d.screenshot(t, name)
	t.Errorf("the panel did not open the tray's menu on a click (see %s)", name)
}

// popups lists the viewable top-level windows below the panel.
func (d *xdesktop) popups() map[string]bool {
	out, _ := d.run("xwininfo", "-root", "-children")
	set := map[string]bool{}
	re := regexp.MustCompile(`(?m)^\s+(0x[0-9a-f]+) .*\s(\d+)x(\d+)\+(-?\d+)\+(-?\d+)\s`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		w, _ := strconv.Atoi(m[2])
		h, _ := strconv.Atoi(m[3])
		y, _ := strconv.Atoi(m[5])
		if w < 60 || h < 60 || y < panelSize-2 {
			continue
		}
		if info, err := d.run("xwininfo", "-id", m[1]); err == nil && strings.Contains(info, "Map State: IsViewable") {
			set[m[1]+" "+m[2]+"x"+m[3]] = true
		}
	}
	return set
}

func (d *xdesktop) popupOpened(before map[string]bool) bool {
	for w := range d.popups() {
		if !before[w] {
			return true
		}
	}
	return false
}

func (d *xdesktop) busNames(t *testing.T) []string {
	var names []string
	if err := d.conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		t.Fatal(err)
	}
	return names
}

// trayProc is `handoff tray` running on the desktop.
type trayProc struct {
	d   *xdesktop
	pid int
	log string
	// item is the tray's StatusNotifier item as the host knows it.
	service string
	menu    dbus.ObjectPath
}

// startTray starts `handoff tray` (this test binary in its place) for the
// daemon at socket; it is stopped when the test ends.
func (d *xdesktop) startTray(t *testing.T, socket string) *trayProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--socket", socket, "tray", "--no-hotkey", "--log-level", "debug")
	cmd.Env = append(d.env, "HANDOFF_TEST_MAIN=1", "LANGUAGE=en")
	tr := &trayProc{d: d, log: filepath.Join(d.out, "tray.log")}
	logf, err := os.Create(tr.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr.pid = cmd.Process.Pid
	stopLater(t, cmd)
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(tr.log)
			t.Logf("tray log:\n%s", data)
		}
	})
	return tr
}

// itemName returns the bus name of this tray's StatusNotifier item among
// names, or "".
func (tr *trayProc) itemName(names []string) string {
	want := fmt.Sprintf("org.kde.StatusNotifierItem-%d-", tr.pid)
	for _, n := range names {
		if strings.HasPrefix(n, want) {
			return n
		}
	}
	return ""
}

// findItem finds the tray's item among those the host's watcher lists, as
// the panel does, and the path of its menu.
func (tr *trayProc) findItem() error {
	if tr.service != "" {
		return nil
	}
	conn := tr.d.conn
	v, err := conn.Object(sniWatcher, sniWatcherPath).GetProperty(sniWatcher + ".RegisteredStatusNotifierItems")
	if err != nil {
		return err
	}
	items, _ := v.Value().([]string)
	for _, it := range items {
		service, path, ok := strings.Cut(it, "/")
		if !ok {
			path = "StatusNotifierItem"
		}
		var pid uint32
		if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, service).Store(&pid); err != nil || int(pid) != tr.pid {
			continue
		}
		m, err := conn.Object(service, dbus.ObjectPath("/"+path)).GetProperty("org.kde.StatusNotifierItem.Menu")
		if err != nil {
			return err
		}
		tr.service, tr.menu = service, m.Value().(dbus.ObjectPath)
		return nil
	}
	return fmt.Errorf("the host lists no item of the tray (pid %d) among %q", tr.pid, items)
}

// layout reads the menu with com.canonical.dbusmenu.GetLayout, as the host
// does when it shows it.
func (tr *trayProc) layout() (menuTree, uint32, error) {
	if err := tr.findItem(); err != nil {
		return nil, 0, err
	}
	var rev uint32
	var root dbusmenuNode
	call := tr.d.conn.Object(tr.service, tr.menu).Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{})
	if err := call.Store(&rev, &root); err != nil {
		return nil, 0, err
	}
	tree, err := root.items()
	return tree, rev, err
}

// waitMenu polls the menu until ok says it is as expected.
func (tr *trayProc) waitMenu(t *testing.T, within time.Duration, what string, ok func(menuTree) bool) menuTree {
	t.Helper()
	deadline := time.Now().Add(within)
	var last menuTree
	var lastErr error
	for {
		m, _, err := tr.layout()
		if err == nil {
			last = m
			if ok(m) {
				return m
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; menu:\n%s(error: %v)", within, what, last, lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// follow waits for the menu to show a change made at since, and logs how
// long it took.
func (tr *trayProc) follow(t *testing.T, what string, since time.Time, ok func(menuTree) bool) {
	t.Helper()
	tr.waitMenu(t, followWithin, "the menu to follow "+what, ok)
	t.Logf("menu followed %s in %v", what, time.Since(since).Round(time.Millisecond))
}

// click clicks an item of an app's group, as the host does.
func (tr *trayProc) click(t *testing.T, parent, label string) {
	t.Helper()
	var id int32
	tr.waitMenu(t, followWithin, fmt.Sprintf("%q ▸ %q enabled", parent, label), func(m menuTree) bool {
		it := m.group(parent).child(label)
		id = it.id()
		return it.enabled()
	})
	err := tr.d.conn.Object(tr.service, tr.menu).Call("com.canonical.dbusmenu.Event", 0,
		id, "clicked", dbus.MakeVariant(int32(0)), uint32(time.Now().Unix())).Err
	if err != nil {
		t.Fatalf("click %q ▸ %q: %v", parent, label, err)
	}
}

// watch checks every menu the panel could read until stop, from now on:
// none may say the daemon is not running.
func (tr *trayProc) watch(t *testing.T) *menuWatch {
	w := &menuWatch{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if m, _, err := tr.layout(); err == nil && (m.find("Handoff daemon not running") != nil || m.find("Start it: ") != nil) {
				t.Errorf("the menu says the daemon is not running while it runs:\n%s", m)
				return
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

type menuWatch struct {
	quit, done chan struct{}
	once       sync.Once
}

func (w *menuWatch) stop() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

// record collects, until it is called, the labels of the top-level items
// that start with prefix.
func (tr *trayProc) record(t *testing.T, prefix string) func() []string {
	var mu sync.Mutex
	var labels []string
	seen := map[string]bool{}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			m, _, err := tr.layout()
			if err != nil {
				continue
			}
			mu.Lock()
			for _, it := range m {
				if strings.HasPrefix(it.Label, prefix) && !seen[it.Label] {
					seen[it.Label] = true
					labels = append(labels, it.Label)
				}
			}
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop := func() []string {
		once.Do(func() { close(quit); <-done })
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), labels...)
	}
	t.Cleanup(func() { stop() })
	return stop
}

// dbusmenuNode is one entry of a com.canonical.dbusmenu layout: (ia{sv}av).
type dbusmenuNode struct {
	ID       int32
	Props    map[string]dbus.Variant
	Children []dbus.Variant
}

// menuItem is an item of the menu as the host shows it.
type menuItem struct {
	ID        int32
	Label     string
	Enabled   bool
	Separator bool
	Children  menuTree
}

// menuTree is a menu's visible items.
type menuTree []*menuItem

func (n dbusmenuNode) items() (menuTree, error) {
	var out menuTree
	for _, c := range n.Children {
		var child dbusmenuNode
		if err := dbus.Store([]any{c.Value()}, &child); err != nil {
			return nil, fmt.Errorf("menu item %v: %w", c, err)
		}
		if v, ok := child.Props["visible"]; ok {
			if visible, _ := v.Value().(bool); !visible {
				continue
			}
		}
		it := &menuItem{ID: child.ID, Enabled: true}
		if v, ok := child.Props["label"]; ok {
			it.Label, _ = v.Value().(string)
		}
		if v, ok := child.Props["enabled"]; ok {
			it.Enabled, _ = v.Value().(bool)
		}
		if v, ok := child.Props["type"]; ok {
			kind, _ := v.Value().(string)
			it.Separator = kind == "separator"
		}
		var err error
		if it.Children, err = child.items(); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// find returns the first item, at any depth, whose label starts with
// prefix, or nil.
func (m menuTree) find(prefix string) *menuItem {
	for _, it := range m {
		if !it.Separator && strings.HasPrefix(it.Label, prefix) {
			return it
		}
		if found := it.Children.find(prefix); found != nil {
			return found
		}
	}
	return nil
}

// group returns an app's group: the first top-level item whose label
// starts with prefix (its name and status), with the items that follow it
// up to the next separator as its children; or nil.
func (m menuTree) group(prefix string) *menuItem {
	for i, it := range m {
		if it.Separator || !strings.HasPrefix(it.Label, prefix) {
			continue
		}
		g := &menuItem{ID: it.ID, Label: it.Label, Enabled: it.Enabled}
		for _, c := range m[i+1:] {
			if c.Separator {
				break
			}
			g.Children = append(g.Children, c)
		}
		return g
	}
	return nil
}

// child returns the item's entry with that label (ignoring the indentation
// of an app's actions), or nil.
func (it *menuItem) child(label string) *menuItem {
	if it == nil {
		return nil
	}
	for _, c := range it.Children {
		if strings.TrimSpace(c.Label) == label {
			return c
		}
	}
	return nil
}

func (it *menuItem) enabled() bool { return it != nil && it.Enabled }

func (it *menuItem) id() int32 {
	if it == nil {
		return 0
	}
	return it.ID
}

func (m menuTree) String() string {
	var b strings.Builder
	var walk func(m menuTree, depth int)
	walk = func(m menuTree, depth int) {
		for _, it := range m {
			label := it.Label
			if it.Separator {
				label = "────"
			}
			state := ""
			if !it.Enabled {
				state = " (disabled)"
			}
			fmt.Fprintf(&b, "%s%s%s\n", strings.Repeat("    ", depth), label, state)
			walk(it.Children, depth+1)
		}
	}
	walk(m, 0)
	return b.String()
}
