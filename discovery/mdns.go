package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"
	"golang.org/x/time/rate"
)

// ServiceType is the DNS-SD service Handoff announces.
const ServiceType = "_handoff._tcp"

// Browse timing. zeroconf reports a service once per Browse call and drops
// goodbye packets without telling, so peers are browsed in short cycles and
// a peer that stops answering goes offline: a clean stop (or a crash) shows
// within about 2.5 s.
const (
	browseCycle  = 800 * time.Millisecond
	offlineAfter = 2 * browseCycle
)

// Limits on what strangers on the LAN can make us hold and do. Anyone can
// send mDNS answers naming any device ID and any address, as fast as they
// like: the table, the addresses kept per device and the verification dials
// (which go to addresses a stranger chose) are all bounded, and trusted
// devices keep their place whatever strangers announce.
const (
	maxPeers        = 128              // devices in the table
	maxAddrsPerPeer = 8                // addresses kept per device
	forgetAfter     = 10 * time.Minute // an offline device leaves the table
	maxVerifyDials  = 4                // verification dials at once, one kept for trusted devices
	verifyRate      = 5                // dials per second to strangers, and as many to trusted devices…
	verifyBurst     = 10               // …after a burst of this many
	maxVerifyQueue  = 64               // addresses waiting for a dial, per queue
	verifyTimeout   = 3 * time.Second
	retryFirst      = time.Second // after a failed dial, then doubling…
	retryMax        = time.Minute // …up to this
)

// Peer is a device seen on the network.
type Peer struct {
	ID       DeviceID     `json:"id"`
	Name     string       `json:"name"`
	Addrs    []netip.Addr `json:"addrs"`
	Port     int          `json:"port"`
	Online   bool         `json:"online"`
	LastSeen time.Time    `json:"last_seen"`
	Version  int          `json:"version"`
	Arch     string       `json:"arch"`
	Criu     string       `json:"criu"`
	// Impostor: its ID is announced only from addresses where another
	// certificate answers. It clears as soon as one address proves to be
	// the real device.
	Impostor bool `json:"impostor,omitempty"`
}

// Endpoint is the first address to reach the peer at.
func (p Peer) Endpoint() string {
	if len(p.Addrs) == 0 {
		return ""
	}
	return netip.AddrPortFrom(p.Addrs[0], uint16(p.Port)).String()
}

// Change kinds reported to Config.OnChange.
const (
	PeerAppeared = "appeared"
	PeerChanged  = "changed"
	PeerLeft     = "left"
)

// Config configures announcing and browsing.
type Config struct {
	Self       Announcement
	Port       int             // where this device's peer channel listens
	Interfaces []net.Interface // nil: every multicast interface
	// OnChange is called (without locks held) when a peer appears, changes
	// or goes offline.
	OnChange func(p Peer, kind string)
	// Verify, when set, checks each address a peer is announced at (the
	// daemon dials it with the pinned TLS config). A *PinError means another
	// device answers there: that address is not used. Other errors leave the
	// address unproven and it is tried again later.
	Verify func(ctx context.Context, p Peer) error
	// Trusted tells which devices the user trusts: strangers never push
	// them out of the table and their addresses are verified first.
	Trusted func(DeviceID) bool
	Logger  *slog.Logger

	// NoMDNS neither announces nor browses: peers come from saved
	// addresses and hellos only (direct.go).
	NoMDNS bool
	// Hello asks the device at a saved address who it is (see
	// Identity.SayHello); peers by address need it.
	Hello func(ctx context.Context, addr string, self Hello) (Hello, netip.AddrPort, error)
	// AddressFile keeps the saved addresses; "" keeps them in memory.
	AddressFile string
	// DefaultPort is the peer port of a saved address that names none.
	DefaultPort int
	// RetryMin and RetryMax bound the wait, doubling from one to the
	// other, before a saved address that did not answer is dialled again
	// (probeRetryMin and probeRetryMax when zero); a change of the
	// network's addresses or routes dials at once.
	RetryMin, RetryMax time.Duration
}

// Discovery announces this device and keeps the table of peers.
type Discovery struct {
	cfg    Config
	log    *slog.Logger
	server *zeroconf.Server
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu    sync.Mutex
	peers map[DeviceID]*entry
	// Addresses waiting for a verification dial; trusted devices' first.
	trustedQueue, strangerQueue []verifyJob
	wake                        chan struct{} // a job was queued
	wakeTrusted                 chan struct{} // a trusted device's job was queued
	strangerDials, trustedDials *rate.Limiter

	// Saved addresses (direct.go), under their own lock: a dial's result
	// takes amu, then mu; never the other way round.
	ctx        context.Context // ends with Close; probers run under it
	amu        sync.Mutex
	book       map[string]*savedAddr // by normalised address
	closed     bool                  // Close began: no more probers
	netChanged chan struct{}         // closed and replaced when the network changes
}

// addrProof is what a verification dial found at an address.
type addrProof int

const (
	unproven addrProof = iota // not dialled yet, or no answer
	proven                    // the announced device's certificate answered
	refused                   // another certificate answered: an impostor
)

// announcedAddr is one address a device was announced at, with what that
// announcement said: a stranger announcing a trusted ID cannot rename it,
// because the view is taken from the best proven address.
type announcedAddr struct {
	at       netip.AddrPort
	ann      Announcement
	lastSeen time.Time
	// The address stays while either holds: heardUntil is pushed on by
	// announcements and hellos from it, dialledUntil by a saved address's
	// dials that reached it (and cleared by one that did not).
	heardUntil, dialledUntil time.Time
	proof                    addrProof
	queued                   bool      // a verification is queued or running
	dialing                  bool      // it is running
	failures                 int       // failed dials in a row
	nextTry                  time.Time // no new dial before
}

// entry is a device in the table.
type entry struct {
	id    DeviceID
	addrs []*announcedAddr
	// reported: OnChange heard it appear (it waits for the first
	// verification when Verify is set).
	reported bool
	view     Peer // what Peers() returns, rebuilt by refresh
}

type verifyJob struct {
	id      DeviceID
	at      netip.AddrPort
	trusted bool
}

// Start announces this device and starts browsing for peers (unless
// NoMDNS), and dials the saved addresses.
func Start(cfg Config) (*Discovery, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := newDiscovery(cfg)
	book, err := loadAddresses(cfg.AddressFile)
	if err != nil {
		return nil, err
	}
	if !cfg.NoMDNS {
		instance := fmt.Sprintf("%s (%s)", cleanName(cfg.Self.Name), cfg.Self.ID.Short())
		server, err := zeroconf.Register(instance, ServiceType, "local.", cfg.Port, cfg.Self.TXT(), cfg.Interfaces)
		if err != nil {
			return nil, fmt.Errorf("announce on the network (mDNS): %w", err)
		}
		server.TTL(uint32(4 * offlineAfter / time.Second))
		d.server = server
	}
	d.done.Add(2 + maxVerifyDials)
	if d.server != nil {
		go d.browse(d.ctx)
	} else {
		go d.expireEvery(d.ctx, browseCycle)
	}
	go d.watchNetwork(d.ctx)
	go d.verifier(d.ctx, true) // strangers cannot keep trusted devices waiting
	for range maxVerifyDials - 1 {
		go d.verifier(d.ctx, false)
	}
	d.amu.Lock()
	for _, a := range book {
		d.startProberLocked(a, 0) // dialled at start-up
	}
	d.amu.Unlock()
	return d, nil
}

func newDiscovery(cfg Config) *Discovery {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Discovery{cfg: cfg, log: cfg.Logger.With("component", "discovery"),
		peers: map[DeviceID]*entry{}, wake: make(chan struct{}, 1), wakeTrusted: make(chan struct{}, 1),
		strangerDials: rate.NewLimiter(verifyRate, verifyBurst), trustedDials: rate.NewLimiter(verifyRate, verifyBurst),
		ctx: ctx, cancel: cancel, book: map[string]*savedAddr{}, netChanged: make(chan struct{})}
}

// Close says goodbye on the network and stops browsing and dialling.
func (d *Discovery) Close() {
	if d.server != nil {
		d.server.Shutdown() // sends the goodbye (TTL 0) records
	}
	d.amu.Lock()
	d.closed = true
	d.amu.Unlock()
	d.cancel()
	d.done.Wait()
}

// Peers returns every peer seen, online first, then by name.
func (d *Discovery) Peers() []Peer {
	d.mu.Lock()
	out := make([]Peer, 0, len(d.peers))
	for _, e := range d.peers {
		out = append(out, e.view.clone())
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Online != out[j].Online {
			return out[i].Online
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Peer returns one peer.
func (d *Discovery) Peer(id DeviceID) (Peer, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.peers[id]
	if !ok {
		return Peer{}, false
	}
	return e.view.clone(), true
}

func (p Peer) clone() Peer {
	p.Addrs = slices.Clone(p.Addrs)
	return p
}

func (d *Discovery) browse(ctx context.Context) {
	defer d.done.Done()
	for ctx.Err() == nil {
		cycle, cancel := context.WithTimeout(ctx, browseCycle)
		entries := make(chan *zeroconf.ServiceEntry, 32)
		var opts []zeroconf.ClientOption
		if len(d.cfg.Interfaces) > 0 {
			opts = append(opts, zeroconf.SelectIfaces(d.cfg.Interfaces))
		}
		resolver, err := zeroconf.NewResolver(opts...)
		if err == nil {
			err = resolver.Browse(cycle, ServiceType, "local.", entries)
		}
		if err != nil {
			d.log.Debug("browse", "err", err)
			<-cycle.Done()
		} else {
			for e := range entries { // closed when the cycle ends
				d.seenEntry(e)
			}
		}
		cancel()
		d.expire(time.Now())
	}
}

// seenEntry records an answer from the network.
func (d *Discovery) seenEntry(e *zeroconf.ServiceEntry) {
	a, err := ParseTXT(e.Text)
	if err != nil {
		d.log.Debug("ignoring a malformed announcement", "instance", e.Instance, "err", err)
		return
	}
	if e.Port <= 0 || e.Port > 65535 {
		return
	}
	var at []netip.AddrPort
	for _, ip := range append(append([]net.IP{}, e.AddrIPv4...), e.AddrIPv6...) {
		if addr, ok := netip.AddrFromSlice(ip); ok && !addr.IsUnspecified() && !addr.IsMulticast() {
			at = append(at, netip.AddrPortFrom(addr.Unmap(), uint16(e.Port)))
		}
	}
	d.seen(a, at, time.Now())
}

// seen records that a was announced on mDNS at the given addresses.
func (d *Discovery) seen(a Announcement, at []netip.AddrPort, now time.Time) {
	d.heard(a, at, now, offlineAfter)
}

// heard records that a said it is at the given addresses (an mDNS answer,
// a hello): they stay for ttl unless heard again, once a dial proved them.
func (d *Discovery) heard(a Announcement, at []netip.AddrPort, now time.Time, ttl time.Duration) {
	d.record(a, at, now, func(e *entry, aa *announcedAddr) {
		aa.heardUntil = later(aa.heardUntil, now.Add(ttl))
		d.queueVerify(e, aa, now)
	})
}

// dialled records that a answered at a saved address: the pinned TLS
// handshake proved the address, which stays until a dial fails.
func (d *Discovery) dialled(a Announcement, at netip.AddrPort, now time.Time) {
	d.record(a, []netip.AddrPort{at}, now, func(e *entry, aa *announcedAddr) {
		aa.proof, aa.failures, aa.nextTry = proven, 0, time.Time{}
		aa.dialledUntil = now.Add(dialledTTL)
	})
}

// record takes in what was learnt of device a at some addresses; mark
// updates each address. It keeps the table's bounds.
func (d *Discovery) record(a Announcement, at []netip.AddrPort, now time.Time, mark func(*entry, *announcedAddr)) {
	if a.ID == d.cfg.Self.ID || len(at) == 0 {
		return
	}
	if len(at) > maxAddrsPerPeer {
		at = at[:maxAddrsPerPeer]
	}
	var events []peerEvent
	d.mu.Lock()
	e, ok := d.peers[a.ID]
	if !ok {
		if len(d.peers) >= maxPeers {
			evicted := d.evictStalestStranger()
			if evicted == nil {
				d.mu.Unlock()
				d.log.Debug("peer table full of trusted devices; ignoring a new one", "id", a.ID.Short())
				return
			}
			if evicted.reported && evicted.view.Online {
				gone := evicted.view.clone()
				gone.Online = false
				events = append(events, peerEvent{gone, PeerLeft})
			}
		}
		e = &entry{id: a.ID}
		d.peers[a.ID] = e
	}
	before := e.view.clone()
	for _, ap := range at {
		aa := e.addr(ap)
		if aa == nil {
			if aa = e.addAddr(ap); aa == nil {
				continue // its addresses are full of proven ones
			}
			if d.cfg.Verify == nil {
				aa.proof = proven
			}
		}
		aa.ann, aa.lastSeen = a, now
		mark(e, aa)
	}
	e.refresh(d.cfg.Verify == nil)
	events = append(events, d.changeEvents(e, before)...)
	if !e.reported && e.view.Online && e.proven() {
		e.reported = true
		events = append(events, peerEvent{e.view.clone(), PeerAppeared})
	}
	d.mu.Unlock()
	d.notifyAll(events)
}

// proven says whether one of e's addresses is proven.
func (e *entry) proven() bool {
	return slices.ContainsFunc(e.addrs, func(aa *announcedAddr) bool { return aa.proof == proven })
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// evictStalestStranger removes the untrusted device heard from least
// recently, offline ones first, and returns it (nil: every one is trusted).
func (d *Discovery) evictStalestStranger() *entry {
	var victim *entry
	for _, e := range d.peers {
		if d.trusted(e.id) {
			continue
		}
		if victim == nil || e.view.Online != victim.view.Online && !e.view.Online ||
			e.view.Online == victim.view.Online && e.view.LastSeen.Before(victim.view.LastSeen) {
			victim = e
		}
	}
	if victim != nil {
		delete(d.peers, victim.id)
		d.log.Debug("peer table full; forgetting a stranger", "id", victim.id.Short(), "name", victim.view.Name)
	}
	return victim
}

func (d *Discovery) trusted(id DeviceID) bool {
	return d.cfg.Trusted != nil && d.cfg.Trusted(id)
}

func (e *entry) addr(ap netip.AddrPort) *announcedAddr {
	for _, aa := range e.addrs {
		if aa.at == ap {
			return aa
		}
	}
	return nil
}

// addAddr adds an address, making room by dropping the stalest one not
// proven; it returns nil when every kept address is proven.
func (e *entry) addAddr(ap netip.AddrPort) *announcedAddr {
	if len(e.addrs) >= maxAddrsPerPeer {
		stalest := -1
		for i, aa := range e.addrs {
			if aa.proof != proven && (stalest < 0 || aa.lastSeen.Before(e.addrs[stalest].lastSeen)) {
				stalest = i
			}
		}
		if stalest < 0 {
			return nil
		}
		e.addrs = slices.Delete(e.addrs, stalest, stalest+1)
	}
	aa := &announcedAddr{at: ap}
	e.addrs = append(e.addrs, aa)
	return aa
}

// refresh rebuilds the view: proven addresses first (most recently heard
// first), then unproven ones; never an address where another device
// answered. Name and the rest come from the best address's announcement.
func (e *entry) refresh(noVerify bool) {
	var usable []*announcedAddr
	anyRefused := false
	var last time.Time
	for _, aa := range e.addrs {
		if aa.lastSeen.After(last) {
			last = aa.lastSeen
		}
		if aa.proof == refused {
			anyRefused = true
			continue
		}
		usable = append(usable, aa)
	}
	sort.SliceStable(usable, func(i, j int) bool {
		if (usable[i].proof == proven) != (usable[j].proof == proven) {
			return usable[i].proof == proven
		}
		return usable[i].lastSeen.After(usable[j].lastSeen)
	})
	v := Peer{ID: e.id, Online: len(e.addrs) > 0, LastSeen: last}
	if !v.Online {
		v.LastSeen = e.view.LastSeen
	}
	if len(usable) > 0 {
		best := usable[0]
		v.Name, v.Version, v.Arch, v.Criu = best.ann.Name, best.ann.Version, best.ann.Arch, best.ann.Criu
		v.Port = int(best.at.Port())
		for _, aa := range usable {
			if aa.at.Port() == best.at.Port() {
				v.Addrs = append(v.Addrs, aa.at.Addr())
			}
		}
		v.Impostor = !noVerify && best.proof != proven && anyRefused
	} else {
		// Only impostors announce it (or nothing does): keep what we knew
		// of the real device, without an address to reach it at.
		v.Name, v.Version, v.Arch, v.Criu = e.view.Name, e.view.Version, e.view.Arch, e.view.Criu
		v.Impostor = anyRefused
		if v.Name == "" && len(e.addrs) > 0 {
			v.Name = e.addrs[0].ann.Name
		}
	}
	e.view = v
}

// queueVerify queues a dial to an address not yet proven, unless one is
// queued or it failed recently. Strangers' dials wait in a bounded queue:
// when it is full the address is tried at a later announcement.
func (d *Discovery) queueVerify(e *entry, aa *announcedAddr, now time.Time) {
	if d.cfg.Verify == nil || aa.proof == proven || aa.queued || now.Before(aa.nextTry) {
		return
	}
	job := verifyJob{id: e.id, at: aa.at, trusted: d.trusted(e.id)}
	queue := &d.strangerQueue
	if job.trusted {
		queue = &d.trustedQueue
	}
	if len(*queue) >= maxVerifyQueue {
		// Jobs of devices and addresses forgotten since they were queued
		// (pushed out by a flood) must not hold the places.
		*queue = slices.DeleteFunc(*queue, func(j verifyJob) bool { return !d.stillQueued(j) })
	}
	if len(*queue) >= maxVerifyQueue {
		return // tried again at a later announcement
	}
	*queue = append(*queue, job)
	aa.queued = true
	d.wakeVerifiers()
}

// wakeVerifiers tells idle verifiers that jobs wait. Called with d.mu held.
func (d *Discovery) wakeVerifiers() {
	if len(d.trustedQueue) > 0 {
		select {
		case d.wakeTrusted <- struct{}{}:
		default:
		}
	}
	if len(d.trustedQueue)+len(d.strangerQueue) > 0 {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// nextJob takes the next address to dial, trusted devices' first, skipping
// addresses forgotten since they were queued.
func (d *Discovery) nextJob(trustedOnly bool) (verifyJob, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.wakeVerifiers() // let another verifier take the next one
	for {
		var job verifyJob
		switch {
		case len(d.trustedQueue) > 0:
			job, d.trustedQueue = d.trustedQueue[0], d.trustedQueue[1:]
		case len(d.strangerQueue) > 0 && !trustedOnly:
			job, d.strangerQueue = d.strangerQueue[0], d.strangerQueue[1:]
		default:
			return job, false
		}
		if d.stillQueued(job) {
			d.peers[job.id].addr(job.at).dialing = true
			return job, true
		}
	}
}

// stillQueued says whether the address of job is still waiting for it.
func (d *Discovery) stillQueued(job verifyJob) bool {
	if e, ok := d.peers[job.id]; ok {
		if aa := e.addr(job.at); aa != nil && aa.queued && !aa.dialing {
			return true
		}
	}
	return false
}

// verifier runs verification dials one at a time; strangers' dials and
// trusted devices' dials each at most verifyRate a second. The trustedOnly
// verifier stays free for trusted devices while strangers' dials hang.
func (d *Discovery) verifier(ctx context.Context, trustedOnly bool) {
	defer d.done.Done()
	wake := d.wake
	if trustedOnly {
		wake = d.wakeTrusted
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		for {
			job, ok := d.nextJob(trustedOnly)
			if !ok {
				break
			}
			limiter := d.strangerDials
			if job.trusted {
				limiter = d.trustedDials
			}
			if err := limiter.Wait(ctx); err != nil {
				return
			}
			d.verify(ctx, job)
		}
	}
}

// verify dials one announced address; only a certificate matching the
// announced ID proves it.
func (d *Discovery) verify(ctx context.Context, job verifyJob) {
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	err := d.cfg.Verify(vctx, Peer{ID: job.id, Addrs: []netip.Addr{job.at.Addr()}, Port: int(job.at.Port())})
	cancel()
	if ctx.Err() != nil {
		return
	}
	var pin *PinError
	impostor := errors.As(err, &pin)
	if impostor {
		d.log.Warn("a device announces an ID its certificate does not have; ignoring that address",
			"id", job.id.Short(), "addr", job.at, "err", err)
	} else if err != nil {
		d.log.Debug("could not verify a peer's address", "id", job.id.Short(), "addr", job.at, "err", err)
	}
	now := time.Now()
	d.mu.Lock()
	e, ok := d.peers[job.id]
	var aa *announcedAddr
	if ok {
		aa = e.addr(job.at)
	}
	if aa == nil { // forgotten meanwhile
		d.mu.Unlock()
		return
	}
	aa.queued, aa.dialing = false, false
	switch {
	case err == nil:
		aa.proof, aa.failures = proven, 0
	case impostor:
		aa.proof = refused
	default:
		aa.proof = unproven
	}
	if err != nil {
		aa.nextTry = now.Add(min(retryFirst<<min(aa.failures, 8), retryMax))
		aa.failures++
	}
	before := e.view.clone()
	e.refresh(false)
	events := d.changeEvents(e, before)
	if !e.reported && e.view.Online {
		e.reported = true
		events = []peerEvent{{e.view.clone(), PeerAppeared}}
	}
	d.mu.Unlock()
	d.notifyAll(events)
}

// expire forgets addresses that stopped answering, so a device whose
// addresses all went quiet goes offline, and forgets devices offline for
// long.
func (d *Discovery) expire(now time.Time) {
	var events []peerEvent
	d.mu.Lock()
	for id, e := range d.peers {
		ev, forget := d.expireEntry(e, now)
		if forget {
			delete(d.peers, id)
			continue
		}
		events = append(events, ev...)
	}
	d.mu.Unlock()
	d.notifyAll(events)
}

// expireEntry drops e's addresses that nothing keeps any more; forget says
// e itself was offline for long. Called with d.mu held.
func (d *Discovery) expireEntry(e *entry, now time.Time) (events []peerEvent, forget bool) {
	before := e.view.clone()
	e.addrs = slices.DeleteFunc(e.addrs, func(aa *announcedAddr) bool {
		return now.After(aa.heardUntil) && now.After(aa.dialledUntil)
	})
	e.refresh(d.cfg.Verify == nil)
	if !e.view.Online && now.Sub(e.view.LastSeen) > forgetAfter {
		return nil, true
	}
	return d.changeEvents(e, before), false
}

// expireEvery runs expire when there is no browse loop to run it.
func (d *Discovery) expireEvery(ctx context.Context, every time.Duration) {
	defer d.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.expire(now)
		}
	}
}

type peerEvent struct {
	peer Peer
	kind string
}

// changeEvents says how e's view changed since before. A device waiting
// for its first verification is not reported yet.
func (d *Discovery) changeEvents(e *entry, before Peer) []peerEvent {
	v := e.view
	switch {
	case before.Online && !v.Online:
		if !e.reported {
			return nil
		}
		e.reported = false
		return []peerEvent{{v.clone(), PeerLeft}}
	case !before.Online && v.Online:
		if d.cfg.Verify != nil {
			return nil // reported once an address is verified
		}
		e.reported = true
		return []peerEvent{{v.clone(), PeerAppeared}}
	case !e.reported:
		return nil
	case v.Name != before.Name || v.Port != before.Port || !slices.Equal(v.Addrs, before.Addrs) ||
		v.Criu != before.Criu || v.Impostor != before.Impostor:
		return []peerEvent{{v.clone(), PeerChanged}}
	}
	return nil
}

func (d *Discovery) notifyAll(events []peerEvent) {
	for _, ev := range events {
		d.notify(ev.peer, ev.kind)
	}
}

func (d *Discovery) notify(p Peer, kind string) {
	d.log.Debug("peer "+kind, "name", p.Name, "id", p.ID.Short(), "addr", p.Endpoint(), "impostor", p.Impostor)
	if d.cfg.OnChange != nil {
		d.cfg.OnChange(p, kind)
	}
}
