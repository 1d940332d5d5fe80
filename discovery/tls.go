package discovery

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ServerTLS is the configuration of this device's peer listener: it asks
// every client for a certificate (any: the device ID is checked per request,
// because an unknown device may still reach the pairing endpoint).
func (id *Identity) ServerTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// ClientTLS is the configuration for connecting to the device want: the
// connection fails unless the server's certificate hashes to want. The TLS
// handshake itself proves the server holds that certificate's key.
func (id *Identity) ClientTLS(want DeviceID) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{id.Cert},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // no CA: verified by pinning below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("peer presented no certificate")
			}
			if got := IDFromCert(raw[0]); got != want {
				return &PinError{Want: want, Got: got}
			}
			return nil
		},
	}
}

// PinError says a peer is not the device it was expected to be.
type PinError struct{ Want, Got DeviceID }

func (e *PinError) Error() string {
	return fmt.Sprintf("the peer is device %s, not %s: it may be impersonating it; connection refused", e.Got.Short(), e.Want.Short())
}

// PeerID returns the device ID of the other side of a TLS connection.
func PeerID(cs *tls.ConnectionState) (DeviceID, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return DeviceID{}, false
	}
	return IDFromCert(cs.PeerCertificates[0].Raw), true
}
