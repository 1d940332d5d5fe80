// Package stream shows an app's display to a viewer, here or on a peer: it
// captures the app's framebuffer where the X server reports damage (polling
// it when the display has no DAMAGE extension), encodes it as VP8,
// sends it over pion WebRTC, decodes it on the receiving side and carries
// input events back to the app's display; text on the clipboard goes both
// ways, through the display's X selections.
//
// It knows nothing of containers or of the UI toolkit: it is given a
// framebuffer path and an X display socket, and hands out frames.
package stream
