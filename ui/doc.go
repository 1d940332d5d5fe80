// Package ui is Handoff's face on the desktop, built with Fyne: the tray menu,
// the devices window with drag-and-drop onto peers, viewer windows, the handoff
// shortcut, dialogs and notifications. It talks to the daemon only through the
// client in package app and knows nothing of the engine's internals.
package ui
