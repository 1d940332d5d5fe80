package ui

import (
	"fmt"
	"strings"

	"fyne.io/fyne/v2"

	"github.com/handoff/handoff/engine"
)

// menuActions are what the tray menu's items do.
type menuActions struct {
	show, bringBack, suspend, resume, stop func(app string)
	send                                   func(app, peer string)
	run, devices, copyID, quit             func()
}

// trayMenu builds the tray menu for a state. It is a pure function of the
// state, so the menu can be rebuilt whenever the state changes and its
// structure can be tested without a tray.
func trayMenu(s State, do menuActions) *fyne.Menu {
	var items []*fyne.MenuItem
	disabled := func(label string) *fyne.MenuItem {
		it := fyne.NewMenuItem(label, nil)
		it.Disabled = true
		return it
	}
	if s.Connecting() {
		items = append(items, disabled("Connecting to the Handoff daemon…"))
	} else if !s.Connected {
		items = append(items, disabled("Handoff daemon not running"), disabled("Start it: sudo handoff daemon"))
	} else if s.Self.Name != "" {
		items = append(items, disabled("This device: "+s.Self.Name))
		items = append(items, fyne.NewMenuItem("Copy device ID "+s.Self.Short, do.copyID))
	} else {
		items = append(items, disabled("This device (no peer channel)"))
	}
	items = append(items, fyne.NewMenuItemSeparator())
	if len(s.Apps) == 0 && s.Connected {
		items = append(items, disabled("No apps yet"))
	}
	// Each app is a group: its name and status, then what can be done to
	// it. Not a submenu: hosts built on libdbusmenu-gtk3 (xfce4-panel's
	// status tray; Cinnamon's and MATE's use it too) often show a tray
	// item's submenus empty after the menu was rebuilt, when the
	// properties of an item's children reach them before the item's own
	// (Fyne's tray answers D-Bus calls concurrently; fyne-io/systray#12).
	for i, a := range s.Apps {
		if i > 0 {
			items = append(items, fyne.NewMenuItemSeparator())
		}
		items = append(items, disabled(menuLabel(a, s)))
		for _, it := range appItems(a, s, do) {
			if !it.IsSeparator {
				it.Label = appItemIndent + it.Label
				items = append(items, it)
			}
		}
	}
	items = append(items, fyne.NewMenuItemSeparator(),
		fyne.NewMenuItem("Run app…", do.run),
		fyne.NewMenuItem("Devices…", do.devices),
		fyne.NewMenuItemSeparator())
	quit := fyne.NewMenuItem("Quit", do.quit)
	quit.IsQuit = true
	items = append(items, quit)
	if !s.Connected {
		for _, it := range items {
			if it.Label == "Run app…" {
				it.Disabled = true
			}
		}
	}
	return fyne.NewMenu("Handoff", items...)
}

// appItemIndent sets an app's actions off under its name in the tray menu.
const appItemIndent = "    "

func menuLabel(a AppItem, s State) string {
	return a.Name + " — " + appStatus(a, s)
}

// appItems are what can be done to an app: in the tray menu under its
// name, in the menu of its tile in the Devices window. Without the daemon
// nothing can be done to an app (it keeps running where it is), so
// everything is disabled.
func appItems(a AppItem, s State, do menuActions) []*fyne.MenuItem {
	name := a.Name
	_, moving := s.Handoffs[name]
	off := moving || !s.Connected
	item := func(label string, f func(string), enabled bool) *fyne.MenuItem {
		it := fyne.NewMenuItem(label, func() { f(name) })
		it.Disabled = !enabled || off
		return it
	}
	local := !a.Remote
	runs := local && a.State == engine.StateRunning
	items := []*fyne.MenuItem{item("Show", do.show, a.Remote || runs)}
	if local {
		// One "Send to <peer>" each, not a "Send to…" submenu: see trayMenu.
		targets := s.Targets()
		for _, p := range targets {
			key := p.ID.String()
			it := fyne.NewMenuItem("Send to "+p.Name, func() { do.send(name, key) })
			it.Disabled = !runs || off
			items = append(items, it)
		}
		if len(targets) == 0 {
			none := fyne.NewMenuItem("Send to… (no paired device online)", nil)
			none.Disabled = true
			items = append(items, none)
		}
	} else {
		items = append(items, item("Bring back", do.bringBack, !a.Pending))
	}
	if local {
		items = append(items, fyne.NewMenuItemSeparator())
		if a.State == engine.StateSuspended {
			items = append(items, item("Resume", do.resume, true))
		} else {
			items = append(items, item("Suspend", do.suspend, runs))
		}
		items = append(items, item("Stop", do.stop, true))
	}
	return items
}

// menuSignature describes a menu's structure and labels, so that the tray
// is only rebuilt when what it shows changed (progress events come often).
func menuSignature(m *fyne.Menu) string {
	var b strings.Builder
	var walk func(items []*fyne.MenuItem, depth int)
	walk = func(items []*fyne.MenuItem, depth int) {
		for _, it := range items {
			fmt.Fprintf(&b, "%d|%s|%v|%v\n", depth, it.Label, it.Disabled, it.IsSeparator)
			if it.ChildMenu != nil {
				walk(it.ChildMenu.Items, depth+1)
			}
		}
	}
	walk(m.Items, 0)
	return b.String()
}
