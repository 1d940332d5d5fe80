package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"
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
	// Impostor: it announced a device ID its certificate does not have.
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
	// Verify, when set, checks a newly seen peer (the daemon dials it with
	// the pinned TLS config); an error marks the peer an impostor.
	Verify func(ctx context.Context, p Peer) error
	Logger *slog.Logger
}

// Discovery announces this device and keeps the table of peers.
type Discovery struct {
	cfg    Config
	log    *slog.Logger
	server *zeroconf.Server
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	peers map[DeviceID]*Peer
}

// Start announces this device and starts browsing for peers.
func Start(cfg Config) (*Discovery, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	instance := fmt.Sprintf("%s (%s)", cleanName(cfg.Self.Name), cfg.Self.ID.Short())
	server, err := zeroconf.Register(instance, ServiceType, "local.", cfg.Port, cfg.Self.TXT(), cfg.Interfaces)
	if err != nil {
		return nil, fmt.Errorf("announce on the network (mDNS): %w", err)
	}
	server.TTL(uint32(4 * offlineAfter / time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	d := &Discovery{cfg: cfg, log: cfg.Logger.With("component", "discovery"), server: server,
		cancel: cancel, done: make(chan struct{}), peers: map[DeviceID]*Peer{}}
	go d.browse(ctx)
	return d, nil
}

// Close says goodbye on the network and stops browsing.
func (d *Discovery) Close() {
	d.server.Shutdown() // sends the goodbye (TTL 0) records
	d.cancel()
	<-d.done
}

// Peers returns every peer seen, online first, then by name.
func (d *Discovery) Peers() []Peer {
	d.mu.Lock()
	out := make([]Peer, 0, len(d.peers))
	for _, p := range d.peers {
		out = append(out, *p)
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
	p, ok := d.peers[id]
	if !ok {
		return Peer{}, false
	}
	return *p, true
}

func (d *Discovery) browse(ctx context.Context) {
	defer close(d.done)
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
				d.seen(ctx, e)
			}
		}
		cancel()
		d.expire(time.Now())
	}
}

// seen records an answer from the network.
func (d *Discovery) seen(ctx context.Context, e *zeroconf.ServiceEntry) {
	a, err := ParseTXT(e.Text)
	if err != nil {
		d.log.Debug("ignoring a malformed announcement", "instance", e.Instance, "err", err)
		return
	}
	if a.ID == d.cfg.Self.ID {
		return
	}
	var addrs []netip.Addr
	for _, ip := range append(append([]net.IP{}, e.AddrIPv4...), e.AddrIPv6...) {
		if addr, ok := netip.AddrFromSlice(ip); ok && !addr.IsUnspecified() {
			addrs = append(addrs, addr.Unmap())
		}
	}
	if len(addrs) == 0 || e.Port <= 0 || e.Port > 65535 {
		return
	}
	now := time.Now()
	d.mu.Lock()
	p, known := d.peers[a.ID]
	if !known {
		p = &Peer{ID: a.ID}
		d.peers[a.ID] = p
	}
	kind := ""
	switch {
	case !known || !p.Online:
		kind = PeerAppeared
	case p.Name != a.Name || p.Port != e.Port || !sameAddrs(p.Addrs, addrs) || p.Criu != a.Criu:
		kind = PeerChanged
	}
	verify := kind != "" && d.cfg.Verify != nil
	p.Name, p.Port, p.Version, p.Arch, p.Criu = a.Name, e.Port, a.Version, a.Arch, a.Criu
	p.Addrs = mergeAddrs(p.Addrs, addrs, !p.Online)
	p.Online, p.LastSeen = true, now
	snapshot := *p
	d.mu.Unlock()
	if verify {
		go d.verify(ctx, snapshot, kind)
		return
	}
	if kind != "" {
		d.notify(snapshot, kind)
	}
}

// verify dials a new or changed peer; only a peer whose certificate matches
// its announced ID is reported as usable.
func (d *Discovery) verify(ctx context.Context, p Peer, kind string) {
	vctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := d.cfg.Verify(vctx, p)
	d.mu.Lock()
	cur, ok := d.peers[p.ID]
	if ok {
		cur.Impostor = err != nil
		p = *cur
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("a device announces an ID its certificate does not have; ignoring it", "name", p.Name, "id", p.ID.Short(), "addr", p.Endpoint(), "err", err)
	}
	d.notify(p, kind)
}

// expire marks peers that stopped answering as offline.
func (d *Discovery) expire(now time.Time) {
	var left []Peer
	d.mu.Lock()
	for _, p := range d.peers {
		if p.Online && now.Sub(p.LastSeen) > offlineAfter {
			p.Online = false
			left = append(left, *p)
		}
	}
	d.mu.Unlock()
	for _, p := range left {
		d.notify(p, PeerLeft)
	}
}

func (d *Discovery) notify(p Peer, kind string) {
	d.log.Debug("peer "+kind, "name", p.Name, "id", p.ID.Short(), "addr", p.Endpoint())
	if d.cfg.OnChange != nil {
		d.cfg.OnChange(p, kind)
	}
}

func sameAddrs(a, b []netip.Addr) bool {
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

// mergeAddrs keeps every address a peer answered from (it may have several
// interfaces); a peer coming back online starts afresh.
func mergeAddrs(old, seen []netip.Addr, reset bool) []netip.Addr {
	if reset {
		old = nil
	}
	for _, a := range seen {
		if !slices.Contains(old, a) {
			old = append(old, a)
		}
	}
	const maxAddrs = 8
	if len(old) > maxAddrs {
		old = old[len(old)-maxAddrs:]
	}
	return old
}
