package stream

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/jezek/xgb"
)

// Display is how a Host reaches an app's display: the X server's
// framebuffer file and connections to the X server. The caller opens both;
// the daemon's engine does it without following anything the app controls.
type Display struct {
	// OpenFramebuffer opens the display's XWD framebuffer (Xvfb -fbdir).
	OpenFramebuffer func() (*os.File, error)
	// Dial connects to the display's X server.
	Dial func(ctx context.Context) (net.Conn, error)
}

// DisplayAt is a Display whose framebuffer file and X socket are at paths
// the caller trusts (tests, tools on the caller's own display).
func DisplayAt(framebuffer, socket string) Display {
	return Display{
		OpenFramebuffer: func() (*os.File, error) { return os.Open(framebuffer) },
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
}

// xDialTimeout bounds connecting to a display.
const xDialTimeout = 5 * time.Second

// dialX opens an X connection to the display; purpose says what it is for,
// in errors ("for the clipboard").
func dialX(ctx context.Context, d Display, purpose string) (*xgb.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, xDialTimeout)
	defer cancel()
	nc, err := d.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the app's display%s: %w", purpose, err)
	}
	conn, err := xgb.NewConnNet(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to the app's display%s: %w", purpose, err)
	}
	return conn, nil
}
