package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/handoff/handoff/stream"
)

// X keysyms (X11/keysymdef.h) of the keys that type no character, by Fyne's
// key names.
var keysyms = map[fyne.KeyName]uint32{
	fyne.KeyReturn: 0xff0d, fyne.KeyEnter: 0xff8d, fyne.KeyBackspace: 0xff08, fyne.KeyTab: 0xff09,
	fyne.KeyEscape: 0xff1b, fyne.KeyDelete: 0xffff, fyne.KeyInsert: 0xff63,
	fyne.KeyHome: 0xff50, fyne.KeyEnd: 0xff57, fyne.KeyPageUp: 0xff55, fyne.KeyPageDown: 0xff56,
	fyne.KeyLeft: 0xff51, fyne.KeyUp: 0xff52, fyne.KeyRight: 0xff53, fyne.KeyDown: 0xff54,
	fyne.KeyF1: 0xffbe, fyne.KeyF2: 0xffbf, fyne.KeyF3: 0xffc0, fyne.KeyF4: 0xffc1,
	fyne.KeyF5: 0xffc2, fyne.KeyF6: 0xffc3, fyne.KeyF7: 0xffc4, fyne.KeyF8: 0xffc5,
	fyne.KeyF9: 0xffc6, fyne.KeyF10: 0xffc7, fyne.KeyF11: 0xffc8, fyne.KeyF12: 0xffc9,
	desktop.KeyShiftLeft: 0xffe1, desktop.KeyShiftRight: 0xffe2,
	desktop.KeyControlLeft: 0xffe3, desktop.KeyControlRight: 0xffe4,
	desktop.KeyCapsLock: 0xffe5,
	desktop.KeyAltLeft:  0xffe9, desktop.KeyAltRight: 0xffea,
	desktop.KeySuperLeft: 0xffeb, desktop.KeySuperRight: 0xffec,
	desktop.KeyMenu: 0xff67, desktop.KeyPrintScreen: 0xff61,
}

// modifier keys, which change what other keys do.
var modifierKeys = map[fyne.KeyName]fyne.KeyModifier{
	desktop.KeyShiftLeft: fyne.KeyModifierShift, desktop.KeyShiftRight: fyne.KeyModifierShift,
	desktop.KeyControlLeft: fyne.KeyModifierControl, desktop.KeyControlRight: fyne.KeyModifierControl,
	desktop.KeyAltLeft: fyne.KeyModifierAlt, desktop.KeyAltRight: fyne.KeyModifierAlt,
	desktop.KeySuperLeft: fyne.KeyModifierSuper, desktop.KeySuperRight: fyne.KeyModifierSuper,
}

// keysymForRune is the X keysym of a character: Latin-1 maps to itself, the
// rest of Unicode to 0x01000000 + its code point.
func keysymForRune(r rune) uint32 {
	switch {
	case r == '\n' || r == '\r':
		return 0xff0d
	case r == '\t':
		return 0xff09
	case r == '\b':
		return 0xff08
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xff:
		return uint32(r)
	}
	return 0x01000000 + uint32(r)
}

// printableKeysym is the keysym of a key that types a character, for when a
// modifier other than Shift is held and Fyne delivers no character (Ctrl+C).
// Letters go lower case: X applies Shift itself.
func printableKeysym(name fyne.KeyName) (uint32, bool) {
	if name == fyne.KeySpace {
		return 0x20, true
	}
	if len(name) != 1 {
		return 0, false
	}
	c := name[0]
	switch {
	case c >= 'A' && c <= 'Z':
		return uint32(c-'A') + 'a', true
	case c >= 0x21 && c <= 0x7e:
		return uint32(c), true
	}
	return 0, false
}

// keyboard turns Fyne's key events into the X key events a viewer sends.
// Characters come from TypedRune so that the user's layout decides them;
// keys without characters, modifiers, and keys pressed with Ctrl, Alt or
// Super go as key presses and releases. It remembers what it pressed so
// that each release matches its press.
type keyboard struct {
	mods        fyne.KeyModifier
	pressed     map[fyne.KeyName]uint32
	justPressed fyne.KeyName
}

func newKeyboard() *keyboard { return &keyboard{pressed: map[fyne.KeyName]uint32{}} }

func keyEvent(sym uint32, down bool) stream.Input {
	return stream.Input{Kind: stream.InputKey, Keysym: sym, Down: down}
}

// keyDown is a key going down.
func (k *keyboard) keyDown(name fyne.KeyName) []stream.Input {
	if m, ok := modifierKeys[name]; ok {
		k.mods |= m
	}
	sym, ok := keysyms[name]
	if !ok && k.mods&(fyne.KeyModifierControl|fyne.KeyModifierAlt|fyne.KeyModifierSuper) != 0 {
		sym, ok = printableKeysym(name)
	}
	if !ok {
		return nil // a character: TypedRune sends it
	}
	k.pressed[name] = sym
	k.justPressed = name
	return []stream.Input{keyEvent(sym, true)}
}

// keyUp is a key coming up.
func (k *keyboard) keyUp(name fyne.KeyName) []stream.Input {
	if m, ok := modifierKeys[name]; ok {
		k.mods &^= m
		// the other side's key of the same modifier may still be down
		for n := range k.pressed {
			if n != name && modifierKeys[n] == m {
				k.mods |= m
			}
		}
	}
	sym, ok := k.pressed[name]
	if !ok {
		return nil
	}
	delete(k.pressed, name)
	return []stream.Input{keyEvent(sym, false)}
}

// typedKey follows every press and every key repeat; a repeat of a key
// sent as a press is sent again as a press, as X's own autorepeat does.
func (k *keyboard) typedKey(name fyne.KeyName) []stream.Input {
	if k.justPressed == name {
		k.justPressed = ""
		return nil
	}
	if _, isMod := modifierKeys[name]; isMod {
		return nil
	}
	if sym, ok := k.pressed[name]; ok {
		return []stream.Input{keyEvent(sym, true)}
	}
	return nil
}

// typedRune is a character the user typed.
func (k *keyboard) typedRune(r rune) []stream.Input {
	sym := keysymForRune(r)
	return []stream.Input{keyEvent(sym, true), keyEvent(sym, false)}
}

// releaseAll lets go of every key still held, when the window loses focus.
func (k *keyboard) releaseAll() []stream.Input {
	var out []stream.Input
	for name, sym := range k.pressed {
		out = append(out, keyEvent(sym, false))
		delete(k.pressed, name)
	}
	k.mods = 0
	return out
}
