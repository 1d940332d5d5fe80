// Package assets bundles Handoff's icons and the browser viewer page, so the
// binary carries everything it shows.
package assets

import _ "embed"

// Icon is the application icon (PNG), also referenced by FyneApp.toml.
//
//go:embed icon.png
var Icon []byte
