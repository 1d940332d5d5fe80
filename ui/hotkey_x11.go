package ui

import (
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// grabHotkey makes a key combination global on the X display ($DISPLAY):
// it is grabbed on the root window, so it reaches us whichever window has
// the keyboard, and fire is called with the window that had the focus and
// its ancestors.
//
// This uses the X protocol directly (XGrabKey through xgb, which stream
// already uses) rather than golang.design/x/hotkey: that package panics in
// its init when no X display is reachable, which would break the daemon and
// the CLI that share this binary, and exits the process when another
// program holds the key, where a taken shortcut must only be logged.
func grabHotkey(h hotkeySpec, fire func(focus []uint32)) (stop func(), err error) {
	xgb.Logger = log.New(io.Discard, "", 0)
	conn, err := xgb.NewConn()
	if err != nil {
		return nil, fmt.Errorf("connect to the X display: %w", err)
	}
	setup := xproto.Setup(conn)
	root := setup.DefaultScreen(conn).Root
	code, err := keycodeFor(conn, setup, h.Keysym)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var mods uint16
	if h.Ctrl {
		mods |= xproto.ModMaskControl
	}
	if h.Alt {
		mods |= xproto.ModMask1
	}
	if h.Shift {
		mods |= xproto.ModMaskShift
	}
	if h.Super {
		mods |= xproto.ModMask4
	}
	// Grab with and without Caps Lock and Num Lock, which X counts as
	// modifiers too.
	for _, lock := range []uint16{0, xproto.ModMaskLock, xproto.ModMask2, xproto.ModMaskLock | xproto.ModMask2} {
		err := xproto.GrabKeyChecked(conn, true, root, mods|lock, code,
			xproto.GrabModeAsync, xproto.GrabModeAsync).Check()
		if err != nil {
			conn.Close()
			var access xproto.AccessError
			if errors.As(err, &access) {
				return nil, fmt.Errorf("%s is taken by another program", h)
			}
			return nil, fmt.Errorf("grab %s: %w", h, err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last time.Time
		for {
			ev, err := conn.WaitForEvent()
			if ev == nil && err == nil {
				return // connection closed
			}
			kp, ok := ev.(xproto.KeyPressEvent)
			if !ok || kp.Detail != code {
				continue
			}
			// X's autorepeat sends presses while the key is held: one is enough.
			if time.Since(last) < 400*time.Millisecond {
				last = time.Now()
				continue
			}
			last = time.Now()
			var focus []uint32
			if r, err := xproto.GetInputFocus(conn).Reply(); err == nil {
				focus = ancestors(conn, root, r.Focus)
			}
			fire(focus)
		}
	}()
	return func() {
		conn.Close()
		<-done
	}, nil
}

// keycodeFor finds the key that makes a keysym on this display.
func keycodeFor(conn *xgb.Conn, setup *xproto.SetupInfo, sym uint32) (xproto.Keycode, error) {
	lo, hi := setup.MinKeycode, setup.MaxKeycode
	m, err := xproto.GetKeyboardMapping(conn, lo, byte(int(hi)-int(lo)+1)).Reply()
	if err != nil {
		return 0, fmt.Errorf("read the keyboard map: %w", err)
	}
	per := int(m.KeysymsPerKeycode)
	for i := 0; i*per < len(m.Keysyms); i++ {
		for j := 0; j < per && j < 2; j++ {
			if uint32(m.Keysyms[i*per+j]) == sym {
				return lo + xproto.Keycode(i), nil
			}
		}
	}
	return 0, fmt.Errorf("no key makes keysym %#x on this keyboard", sym)
}

// ancestors lists a focused window and its parents up to the root: window
// managers wrap a toolkit's window in frames, and toolkits focus inner
// windows.
func ancestors(conn *xgb.Conn, root, w xproto.Window) []uint32 {
	var out []uint32
	for i := 0; i < 16 && w != 0 && w != root && w != xproto.Window(1); i++ { // 1 is PointerRoot
		out = append(out, uint32(w))
		tree, err := xproto.QueryTree(conn, w).Reply()
		if err != nil {
			break
		}
		w = tree.Parent
	}
	return out
}
