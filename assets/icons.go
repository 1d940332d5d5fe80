package assets

import "embed"

// Icons holds the SVG icons the tray and its windows use (icons/*.svg):
// handoff.svg is the coloured app and tray icon; the others are one-colour
// symbols (black on transparent) that the UI recolours for light and dark
// themes.
//
//go:embed icons/*.svg
var Icons embed.FS
