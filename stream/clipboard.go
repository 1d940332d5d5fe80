package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xfixes"
	"github.com/jezek/xgb/xproto"
)

// The clipboard crosses the data channel as one small JSON message, the
// same in both directions:
//
//	{"kind":"clipboard","text":"…"}
//
// From a viewer it means "my clipboard now holds text": the host then owns
// the app display's CLIPBOARD and PRIMARY selections with that text, so the
// app pastes it. From the host it means "the app copied text": the viewer
// puts it on its own clipboard. Text is UTF-8, at most maxClipboard bytes;
// larger copies are not sent at all rather than cut.

// maxClipboard bounds clipboard text either way.
const maxClipboard = maxInputText

// clipboardMessage encodes what the app copied for the viewers.
func clipboardMessage(text string) ([]byte, error) {
	if len(text) > maxClipboard {
		return nil, fmt.Errorf("clipboard: %d bytes, more than %d", len(text), maxClipboard)
	}
	return json.Marshal(hostMessage{Kind: InputClipboard, Text: text})
}

// clipboard bridges an app display's X selections and the viewers'
// clipboards, through a connection of its own to the display. Like the
// injector's, that connection must be closed before the app is
// checkpointed; Host.Close does it.
type clipboard struct {
	conn   *xgb.Conn
	win    xproto.Window // owns our selections
	root   xproto.Window
	log    *slog.Logger
	copied func(string) // the app copied text; called on the event goroutine
	chunk  int          // bytes of property data one request may carry
	done   chan struct{}

	atomClipboard, atomPrimary, atomTargets, atomUTF8, atomString, atomText,
	atomTextPlain, atomIncr, atomProp xproto.Atom

	mu      sync.Mutex
	text    string // what we offer while we own the selections
	fromApp string // the app's last copy, while the app still owns CLIPBOARD

	// Only the event goroutine touches these: the copy being fetched.
	recv        xproto.Window // receives the text we ask owners for
	fetchTarget xproto.Atom   // the target asked for, 0 when none
	incr        []byte        // an incremental transfer's data so far
	incrOn      bool
}

// dialClipboard connects to the X display and starts watching its
// CLIPBOARD; copied hears each text the app copies.
func dialClipboard(ctx context.Context, display Display, log *slog.Logger, copied func(string)) (*clipboard, error) {
	conn, err := dialX(ctx, display, " for the clipboard")
	if err != nil {
		return nil, err
	}
	c := &clipboard{conn: conn, log: log, copied: copied, done: make(chan struct{})}
	if err := c.setup(); err != nil {
		conn.Close()
		return nil, err
	}
	go c.loop()
	return c, nil
}

func (c *clipboard) setup() error {
	if err := xfixes.Init(c.conn); err != nil {
		return fmt.Errorf("the app's display has no XFIXES extension: %w", err)
	}
	// XFIXES refuses every other request until the version is agreed.
	if _, err := xfixes.QueryVersion(c.conn, 5, 0).Reply(); err != nil {
		return fmt.Errorf("XFIXES version: %w", err)
	}
	names := map[string]*xproto.Atom{
		"CLIPBOARD": &c.atomClipboard, "PRIMARY": &c.atomPrimary, "TARGETS": &c.atomTargets,
		"UTF8_STRING": &c.atomUTF8, "STRING": &c.atomString, "TEXT": &c.atomText,
		"text/plain;charset=utf-8": &c.atomTextPlain, "INCR": &c.atomIncr, "HANDOFF_SELECTION": &c.atomProp,
	}
	for name, at := range names {
		r, err := xproto.InternAtom(c.conn, false, uint16(len(name)), name).Reply()
		if err != nil {
			return fmt.Errorf("intern atom %s: %w", name, err)
		}
		*at = r.Atom
	}
	setup := xproto.Setup(c.conn)
	screen := setup.DefaultScreen(c.conn)
	// A request is at most MaximumRequestLength 4-byte units; ChangeProperty
	// takes 24 bytes of it. Larger text goes in several appends.
	c.chunk = (int(setup.MaximumRequestLength)*4 - 24) &^ 3
	c.root = screen.Root
	var err error
	if c.win, err = c.window(0); err != nil {
		return err
	}
	if c.recv, err = c.window(xproto.EventMaskPropertyChange); err != nil {
		return err
	}
	if err := xfixes.SelectSelectionInputChecked(c.conn, c.win, c.atomClipboard,
		xfixes.SelectionEventMaskSetSelectionOwner).Check(); err != nil {
		return fmt.Errorf("watch the app's clipboard: %w", err)
	}
	return nil
}

// window makes an unmapped 1×1 input-only window, which is all a selection
// owner or requestor needs.
func (c *clipboard) window(events uint32) (xproto.Window, error) {
	win, err := xproto.NewWindowId(c.conn)
	if err != nil {
		return 0, fmt.Errorf("clipboard window: %w", err)
	}
	if err := xproto.CreateWindowChecked(c.conn, 0, win, c.root, -1, -1, 1, 1, 0,
		xproto.WindowClassInputOnly, 0, xproto.CwEventMask, []uint32{events}).Check(); err != nil {
		return 0, fmt.Errorf("clipboard window: %w", err)
	}
	return win, nil
}

// dropTransfer abandons an incremental transfer. Its owner still waits for
// the property to be deleted and would write its next piece into whatever
// we ask for next: the receiving window is replaced, and the owner's next
// write fails on the destroyed one, which ends its transfer.
func (c *clipboard) dropTransfer() {
	c.incrOn, c.incr, c.fetchTarget = false, nil, 0
	win, err := c.window(xproto.EventMaskPropertyChange)
	if err != nil {
		c.log.Debug("clipboard: replace the receiving window", "err", err)
		return // keep the old one: a stray piece is better than no clipboard
	}
	xproto.DestroyWindow(c.conn, c.recv)
	c.recv = win
}

// Close disconnects from the display; the selections we owned go with the
// connection, as they would with any client that exits.
func (c *clipboard) Close() {
	c.conn.Close()
	<-c.done
}

// Set makes text the app display's clipboard (CLIPBOARD and PRIMARY).
func (c *clipboard) Set(text string) error {
	if len(text) > maxClipboard {
		return fmt.Errorf("clipboard: %d bytes, more than %d", len(text), maxClipboard)
	}
	c.mu.Lock()
	// The viewer offering back what the app itself copied (its clipboard
	// was filled from the app's): taking the selection would only make the
	// app drop its own, highlighted one.
	if c.fromApp != "" && text == c.fromApp {
		c.mu.Unlock()
		return nil
	}
	c.text = text
	c.mu.Unlock()
	for _, sel := range []xproto.Atom{c.atomClipboard, c.atomPrimary} {
		if err := xproto.SetSelectionOwnerChecked(c.conn, c.win, sel, xproto.TimeCurrentTime).Check(); err != nil {
			return fmt.Errorf("own the app's clipboard: %w", err)
		}
	}
	return nil
}

// loop answers the display's selection events until the connection closes.
func (c *clipboard) loop() {
	defer close(c.done)
	for {
		ev, err := c.conn.WaitForEvent()
		if ev == nil && err == nil {
			return // the connection closed
		}
		if err != nil {
			c.log.Debug("clipboard: X error", "err", err)
			continue
		}
		switch e := ev.(type) {
		case xproto.SelectionRequestEvent:
			c.serve(e)
		case xfixes.SelectionNotifyEvent:
			c.ownerChanged(e)
		case xproto.SelectionNotifyEvent:
			if e.Requestor == c.recv {
				c.converted(e)
			}
		case xproto.PropertyNotifyEvent:
			if e.Window == c.recv && e.Atom == c.atomProp && e.State == xproto.PropertyNewValue && c.incrOn {
				c.incrChunk()
			}
		}
	}
}

// serve answers another client's request for our selection's text.
func (c *clipboard) serve(e xproto.SelectionRequestEvent) {
	c.mu.Lock()
	text := c.text
	c.mu.Unlock()
	prop := e.Property
	if prop == xproto.AtomNone {
		prop = e.Target // an obsolete client, per ICCCM
	}
	var err error
	switch e.Target {
	case c.atomTargets:
		targets := []xproto.Atom{c.atomTargets, c.atomUTF8, c.atomString, c.atomText, c.atomTextPlain}
		data := make([]byte, 4*len(targets))
		for i, a := range targets {
			xgb.Put32(data[4*i:], uint32(a))
		}
		err = c.put(e.Requestor, prop, xproto.AtomAtom, 32, data)
	case c.atomUTF8, c.atomText, c.atomTextPlain:
		typ := e.Target
		if typ == c.atomText {
			typ = c.atomUTF8 // TEXT lets the owner pick the encoding
		}
		err = c.put(e.Requestor, prop, typ, 8, []byte(text))
	case c.atomString:
		err = c.put(e.Requestor, prop, c.atomString, 8, latin1(text))
	default:
		prop = xproto.AtomNone // a target we cannot make: refuse
	}
	if err != nil {
		c.log.Debug("clipboard: answer a paste", "err", err)
		prop = xproto.AtomNone
	}
	notify := xproto.SelectionNotifyEvent{Time: e.Time, Requestor: e.Requestor, Selection: e.Selection, Target: e.Target, Property: prop}
	xproto.SendEvent(c.conn, false, e.Requestor, xproto.EventMaskNoEvent, string(notify.Bytes()))
}

// put stores data in a property of the requestor's window, in as many
// requests as it takes: one request may carry only so much, and a property
// built up by appends reads back whole.
func (c *clipboard) put(w xproto.Window, prop, typ xproto.Atom, format byte, data []byte) error {
	mode := byte(xproto.PropModeReplace)
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), c.chunk)
		if err := xproto.ChangePropertyChecked(c.conn, mode, w, prop, typ, format,
			uint32(n/int(format/8)), data[:n]).Check(); err != nil {
			return fmt.Errorf("write the selection to window %#x: %w", w, err)
		}
		data = data[n:]
		mode = xproto.PropModeAppend
	}
	return nil
}

// ownerChanged asks a new owner of CLIPBOARD for its text: the app copied.
func (c *clipboard) ownerChanged(e xfixes.SelectionNotifyEvent) {
	c.mu.Lock()
	c.fromApp = ""
	c.mu.Unlock()
	if e.Owner == c.win || e.Owner == xproto.WindowNone {
		return // our own copy, or the owner went away
	}
	if c.fetchTarget != 0 {
		// Superseded: the previous owner may still write what we asked it
		// for, so it must not find the window we ask the new one to use.
		c.dropTransfer()
	}
	c.fetch(c.atomUTF8, e.SelectionTimestamp)
}

func (c *clipboard) fetch(target xproto.Atom, t xproto.Timestamp) {
	c.fetchTarget = target
	xproto.DeleteProperty(c.conn, c.recv, c.atomProp)
	xproto.ConvertSelection(c.conn, c.recv, c.atomClipboard, target, c.atomProp, t)
}

// converted reads the text the owner stored for us, or starts reading it
// piece by piece when it chose an incremental (INCR) transfer.
func (c *clipboard) converted(e xproto.SelectionNotifyEvent) {
	if e.Target != c.fetchTarget || c.fetchTarget == 0 {
		return
	}
	target := c.fetchTarget
	if e.Property == xproto.AtomNone {
		c.fetchTarget = 0
		if target == c.atomUTF8 {
			c.fetch(c.atomString, e.Time) // an old client: ask for Latin-1
		}
		return
	}
	r, err := xproto.GetProperty(c.conn, false, c.recv, c.atomProp, xproto.GetPropertyTypeAny, 0, maxClipboard/4+1).Reply()
	if err != nil {
		c.log.Debug("clipboard: read the app's copy", "err", err)
		c.fetchTarget = 0
		return
	}
	if r.Type == c.atomIncr {
		// Deleting the property tells the owner to send the first piece.
		c.incrOn, c.incr = true, nil
		xproto.DeleteProperty(c.conn, c.recv, c.atomProp)
		return
	}
	xproto.DeleteProperty(c.conn, c.recv, c.atomProp)
	c.fetchTarget = 0
	if r.BytesAfter > 0 || len(r.Value) > maxClipboard {
		c.log.Info("clipboard: the app copied more than the limit; not sent to viewers", "limit", maxClipboard)
		return
	}
	c.deliver(r.Type, r.Value)
}

// incrChunk takes the next piece of an incremental transfer; an empty one
// ends it.
func (c *clipboard) incrChunk() {
	r, err := xproto.GetProperty(c.conn, true, c.recv, c.atomProp, xproto.GetPropertyTypeAny, 0, maxClipboard/4+1).Reply()
	if err != nil {
		c.log.Debug("clipboard: read the app's copy", "err", err)
		c.dropTransfer()
		return
	}
	if len(r.Value) > 0 {
		if len(c.incr)+len(r.Value) > maxClipboard {
			c.log.Info("clipboard: the app copied more than the limit; not sent to viewers", "limit", maxClipboard)
			c.dropTransfer()
			return
		}
		c.incr = append(c.incr, r.Value...)
		return
	}
	data := c.incr
	c.incrOn, c.incr, c.fetchTarget = false, nil, 0
	c.deliver(r.Type, data)
}

func (c *clipboard) deliver(typ xproto.Atom, data []byte) {
	var text string
	if typ == c.atomString {
		text = fromLatin1(data)
	} else {
		text = strings.ToValidUTF8(string(data), "\uFFFD")
	}
	c.mu.Lock()
	c.fromApp = text
	c.mu.Unlock()
	if text != "" && c.copied != nil {
		c.copied(text)
	}
}

// latin1 is text as ISO 8859-1, which the STRING target means; characters
// it lacks become '?'.
func latin1(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			r = '?'
		}
		b = append(b, byte(r))
	}
	return b
}

func fromLatin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}
