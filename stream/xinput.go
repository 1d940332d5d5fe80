package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
	"github.com/jezek/xgb/xtest"
)

// X keysyms the injector itself needs.
const (
	keysymShiftL = 0xffe1
	keysymShiftR = 0xffe2
)

func init() {
	// xgb logs to stderr when it falls back to connecting without an
	// Xauthority file, which is how every app display is reached.
	xgb.Logger = log.New(io.Discard, "", 0)
}

// injector types into an X display through XTEST. It holds a connection to
// the display that must not exist while the app is checkpointed: CRIU cannot
// dump the X server's end of a socket whose peer is outside the container.
type injector struct {
	conn   *xgb.Conn
	root   xproto.Window
	minKey xproto.Keycode
	// keys maps a keysym to its keycode and whether it needs Shift.
	keys    map[xproto.Keysym]keyPos
	spare   []xproto.Keycode // keycodes without symbols, for keysyms the map lacks
	perCode int
	shift   bool // Shift is held by the viewer
	buttons map[int]bool
}

type keyPos struct {
	code    xproto.Keycode
	shifted bool
}

// dialInjector connects to the X display for input.
func dialInjector(ctx context.Context, display Display) (*injector, error) {
	conn, err := dialX(ctx, display, " for input")
	if err != nil {
		return nil, err
	}
	in := &injector{conn: conn, buttons: map[int]bool{}}
	if err := xtest.Init(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("the app's display has no XTEST extension: %w", err)
	}
	setup := xproto.Setup(conn)
	in.root = setup.DefaultScreen(conn).Root
	in.minKey = setup.MinKeycode
	if err := in.loadKeymap(setup.MinKeycode, setup.MaxKeycode); err != nil {
		conn.Close()
		return nil, err
	}
	return in, nil
}

func (in *injector) loadKeymap(lo, hi xproto.Keycode) error {
	count := byte(int(hi) - int(lo) + 1)
	reply, err := xproto.GetKeyboardMapping(in.conn, lo, count).Reply()
	if err != nil {
		return fmt.Errorf("read the display's keyboard map: %w", err)
	}
	in.perCode = int(reply.KeysymsPerKeycode)
	in.keys = map[xproto.Keysym]keyPos{}
	in.spare = nil
	for i := 0; i < int(count); i++ {
		code := lo + xproto.Keycode(i)
		syms := reply.Keysyms[i*in.perCode : (i+1)*in.perCode]
		empty := true
		for col, s := range syms {
			if s == 0 {
				continue
			}
			empty = false
			if col > 1 {
				break // group 2 and beyond need more than Shift
			}
			if _, seen := in.keys[s]; !seen {
				in.keys[s] = keyPos{code: code, shifted: col == 1}
			}
		}
		if empty && code > 8 {
			in.spare = append(in.spare, code)
		}
	}
	return nil
}

// keycodeFor finds or makes a keycode for a keysym. Keysyms the display's
// map lacks (the viewer's layout has letters this one does not) are bound to
// a spare keycode, as xdotool does.
func (in *injector) keycodeFor(sym xproto.Keysym) (keyPos, error) {
	if p, ok := in.keys[sym]; ok {
		return p, nil
	}
	if len(in.spare) == 0 {
		return keyPos{}, fmt.Errorf("no free keycode for keysym %#x", sym)
	}
	code := in.spare[len(in.spare)-1]
	in.spare = in.spare[:len(in.spare)-1]
	syms := make([]xproto.Keysym, in.perCode)
	syms[0] = sym
	if in.perCode > 1 {
		syms[1] = sym
	}
	if err := xproto.ChangeKeyboardMappingChecked(in.conn, 1, code, byte(in.perCode), syms).Check(); err != nil {
		return keyPos{}, fmt.Errorf("bind keysym %#x: %w", sym, err)
	}
	p := keyPos{code: code}
	in.keys[sym] = p
	return p, nil
}

func (in *injector) fake(typ byte, detail byte, x, y int16) error {
	return xtest.FakeInputChecked(in.conn, typ, detail, 0, in.root, x, y, 0).Check()
}

// key presses or releases a keysym, adding Shift around it when the symbol
// sits on the shifted level and the viewer does not hold Shift itself.
func (in *injector) key(sym xproto.Keysym, down bool) error {
	if sym == keysymShiftL || sym == keysymShiftR {
		in.shift = down
	}
	p, err := in.keycodeFor(sym)
	if err != nil {
		return err
	}
	wrap := p.shifted && !in.shift && down
	if wrap {
		sp, err := in.keycodeFor(keysymShiftL)
		if err != nil {
			return err
		}
		if err := in.fake(xproto.KeyPress, byte(sp.code), 0, 0); err != nil {
			return err
		}
		defer in.fake(xproto.KeyRelease, byte(sp.code), 0, 0)
	}
	typ := byte(xproto.KeyRelease)
	if down {
		typ = xproto.KeyPress
	}
	return in.fake(typ, byte(p.code), 0, 0)
}

// keysymOf is the X keysym of a character: Latin-1 maps to itself, the rest
// of Unicode to 0x01000000 + code point.
func keysymOf(r rune) xproto.Keysym {
	switch {
	case r == '\n' || r == '\r':
		return 0xff0d // Return
	case r == '\t':
		return 0xff09
	case r == '\b':
		return 0xff08
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xff:
		return xproto.Keysym(r)
	default:
		return xproto.Keysym(0x01000000 + r)
	}
}

// Apply carries out one input event on the display.
func (in *injector) Apply(ev Input) error {
	switch ev.Kind {
	case InputPointer:
		return in.fake(xproto.MotionNotify, 0, int16(ev.X), int16(ev.Y))
	case InputButton:
		if err := in.fake(xproto.MotionNotify, 0, int16(ev.X), int16(ev.Y)); err != nil {
			return err
		}
		typ := byte(xproto.ButtonRelease)
		if ev.Down {
			typ = xproto.ButtonPress
		}
		in.buttons[ev.Button] = ev.Down
		return in.fake(typ, byte(ev.Button), 0, 0)
	case InputWheel:
		// X reports scrolling as clicks of buttons 4/5 (vertical) and 6/7.
		for _, s := range []struct{ n, neg, pos int }{{ev.WheelY, 4, 5}, {ev.WheelX, 6, 7}} {
			b, n := s.pos, s.n
			if n < 0 {
				b, n = s.neg, -n
			}
			for i := 0; i < min(n, 50); i++ {
				if err := in.fake(xproto.ButtonPress, byte(b), 0, 0); err != nil {
					return err
				}
				if err := in.fake(xproto.ButtonRelease, byte(b), 0, 0); err != nil {
					return err
				}
			}
		}
		return nil
	case InputKey:
		return in.key(xproto.Keysym(ev.Keysym), ev.Down)
	case InputText:
		for _, r := range ev.Text {
			sym := keysymOf(r)
			if err := in.key(sym, true); err != nil {
				return err
			}
			if err := in.key(sym, false); err != nil {
				return err
			}
		}
		return nil
	case InputClipboard:
		return errors.New("clipboard is handled by the clipboard bridge")
	}
	return fmt.Errorf("input event: unknown kind %q", ev.Kind)
}

// Close releases whatever the viewer still held down and disconnects.
func (in *injector) Close() {
	for b, down := range in.buttons {
		if down {
			in.fake(xproto.ButtonRelease, byte(b), 0, 0)
		}
	}
	if in.shift {
		in.key(keysymShiftL, false)
	}
	in.conn.Close()
}
