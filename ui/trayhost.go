package ui

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/godbus/dbus/v5"
)

// The StatusNotifier watcher a tray host registers with; Fyne's tray is a
// StatusNotifierItem, shown only when such a host runs.
const (
	sniWatcher     = "org.kde.StatusNotifierWatcher"
	sniWatcherPath = "/StatusNotifierWatcher"
)

// trayHostAvailable reports whether the desktop shows tray icons: a session
// bus with a StatusNotifier watcher that has a host registered. It never
// starts a bus of its own.
func trayHostAvailable(log *slog.Logger) bool {
	addr := os.Getenv("DBUS_SESSION_BUS_ADDRESS")
	if addr == "" {
		if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "bus")); err == nil {
				addr = "unix:path=" + filepath.Join(dir, "bus")
			}
		}
	}
	if addr == "" || strings.HasPrefix(addr, "autolaunch:") {
		log.Info("no tray: no D-Bus session bus")
		return false
	}
	ok, why := sniHost(addr)
	if !ok {
		log.Info("no tray: "+why, "bus", addr)
	}
	return ok
}

func sniHost(addr string) (bool, string) {
	conn, err := dbus.Dial(addr)
	if err != nil {
		return false, "cannot connect to the session bus: " + err.Error()
	}
	defer conn.Close()
	if err := conn.Auth(nil); err != nil {
		return false, "session bus authentication failed: " + err.Error()
	}
	if err := conn.Hello(); err != nil {
		return false, "session bus hello failed: " + err.Error()
	}
	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, sniWatcher).Store(&has); err != nil {
		return false, "cannot ask the session bus: " + err.Error()
	}
	if !has {
		return false, "no StatusNotifier watcher on the session bus"
	}
	v, err := conn.Object(sniWatcher, sniWatcherPath).GetProperty(sniWatcher + ".IsStatusNotifierHostRegistered")
	if err != nil {
		return false, "the StatusNotifier watcher does not answer: " + err.Error()
	}
	if registered, _ := v.Value().(bool); !registered {
		return false, "no StatusNotifier host is registered"
	}
	return true, ""
}
