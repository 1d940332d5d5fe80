package discovery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// HelloPath is the peer-channel endpoint where two devices tell each other
// who they are: what mDNS would announce, for networks where it does not
// pass. Devices that are not trusted may reach it (like pairing): it tells
// nothing an mDNS announcement does not.
const HelloPath = "/peer/v1/hello"

// maxHello bounds a hello's body.
const maxHello = 4 << 10

// Hello is what each side of a hello says: its announcement and the port
// its peer channel listens on. The device ID must be the one of the
// certificate it speaks with.
type Hello struct {
	ID      DeviceID `json:"id"`
	Version int      `json:"version"`
	Name    string   `json:"name"`
	Arch    string   `json:"arch,omitempty"`
	Criu    string   `json:"criu,omitempty"`
	Port    int      `json:"port"`
}

// HelloOf is the hello of an announcement, with the port its peer channel
// listens on.
func HelloOf(a Announcement, port int) Hello {
	return Hello{ID: a.ID, Version: a.Version, Name: a.Name, Arch: a.Arch, Criu: a.Criu, Port: port}
}

// announcement is the hello as an announcement, checked and cleaned like
// TXT records from the network are.
func (h Hello) announcement() (Announcement, error) {
	if h.Version < 1 || h.Version > 1000 {
		return Announcement{}, fmt.Errorf("a hello of protocol version %d", h.Version)
	}
	if h.Port <= 0 || h.Port > 65535 {
		return Announcement{}, fmt.Errorf("a hello naming port %d", h.Port)
	}
	return Announcement{ID: h.ID, Version: h.Version, Name: cleanName(h.Name), Arch: cleanName(h.Arch), Criu: cleanName(h.Criu)}, nil
}

// clientTLSAnyPeer is the configuration for asking a device at an address
// who it is: any certificate is taken (its hash is the ID the answer
// reports), and this device shows its own, as on every peer connection.
// Nothing is trusted because of it: every later connection is pinned.
func (id *Identity) clientTLSAnyPeer() *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{id.Cert},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // no CA; the certificate's hash is the answer
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("peer presented no certificate")
			}
			return nil
		},
	}
}

// SayHello dials addr (host:port), tells the device there who this one is
// (self), and returns its answer, whose ID is its certificate's, and the
// address it answered at.
func (id *Identity) SayHello(ctx context.Context, addr string, self Hello) (Hello, netip.AddrPort, error) {
	d := &tls.Dialer{Config: id.clientTLSAnyPeer(), NetDialer: &net.Dialer{Timeout: 3 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Hello{}, netip.AddrPort{}, err
	}
	conn := c.(*tls.Conn)
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	cs := conn.ConnectionState()
	peer, _ := PeerID(&cs)
	at, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	at = netip.AddrPortFrom(at.Addr().Unmap(), at.Port())
	if peer == id.ID {
		return Hello{ID: peer}, at, ErrSelf
	}

	body, _ := json.Marshal(self)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+HelloPath, bytes.NewReader(body))
	if err != nil {
		return Hello{}, at, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Close = true
	if err := req.Write(conn); err != nil {
		return Hello{}, at, err
	}
	// Whatever answers at a saved address may be anything: its headers
	// are bounded like its body.
	resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(conn, maxHello+maxPeerHeader)), req)
	if err != nil {
		return Hello{}, at, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHello))
	if err != nil {
		return Hello{}, at, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden {
			e.Error += " (is it an older Handoff? it must be updated to be found by address)"
		}
		return Hello{ID: peer}, at, fmt.Errorf("%s answered: %s", addr, e.Error)
	}
	var h Hello
	if err := json.Unmarshal(data, &h); err != nil {
		return Hello{ID: peer}, at, fmt.Errorf("%s answered a hello with garbage: %w", addr, err)
	}
	if h.ID != peer {
		return Hello{ID: peer}, at, fmt.Errorf("%s says it is %s, but its certificate is %s's", addr, h.ID.Short(), peer.Short())
	}
	return h, at, nil
}

// ErrSelf says an address leads to this very device.
var ErrSelf = errors.New("that address is this device")
