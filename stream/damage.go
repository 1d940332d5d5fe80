package stream

import (
	"context"
	"errors"
	"fmt"
	"image"
	"sync"

	"github.com/jezek/xgb"
	xdamage "github.com/jezek/xgb/damage"
	"github.com/jezek/xgb/xfixes"
	"github.com/jezek/xgb/xproto"
)

// damageWatch hears from the X server, through the DAMAGE extension, when
// and where the app's display drew, so that a host wakes up for a change at
// once and compares only the tiles it touched, and does nothing at all
// while the screen is still. Like the injector it holds a connection to the
// display, which must be closed before the app is checkpointed.
type damageWatch struct {
	conn   *xgb.Conn
	damage xdamage.Damage
	region xfixes.Region
	drawn  chan struct{} // one pending wake-up: the screen drew since the last Take
	done   chan struct{} // closed when the connection ends
	once   sync.Once
}

// watchDamage connects to the X display and starts watching its root
// window, which sees every window's drawing.
func watchDamage(ctx context.Context, display Display) (*damageWatch, error) {
	conn, err := dialX(ctx, display, "")
	if err != nil {
		return nil, err
	}
	w, err := startWatch(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return w, nil
}

func startWatch(conn *xgb.Conn) (*damageWatch, error) {
	if err := xfixes.Init(conn); err != nil {
		return nil, fmt.Errorf("the app's display has no XFIXES extension: %w", err)
	}
	if _, err := xfixes.QueryVersion(conn, 2, 0).Reply(); err != nil {
		return nil, fmt.Errorf("XFIXES version: %w", err)
	}
	if err := xdamage.Init(conn); err != nil {
		return nil, fmt.Errorf("the app's display has no DAMAGE extension: %w", err)
	}
	if _, err := xdamage.QueryVersion(conn, 1, 1).Reply(); err != nil {
		return nil, fmt.Errorf("DAMAGE version: %w", err)
	}
	w := &damageWatch{conn: conn, drawn: make(chan struct{}, 1), done: make(chan struct{})}
	var err error
	if w.region, err = xfixes.NewRegionId(conn); err != nil {
		return nil, err
	}
	if err := xfixes.CreateRegionChecked(conn, w.region, nil).Check(); err != nil {
		return nil, fmt.Errorf("XFIXES region: %w", err)
	}
	if w.damage, err = xdamage.NewDamageId(conn); err != nil {
		return nil, err
	}
	root := xproto.Setup(conn).DefaultScreen(conn).Root
	// NonEmpty: one event when the damage goes from none to some; Take
	// empties it again, so there is at most one event per frame.
	if err := xdamage.CreateChecked(conn, w.damage, xproto.Drawable(root), xdamage.ReportLevelNonEmpty).Check(); err != nil {
		return nil, fmt.Errorf("watch the app's display: %w", err)
	}
	go w.events()
	return w, nil
}

func (w *damageWatch) events() {
	defer close(w.done)
	for {
		ev, err := w.conn.WaitForEvent()
		if ev == nil && err == nil {
			return // the connection is closed
		}
		if _, ok := ev.(xdamage.NotifyEvent); ok {
			select {
			case w.drawn <- struct{}{}:
			default:
			}
		}
	}
}

// Drawn delivers a value when the display drew since the last Take.
func (w *damageWatch) Drawn() <-chan struct{} { return w.drawn }

// Done is closed when the connection to the display ended.
func (w *damageWatch) Done() <-chan struct{} { return w.done }

// errWatchEnded is Take's error once the connection to the display is gone.
var errWatchEnded = errors.New("the app's display stopped reporting damage")

// Take returns where the display drew since the last Take, and starts
// over: drawing from now on wakes Drawn again. It also holds the display
// still (a server grab: other clients' requests wait) until Release, so
// that the framebuffer does not change while the caller copies it and a
// frame never shows half of a drawing. Everything drawn before the call is
// in the framebuffer when it returns, since the X server answers requests
// in order and draws each one whole. Call Release after a nil error.
func (w *damageWatch) Take() ([]image.Rectangle, error) {
	select {
	case <-w.done:
		return nil, errWatchEnded
	default:
	}
	xproto.GrabServer(w.conn)
	xdamage.Subtract(w.conn, w.damage, xfixes.Region(0), w.region)
	reply, err := xfixes.FetchRegion(w.conn, w.region).Reply()
	if err != nil || reply == nil {
		w.Release()
		if err == nil {
			err = errWatchEnded
		}
		return nil, fmt.Errorf("damage of the app's display: %w", err)
	}
	rects := make([]image.Rectangle, 0, len(reply.Rectangles))
	for _, r := range reply.Rectangles {
		rects = append(rects, image.Rect(int(r.X), int(r.Y), int(r.X)+int(r.Width), int(r.Y)+int(r.Height)))
	}
	return rects, nil
}

// Release lets the display draw again after Take.
func (w *damageWatch) Release() {
	xproto.UngrabServer(w.conn)
}

// Close drops the connection to the display.
func (w *damageWatch) Close() {
	w.once.Do(func() {
		w.conn.Close()
		<-w.done
	})
}
