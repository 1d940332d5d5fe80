// Package app is Handoff's composition root: it wires the engine, discovery
// and streaming into the daemon, serves the local API on a unix socket (JSON
// over HTTP plus an event stream), and holds the typed Go client of that API
// that the CLI and the tray use. Nothing outside this package talks to the
// daemon in any other way. It knows nothing of Fyne.
package app
