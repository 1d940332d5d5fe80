package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// Peers by address, for networks that drop multicast. The user saves an
// address (`handoff peers add HOST[:PORT]`); the daemon asks whoever
// answers there who it is (a hello, HelloPath) at start-up, whenever this
// machine's addresses or routes change, and every probeEvery while it
// answers (with a backoff while it does not). The answer goes into the same
// table as mDNS announcements, keyed by device ID, so a device seen both
// ways is one device. The hello also tells the device asked where this one
// is: it dials back (pinned, like any announced address) and lists this
// device too, so that it can send apps back without an address saved.
//
// An address is a place to look, not trust: the device found there is
// whatever its certificate says, and pairing and trust work as for any.

const (
	probeEvery    = 2 * time.Second        // a saved address that answers is asked again after this
	probeRetryMin = 250 * time.Millisecond // one that does not: after this, doubling…
	probeRetryMax = 5 * time.Second        // …up to this, unless the network changes: a device that restarts is found again within seconds
	probeTimeout  = 3 * time.Second
	// An address that answered a dial stays this long unless a dial fails
	// (a dial that hangs takes up to probeTimeout).
	dialledTTL = probeEvery + probeTimeout + time.Second
	// An address a hello came from stays this long without another.
	heardTTL = 2*probeEvery + probeTimeout
	// A change of addresses or routes is acted on once it settled.
	netSettle = 300 * time.Millisecond
	maxSaved  = 64
)

// SavedAddress is a place the user said a peer may be found, and what
// answered there last (shown while it is away, and how the user names it).
type SavedAddress struct {
	Addr  string    `json:"addr"` // host:port
	Added time.Time `json:"added"`
	ID    DeviceID  `json:"id,omitzero"`
	Name  string    `json:"name,omitempty"`
}

// AddressState is a saved address and what its last dial found.
type AddressState struct {
	SavedAddress
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// savedAddr is a saved address and its prober. Guarded by d.amu.
type savedAddr struct {
	AddressState
	at     netip.AddrPort // where ID answered last
	wake   chan struct{}  // dial now
	cancel context.CancelFunc
}

// ErrNoAddress says no saved address matches.
var ErrNoAddress = errors.New("no such saved address")

// NormalizeAddress turns what a user typed (host, host:port, an IPv6
// address with or without brackets) into host:port, port defaulting to
// defaultPort.
func NormalizeAddress(s string, defaultPort int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("no address given")
	}
	host, port := s, strconv.Itoa(defaultPort)
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		host = a.String() // a bare IPv6 address
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() || a.IsMulticast() {
			return "", fmt.Errorf("%q is not a device's address", s)
		}
		return netip.AddrPortFrom(a.Unmap(), uint16(n)).String(), nil
	}
	if !validHostname(host) {
		return "", fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), port), nil
}

func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func loadAddresses(path string) ([]SavedAddress, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []SavedAddress
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("saved peer addresses %s are damaged: %w", path, err)
	}
	if len(list) > maxSaved {
		list = list[:maxSaved]
	}
	return list, nil
}

// saveAddressesLocked writes the saved addresses. Called with d.amu held.
func (d *Discovery) saveAddressesLocked() error {
	if d.cfg.AddressFile == "" {
		return nil
	}
	list := make([]SavedAddress, 0, len(d.book))
	for _, s := range d.book {
		list = append(list, s.SavedAddress)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Addr < list[j].Addr })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(d.cfg.AddressFile, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save peer addresses: %w", err)
	}
	return nil
}

// startProber adds a saved address to the book and dials it from now on,
// first after wait. Called with d.amu held.
func (d *Discovery) startProberLocked(a SavedAddress, wait time.Duration) *savedAddr {
	ctx, cancel := context.WithCancel(d.ctx)
	s := &savedAddr{AddressState: AddressState{SavedAddress: a}, wake: make(chan struct{}, 1), cancel: cancel}
	d.book[a.Addr] = s
	if !d.closed { // Close waits for the probers started before it
		d.done.Add(1)
		go d.prober(ctx, s, wait)
	}
	return s
}

// prober dials a saved address until it is removed or discovery closes:
// every probeEvery while it answers, with a growing wait while it does
// not, and at once when the network changes.
func (d *Discovery) prober(ctx context.Context, s *savedAddr, wait time.Duration) {
	defer d.done.Done()
	retryMin, retryMax := d.cfg.RetryMin, d.cfg.RetryMax
	if retryMin == 0 {
		retryMin = probeRetryMin
	}
	if retryMax == 0 {
		retryMax = max(probeRetryMax, retryMin)
	}
	backoff := wait
	changed := d.networkChange()
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-changed:
			backoff = 0
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			return
		}
		changed = d.networkChange() // taken before the dial: a change during it counts
		if d.probe(ctx, s) {
			backoff, wait = 0, probeEvery
		} else {
			backoff = min(max(2*backoff, retryMin), retryMax)
			wait = backoff
		}
	}
}

// dial says hello to a saved address.
func (d *Discovery) dial(ctx context.Context, addr string) (Hello, netip.AddrPort, error) {
	if d.cfg.Hello == nil {
		return Hello{}, netip.AddrPort{}, errors.New("no way to dial peers")
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return d.cfg.Hello(ctx, addr, HelloOf(d.cfg.Self, d.cfg.Port))
}

// probe dials a saved address and records what answered.
func (d *Discovery) probe(ctx context.Context, s *savedAddr) bool {
	h, at, err := d.dial(ctx, s.Addr)
	if ctx.Err() != nil {
		return false // removed, or closing: nothing to record
	}
	return d.recordProbe(s, h, at, err)
}

// recordProbe puts what a dial of a saved address found in the book and
// the table.
func (d *Discovery) recordProbe(s *savedAddr, h Hello, at netip.AddrPort, err error) bool {
	now := time.Now()
	var a Announcement
	if err == nil {
		a, err = h.announcement()
	}
	d.amu.Lock()
	if d.book[s.Addr] != s { // removed meanwhile
		d.amu.Unlock()
		return false
	}
	prevID, prevAt, wasOnline := s.ID, s.at, s.Online
	changed := false
	if err != nil {
		s.Online, s.Error = false, err.Error()
	} else {
		s.Online, s.Error, s.LastSeen, s.at = true, "", now, at
		changed = s.ID != a.ID || s.Name != a.Name
		s.ID, s.Name = a.ID, a.Name
	}
	if changed {
		if serr := d.saveAddressesLocked(); serr != nil {
			d.log.Warn("save peer addresses", "err", serr)
		}
	}
	d.amu.Unlock()

	switch {
	case err == nil:
		if wasOnline && (prevID != a.ID || prevAt != at) {
			d.undial(prevID, prevAt) // another device answers there now, or it moved
		}
		d.dialled(a, at, now)
	case wasOnline:
		d.log.Debug("a saved peer address stopped answering", "addr", s.Addr, "err", err)
		d.undial(prevID, prevAt)
	default:
		d.log.Debug("a saved peer address does not answer", "addr", s.Addr, "err", err)
	}
	return err == nil
}

// undial says a dial no longer reaches device id at an address: unless
// something else keeps that address (mDNS, a hello from it), it goes, and
// with the last one the device goes offline at once.
func (d *Discovery) undial(id DeviceID, at netip.AddrPort) {
	d.mu.Lock()
	e := d.peers[id]
	var events []peerEvent
	if e != nil {
		if aa := e.addr(at); aa != nil {
			aa.dialledUntil = time.Time{}
			events, _ = d.expireEntry(e, time.Now())
		}
	}
	d.mu.Unlock()
	d.notifyAll(events)
}

// networkChange returns a channel closed at the next change of this
// machine's addresses or routes.
func (d *Discovery) networkChange() <-chan struct{} {
	d.amu.Lock()
	defer d.amu.Unlock()
	return d.netChanged
}

// networkChanged wakes every prober.
func (d *Discovery) networkChanged() {
	d.amu.Lock()
	close(d.netChanged)
	d.netChanged = make(chan struct{})
	n := len(d.book)
	d.amu.Unlock()
	if n > 0 {
		d.log.Debug("the network changed: dialling saved peer addresses", "addresses", n)
	}
}

// watchNetwork hears netlink's address and route changes in this
// machine's network namespace and, once they settle, dials the saved
// addresses again: a laptop that joined a network finds its peers at once.
func (d *Discovery) watchNetwork(ctx context.Context) {
	defer d.done.Done()
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	errs := func(err error) { d.log.Debug("netlink", "err", err) }
	if err := netlink.AddrSubscribeWithOptions(addrs, ctx.Done(), netlink.AddrSubscribeOptions{ErrorCallback: errs}); err != nil {
		d.log.Warn("cannot watch the network's addresses; saved peers are dialled on a timer only", "err", err)
		addrs = nil
	}
	if err := netlink.RouteSubscribeWithOptions(routes, ctx.Done(), netlink.RouteSubscribeOptions{ErrorCallback: errs}); err != nil {
		d.log.Warn("cannot watch the network's routes; saved peers are dialled on a timer only", "err", err)
		routes = nil
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-addrs:
			if !ok {
				addrs = nil
				continue
			}
			settle.Reset(netSettle)
		case _, ok := <-routes:
			if !ok {
				routes = nil
				continue
			}
			settle.Reset(netSettle)
		case <-settle.C:
			d.networkChanged()
		}
	}
}

// AddAddress saves an address where a peer may be found and dials it at
// once; the state says what answered. A device that does not answer now
// stays saved and is dialled again later; this device's own address is
// refused.
func (d *Discovery) AddAddress(ctx context.Context, addr string) (AddressState, error) {
	norm, err := NormalizeAddress(addr, d.defaultPort())
	if err != nil {
		return AddressState{}, err
	}
	h, at, dialErr := d.dial(ctx, norm)
	if errors.Is(dialErr, ErrSelf) {
		return AddressState{}, fmt.Errorf("%s: %w", norm, ErrSelf)
	}
	if ctx.Err() != nil {
		return AddressState{}, ctx.Err()
	}
	d.amu.Lock()
	s := d.book[norm]
	if s == nil {
		if len(d.book) >= maxSaved {
			d.amu.Unlock()
			return AddressState{}, fmt.Errorf("%d peer addresses are saved already; remove one first (`handoff peers remove`)", maxSaved)
		}
		next := probeEvery
		if dialErr != nil {
			next = max(d.cfg.RetryMin, probeRetryMin)
		}
		s = d.startProberLocked(SavedAddress{Addr: norm, Added: time.Now().UTC()}, next)
		if err := d.saveAddressesLocked(); err != nil {
			delete(d.book, norm)
			s.cancel()
			d.amu.Unlock()
			return AddressState{}, err
		}
	}
	d.amu.Unlock()
	d.recordProbe(s, h, at, dialErr)
	d.amu.Lock()
	defer d.amu.Unlock()
	return s.AddressState, nil
}

// RemoveAddress forgets the saved addresses matching key: the address
// itself, or the ID, short ID or name of the device last found there. The
// device leaves the list unless mDNS or its own hellos keep it.
func (d *Discovery) RemoveAddress(key string) ([]SavedAddress, error) {
	norm, _ := NormalizeAddress(key, d.defaultPort())
	id, idErr := ParseDeviceID(key)
	d.amu.Lock()
	var gone []*savedAddr
	for k, s := range d.book {
		if k == norm || (idErr == nil && s.ID == id) || (!s.ID.IsZero() && strings.EqualFold(s.ID.Short(), key)) ||
			(s.Name != "" && strings.EqualFold(s.Name, key)) {
			gone = append(gone, s)
			delete(d.book, k)
		}
	}
	var err error
	if len(gone) > 0 {
		err = d.saveAddressesLocked()
	}
	d.amu.Unlock()
	if len(gone) == 0 {
		return nil, fmt.Errorf("%w %q (`handoff peers` lists them)", ErrNoAddress, key)
	}
	var out []SavedAddress
	for _, s := range gone {
		s.cancel()
		if s.Online {
			d.undial(s.ID, s.at)
		}
		out = append(out, s.SavedAddress)
	}
	return out, err
}

// Addresses lists the saved addresses and what their last dials found.
func (d *Discovery) Addresses() []AddressState {
	d.amu.Lock()
	out := make([]AddressState, 0, len(d.book))
	for _, s := range d.book {
		out = append(out, s.AddressState)
	}
	d.amu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

func (d *Discovery) defaultPort() int {
	if d.cfg.DefaultPort > 0 {
		return d.cfg.DefaultPort
	}
	return d.cfg.Port
}

// ServeHello answers a hello on the peer channel (mounted at HelloPath
// behind Identity.PeerServer, which names the caller): it says who this
// device is, and takes the caller in as it would an mDNS announcement from
// the address the hello came from, to be verified by a pinned dial.
func (d *Discovery) ServeHello(w http.ResponseWriter, r *http.Request) {
	from, ok := RequestPeer(r.Context())
	if !ok {
		peerError(w, http.StatusUnauthorized, "a client certificate is required")
		return
	}
	var h Hello
	data, err := io.ReadAll(io.LimitReader(r.Body, maxHello+1))
	if err == nil && len(data) > maxHello {
		err = errors.New("too long")
	}
	if err == nil {
		err = json.Unmarshal(data, &h)
	}
	var a Announcement
	if err == nil {
		a, err = h.announcement()
	}
	if err == nil && h.ID != from {
		err = fmt.Errorf("it names device %s, but its certificate is %s's", h.ID.Short(), from.Short())
	}
	if err != nil {
		peerError(w, http.StatusBadRequest, "bad hello: "+err.Error())
		return
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		d.heard(a, []netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), uint16(h.Port))}, time.Now(), heardTTL)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(HelloOf(d.cfg.Self, d.cfg.Port))
}

// Saved says whether a saved address last led to device id, and which.
func (d *Discovery) Saved(id DeviceID) []string {
	d.amu.Lock()
	defer d.amu.Unlock()
	var out []string
	for _, s := range d.book {
		if s.ID == id {
			out = append(out, s.Addr)
		}
	}
	slices.Sort(out)
	return out
}
