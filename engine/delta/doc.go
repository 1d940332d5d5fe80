// Package delta moves a directory of CRIU image files to a machine that may
// already hold much of their content, sending only what it lacks.
//
// The sender indexes the directory: page images (pages-*.img, a plain run of
// 4 KiB pages) are cut into pages, every other file into chunks of at most
// 1 MiB, and each piece is named by its 128-bit XXH3 hash; the index travels
// in a compact binary form, after the first round as its difference from the
// round before. The receiver holds the image of the last round it took
// (the first one received straight into place) and nothing else.
//
// First round: the receiver holds nothing, so the page images go while they
// are still being written (SendGrowing, ReceiveGrowing, hashed on arrival);
// the index then only confirms them (Pool.Adopt) and the receiver answers
// with the places in the index of the pieces that did not arrive whole.
// Later rounds: the sender knows what the receiver holds (Holding) and
// sends the places it lacks with the pieces, in that order; the receiver
// checks they cover what it lacks (Places.Covers). Every piece is checked
// against its hash on arrival, and each file is rebuilt over the previous
// round's image, writing only where pages changed. Where the kernel tracks
// dirty pages CRIU's own incremental pre-dump is better; where it does not
// (these machines), this turns a full final dump into a transfer of the
// pages that changed since the last round.
//
// It knows nothing of containers, CRIU invocations or networks: it works on
// directories and io.Reader/io.Writer.
package delta
