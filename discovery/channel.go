package discovery

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Peer channel limits: garbage, floods and slow clients must not block it.
const (
	maxPeerConns      = 128 // connections in all
	maxPeerConnsPerIP = 16  // from one address: a handoff uses a few at once
	peerHeaderTimeout = 5 * time.Second
	peerIdleTimeout   = 90 * time.Second
	maxPeerHeader     = 16 << 10
)

// untrustedBodyTimeout bounds how long a device that is not trusted may
// take to send a request body (pairing); a variable for tests.
var untrustedBodyTimeout = 10 * time.Second

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
			w.Header().Set("Connection", "close")
			peerError(w, http.StatusUnauthorized, "a client certificate is required")
			return
		}
		if !ts.IsTrusted(peer) {
			// A device that is not trusted gets one answer per
			// connection, and a deadline for its body: it cannot hold
			// the channel's connections.
			w.Header().Set("Connection", "close")
			if open == nil || !open(r.URL.Path) {
				peerError(w, http.StatusForbidden, fmt.Sprintf(
					"device %s is not trusted by %s: pair with it first (`handoff pair`), or trust it there with `sudo handoff trust %s`",
					peer.Short(), id.Name, peer))
				return
			}
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(untrustedBodyTimeout))
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

// ServePeers serves srv on ln, limiting connections per address and in all.
func ServePeers(srv *http.Server, ln net.Listener) error {
	return srv.ServeTLS(&limitListener{Listener: ln, perIP: maxPeerConnsPerIP, total: maxPeerConns, open: map[netip.Addr]int{}}, "", "")
}

// limitListener closes, at once, a connection past the limit of its
// address or of all: a flood from one address then costs others nothing,
// and a full channel refuses rather than queues (a queued peer would wait
// for strangers' handshakes to time out).
type limitListener struct {
	net.Listener
	perIP, total int
	mu           sync.Mutex
	open         map[netip.Addr]int
	n            int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			ip = ap.Addr().Unmap()
		}
		l.mu.Lock()
		if l.open[ip] >= l.perIP || l.n >= l.total {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open[ip]++
		l.n++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.n--
			if l.open[ip]--; l.open[ip] <= 0 {
				delete(l.open, ip)
			}
		}}, nil
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
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
