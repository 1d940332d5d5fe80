// Package stream shows an app's display to a viewer, here or on a peer: it
// captures the app's framebuffer where the X server reports damage (polling
// it when the display has no DAMAGE extension), encodes it as VP8,
// sends it over pion WebRTC, decodes it on the receiving side and carries
// input events back to the app's display; text on the clipboard goes both
// ways, through the display's X selections. The app's sound, recorded from
// its PulseAudio server's sink while something plays, travels beside the
// picture as Opus on the same peer connection.
//
// It knows nothing of containers or of the UI toolkit: it is given a
// framebuffer, an X display socket and a sound server's socket, and hands
// out frames and samples.
package stream
