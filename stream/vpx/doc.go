// Package vpx is a small cgo binding to libvpx's VP8 encoder and decoder,
// tuned for screens: realtime deadline, constant bitrate that the caller
// adapts to the link, screen-content mode, no frame lag, and only the
// macroblocks the caller changed coded (an active map). It converts between
// the framebuffer's 32-bit BGRX pixels and the codec's I420 planes with
// libyuv.
//
// A binding of our own instead of pion/mediadevices' codec: that codec comes
// with mediadevices' whole capture pipeline, while the stream package needs
// only "this frame in, these bytes out" and per-frame control of key frames
// and bitrate.
package vpx
