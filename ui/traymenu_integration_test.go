//go:build integration

package ui

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// `handoff tray` on a test desktop, and its menu read over D-Bus as a
// StatusNotifier host reads it (com.canonical.dbusmenu).

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
