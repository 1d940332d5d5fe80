package ui

import (
	"fmt"
	"strings"

	"fyne.io/fyne/v2"
)

// DefaultHotkey sends the focused viewer's app to the last peer used.
const DefaultHotkey = "Ctrl+Alt+H"

// hotkeySpec is a key combination such as "Ctrl+Alt+H".
type hotkeySpec struct {
	Ctrl, Alt, Shift, Super bool
	Keysym                  uint32       // X keysym of the key (lower case for letters)
	Key                     fyne.KeyName // the same key as Fyne names it
}

// parseHotkey reads a combination: modifiers (Ctrl, Alt, Shift, Super) and
// one key (a letter, a digit, F1–F12, Space, Tab, Return…), joined with '+'.
func parseHotkey(s string) (hotkeySpec, error) {
	var h hotkeySpec
	parts := strings.Split(strings.TrimSpace(s), "+")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		last := i == len(parts)-1
		switch strings.ToLower(p) {
		case "ctrl", "control":
			h.Ctrl = true
			continue
		case "alt", "mod1":
			h.Alt = true
			continue
		case "shift":
			h.Shift = true
			continue
		case "super", "win", "mod4", "meta":
			h.Super = true
			continue
		}
		if !last {
			return h, fmt.Errorf("hotkey %q: %q is not a modifier (Ctrl, Alt, Shift, Super)", s, p)
		}
		sym, name, ok := hotkeyKey(p)
		if !ok {
			return h, fmt.Errorf("hotkey %q: unknown key %q", s, p)
		}
		h.Keysym, h.Key = sym, name
	}
	if h.Keysym == 0 {
		return h, fmt.Errorf("hotkey %q: no key after the modifiers", s)
	}
	if !h.Ctrl && !h.Alt && !h.Super {
		return h, fmt.Errorf("hotkey %q: needs Ctrl, Alt or Super, or it would take a key from every app", s)
	}
	return h, nil
}

// hotkeyKey finds a key's X keysym and Fyne name.
func hotkeyKey(p string) (uint32, fyne.KeyName, bool) {
	if len(p) == 1 {
		c := p[0]
		switch {
		case c >= 'a' && c <= 'z':
			return uint32(c), fyne.KeyName(strings.ToUpper(p)), true
		case c >= 'A' && c <= 'Z':
			return uint32(c - 'A' + 'a'), fyne.KeyName(p), true
		case c >= '0' && c <= '9':
			return uint32(c), fyne.KeyName(p), true
		}
	}
	for name, sym := range keysyms {
		if strings.EqualFold(string(name), p) {
			return sym, name, true
		}
	}
	if strings.EqualFold(p, "space") {
		return 0x20, fyne.KeySpace, true
	}
	return 0, "", false
}

func (h hotkeySpec) String() string {
	var parts []string
	for _, m := range []struct {
		on   bool
		name string
	}{{h.Ctrl, "Ctrl"}, {h.Alt, "Alt"}, {h.Shift, "Shift"}, {h.Super, "Super"}} {
		if m.on {
			parts = append(parts, m.name)
		}
	}
	return strings.Join(append(parts, string(h.Key)), "+")
}

// matches says whether a key pressed in a window with these modifiers is
// the hotkey.
func (h hotkeySpec) matches(key fyne.KeyName, mods fyne.KeyModifier) bool {
	return key == h.Key &&
		h.Ctrl == (mods&fyne.KeyModifierControl != 0) &&
		h.Alt == (mods&fyne.KeyModifierAlt != 0) &&
		h.Shift == (mods&fyne.KeyModifierShift != 0) &&
		h.Super == (mods&fyne.KeyModifierSuper != 0)
}

// hotkeyAction is what pressing the hotkey does.
type hotkeyAction struct {
	Kind      hotkeyKind
	App, Peer string
}

type hotkeyKind int

const (
	hotkeyChoose    hotkeyKind = iota // open the chooser (App preselected when known)
	hotkeySend                        // send App to Peer
	hotkeyBringBack                   // bring App back
)

// decideHotkey picks the hotkey's action: the focused viewer's app (or the
// only app that could move) goes to the last peer used; an app running on
// a peer comes back; anything unclear opens the chooser.
func decideHotkey(s State, focusedApp, lastPeer string) hotkeyAction {
	name := focusedApp
	if name == "" {
		var movable []string
		for _, a := range s.Apps {
			if sendable(a, s) {
				movable = append(movable, a.Name)
			}
		}
		if len(movable) != 1 {
			return hotkeyAction{Kind: hotkeyChoose}
		}
		name = movable[0]
	}
	a, ok := s.App(name)
	switch {
	case !ok:
		return hotkeyAction{Kind: hotkeyChoose}
	case a.Remote:
		if _, busy := s.Handoffs[name]; busy {
			return hotkeyAction{Kind: hotkeyChoose, App: name}
		}
		return hotkeyAction{Kind: hotkeyBringBack, App: name}
	case !sendable(a, s):
		return hotkeyAction{Kind: hotkeyChoose, App: name}
	}
	if p, ok := s.Peer(lastPeer); ok && lastPeer != "" && canReceive(p) {
		return hotkeyAction{Kind: hotkeySend, App: name, Peer: p.ID.String()}
	}
	return hotkeyAction{Kind: hotkeyChoose, App: name}
}

// sendable says whether an app can be sent now: here, running, not moving.
func sendable(a AppItem, s State) bool {
	_, busy := s.Handoffs[a.Name]
	return !a.Remote && a.State == "running" && !busy
}
