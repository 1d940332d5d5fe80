// Package discovery is how Handoff workstations find and trust each other:
// each has an identity (a key pair and self-signed certificate; its device ID
// is the SHA-256 of the certificate), announces itself with mDNS
// (_handoff._tcp, via github.com/grandcat/zeroconf), finds peers at
// addresses the user saved, for networks that drop multicast (direct.go: a
// hello on the peer channel, at start-up, on every netlink address or route
// change, and every few seconds), keeps a bounded table of peers seen either
// way, one entry per device ID (each announced address is proven by a pinned
// TLS dial, at a bounded rate; strangers cannot push trusted devices out or
// make them impostors), remembers which device IDs its user trusts, and builds the
// mutual-TLS configurations every peer connection uses: a connection is
// pinned to the device ID the other side must have, so a peer announcing
// someone else's ID cannot pass. Pairing (pairing.go) compares a six-digit
// code made from both IDs and a nonce from each side, committed before it
// is revealed, so that a machine in the middle gets one guess in a million
// per attempt; the peer channel (channel.go) bounds what a device that is
// not trusted can hold.
//
// It knows nothing of containers, streams or the UI.
package discovery
