package discovery

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Peer channel limits: garbage, floods and slow clients must not block it.
const (
	maxPeerConns      = 64
	peerHeaderTimeout = 5 * time.Second
	peerIdleTimeout   = 90 * time.Second
	maxPeerHeader     = 16 << 10
)

type peerIDKey struct{}

// RequestPeer returns the device ID of the peer that made a request on the
// peer channel.
func RequestPeer(ctx context.Context) (DeviceID, bool) {
	id, ok := ctx.Value(peerIDKey{}).(DeviceID)
	return id, ok
}

// PeerServer serves h on the peer channel: mutual TLS with this identity,
// and every request from a device that is not trusted is refused with 403
// and a message saying what to do, unless open(path) allows it (pairing).
func (id *Identity) PeerServer(h http.Handler, ts *TrustStore, open func(path string) bool) *http.Server {
	guard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, ok := PeerID(r.TLS)
		if !ok {
			peerError(w, http.StatusUnauthorized, "a client certificate is required")
			return
		}
		if !ts.IsTrusted(peer) && (open == nil || !open(r.URL.Path)) {
			peerError(w, http.StatusForbidden, fmt.Sprintf(
				"device %s is not trusted by %s: pair with it first (`handoff pair`), or trust it there with `handoff trust %s`",
				peer.Short(), id.Name, peer))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerIDKey{}, peer)))
	})
	return &http.Server{
		Handler:           guard,
		TLSConfig:         id.ServerTLS(),
		ReadHeaderTimeout: peerHeaderTimeout, // also bounds the TLS handshake
		IdleTimeout:       peerIdleTimeout,
		MaxHeaderBytes:    maxPeerHeader,
		ErrorLog:          nil,
	}
}

// ServePeers serves srv on ln, limiting concurrent connections.
func ServePeers(srv *http.Server, ln net.Listener) error {
	return srv.ServeTLS(netutil.LimitListener(ln, maxPeerConns), "", "")
}

// Client returns an HTTP client for the peer with device ID want: every
// connection is pinned to want's certificate.
func (id *Identity) Client(want DeviceID) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:       id.ClientTLS(want),
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 0, // commits and streams may take long; callers bound them with contexts
		IdleConnTimeout:       60 * time.Second,
		ForceAttemptHTTP2:     false,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
	}}
}

// VerifyPeer completes a TLS handshake with p and checks its certificate is
// the one its announced ID names.
func (id *Identity) VerifyPeer(ctx context.Context, p Peer) error {
	d := &tls.Dialer{Config: id.ClientTLS(p.ID), NetDialer: &net.Dialer{Timeout: 3 * time.Second}}
	conn, err := d.DialContext(ctx, "tcp", p.Endpoint())
	if err != nil {
		return err
	}
	return conn.Close()
}

func peerError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
