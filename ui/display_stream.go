package ui

import (
	"context"

	"github.com/handoff/handoff/app"
)

// The stream package's viewer (WebRTC through the daemon, reconnecting by
// itself when the app moves) is the display of viewer windows. Replace this
// file to use another Display.
func init() {
	openDisplay = func(ctx context.Context, c *app.Client, name string) (Display, error) {
		v := c.Viewer(name, nil)
		go v.Run(ctx)
		return v, nil
	}
}
