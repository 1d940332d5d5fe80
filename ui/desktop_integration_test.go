//go:build integration

package ui

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// A desktop for the tray tests: Xvfb, a D-Bus session bus, packaged panels,
// and what a person does on it (clicks, screenshots).

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
