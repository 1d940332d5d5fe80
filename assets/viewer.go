package assets

import _ "embed"

// ViewerPage is the browser viewer: it opens an app's WebRTC stream from the
// daemon's web listener and sends keyboard and mouse back on a data channel.
//
//go:embed viewer.html
var ViewerPage []byte
