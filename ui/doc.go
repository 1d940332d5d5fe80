// Package ui is Handoff's face on the desktop, built with Fyne: `handoff
// tray` (the tray menu, or the Devices window where no tray host runs),
// the Devices window where dragging an app's tile onto a peer sends it,
// viewer windows, pairing and incoming-handoff prompts, notifications and
// the global handoff shortcut. Its state lives in a plain-Go Model fed by
// the daemon's event stream (Feed); windows render that state and call the
// daemon through package app's client. It knows nothing of the engine's
// internals, containers or CRIU, and nothing of WebRTC: a viewer window
// gets its pictures from a Display.
package ui
