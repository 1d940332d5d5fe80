package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The table's rules, driven without a network: seen() is what an mDNS
// answer becomes, and verification runs a fake dial. The same rules are
// tested with real packets in mdns_integration_test.go.

var quiet = slog.New(slog.DiscardHandler)

func testID(n int) DeviceID { return IDFromCert(fmt.Appendf(nil, "device %d", n)) }

func ann(id DeviceID, name string) Announcement {
	return Announcement{ID: id, Version: ProtocolVersion, Name: name}
}

func at(s string) []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort(s)} }

// fakeDials answers verification dials from a table of address → device.
type fakeDials struct {
	mu    sync.Mutex
	owner map[netip.AddrPort]DeviceID // who answers there; missing: nobody
}

func (f *fakeDials) verify(_ context.Context, p Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	got, ok := f.owner[netip.MustParseAddrPort(p.Endpoint())]
	switch {
	case !ok:
		return errors.New("connection refused")
	case got != p.ID:
		return &PinError{Want: p.ID, Got: got}
	}
	return nil
}

// runDials runs every queued verification now.
func runDials(d *Discovery) {
	for {
		job, ok := d.nextJob(false)
		if !ok {
			return
		}
		d.verify(context.Background(), job)
	}
}

func TestTableEvictsStalestStrangerNeverTrusted(t *testing.T) {
	trusted := testID(-1)
	d := newDiscovery(Config{Logger: quiet, Trusted: func(id DeviceID) bool { return id == trusted }})
	t0 := time.Now()
	d.seen(ann(trusted, "ws-trusted"), at("192.0.2.2:7466"), t0) // the stalest of all
	for i := 1; i < maxPeers; i++ {
		d.seen(ann(testID(i), "s"), at("192.0.2.3:7466"), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(d.Peers()); n != maxPeers {
		t.Fatalf("%d entries, want %d", n, maxPeers)
	}
	d.seen(ann(testID(1000), "newcomer"), at("192.0.2.4:7466"), t0.Add(time.Second))
	if n := len(d.Peers()); n != maxPeers {
		t.Fatalf("%d entries after one more stranger, want the cap %d", n, maxPeers)
	}
	if _, ok := d.Peer(trusted); !ok {
		t.Fatal("a stranger pushed the trusted device out")
	}
	if _, ok := d.Peer(testID(1)); ok {
		t.Fatal("the stalest stranger was kept")
	}
	if _, ok := d.Peer(testID(1000)); !ok {
		t.Fatal("the newcomer was not taken in")
	}

	// A table of trusted devices only takes no stranger at all.
	all := newDiscovery(Config{Logger: quiet, Trusted: func(DeviceID) bool { return true }})
	for i := range maxPeers {
		all.seen(ann(testID(i), "t"), at("192.0.2.5:7466"), t0)
	}
	all.cfg.Trusted = func(id DeviceID) bool { return id != testID(5000) }
	all.seen(ann(testID(5000), "stranger"), at("192.0.2.6:7466"), t0.Add(time.Second))
	if _, ok := all.Peer(testID(5000)); ok || len(all.Peers()) != maxPeers {
		t.Fatalf("a stranger got into a table of trusted devices (%d entries)", len(all.Peers()))
	}
}

func TestImpostorFlagIsReverified(t *testing.T) {
	real, mallory := testID(1), testID(2)
	dials := &fakeDials{owner: map[netip.AddrPort]DeviceID{
		netip.MustParseAddrPort("192.0.2.11:7466"): real,
		netip.MustParseAddrPort("192.0.2.66:7466"): mallory,
	}}
	var events []string
	d := newDiscovery(Config{Logger: quiet, Verify: dials.verify, Trusted: func(id DeviceID) bool { return id == real },
		OnChange: func(p Peer, kind string) { events = append(events, fmt.Sprintf("%s impostor=%v", kind, p.Impostor)) }})
	now := time.Now()

	// Only the spoofer announces the ID: it is flagged.
	d.seen(ann(real, "spoofed name"), at("192.0.2.66:7466"), now)
	runDials(d)
	if p, _ := d.Peer(real); !p.Impostor || p.Endpoint() != "" {
		t.Fatalf("after a spoofed announcement: %+v, want an impostor without an address", p)
	}
	// The real device answers: the flag clears, its address and name win,
	// and further spoofed announcements change nothing.
	d.seen(ann(real, "ws-real"), at("192.0.2.11:7466"), now.Add(time.Second))
	runDials(d)
	for i := range 3 {
		d.seen(ann(real, "spoofed name"), at("192.0.2.66:7466"), now.Add(time.Duration(2+i)*time.Second))
		runDials(d)
		p, _ := d.Peer(real)
		if p.Impostor || p.Endpoint() != "192.0.2.11:7466" || p.Name != "ws-real" || len(p.Addrs) != 1 {
			t.Fatalf("with the real device verified: %+v", p)
		}
	}
	if len(events) < 2 || events[0] != "appeared impostor=true" || events[len(events)-1] != "changed impostor=false" {
		t.Fatalf("events %q: want it to appear as an impostor, and a change clearing that last", events)
	}

	// A device that stops answering during its verification is not an
	// impostor (it was flagged for good before).
	gone := testID(3)
	d.seen(ann(gone, "ws-gone"), at("192.0.2.12:7466"), now)
	runDials(d)
	if p, _ := d.Peer(gone); p.Impostor {
		t.Fatalf("an unreachable device was flagged: %+v", p)
	}
}

func TestStrangersCannotCrowdOutAProvenAddress(t *testing.T) {
	real := testID(1)
	dials := &fakeDials{owner: map[netip.AddrPort]DeviceID{netip.MustParseAddrPort("192.0.2.11:7466"): real}}
	d := newDiscovery(Config{Logger: quiet, Verify: dials.verify, Trusted: func(id DeviceID) bool { return id == real }})
	now := time.Now()
	d.seen(ann(real, "ws-real"), at("192.0.2.11:7466"), now)
	runDials(d)
	for i := range 50 {
		d.seen(ann(real, "x"), at(fmt.Sprintf("192.0.2.%d:7466", 100+i)), now.Add(time.Duration(i+1)*time.Millisecond))
	}
	p, _ := d.Peer(real)
	if p.Endpoint() != "192.0.2.11:7466" || p.Name != "ws-real" {
		t.Fatalf("spoofed addresses took over: %+v", p)
	}
	if len(p.Addrs) > maxAddrsPerPeer {
		t.Fatalf("%d addresses kept (cap %d)", len(p.Addrs), maxAddrsPerPeer)
	}
}

func TestVerificationDialsAreBounded(t *testing.T) {
	var open, maxOpen, total atomic.Int64
	var answerAtOnce atomic.Bool
	release := make(chan struct{})
	slow := func(ctx context.Context, p Peer) error {
		if answerAtOnce.Load() {
			total.Add(1)
			return errors.New("connection refused")
		}
		total.Add(1)
		n := open.Add(1)
		defer open.Add(-1)
		for m := maxOpen.Load(); n > m && !maxOpen.CompareAndSwap(m, n); m = maxOpen.Load() {
		}
		select { // a stranger's address that never answers, at first
		case <-release:
		case <-ctx.Done():
		}
		return errors.New("no answer")
	}
	d := newDiscovery(Config{Logger: quiet, Verify: slow})
	ctx, cancel := context.WithCancel(context.Background())
	d.done.Add(maxVerifyDials)
	go d.verifier(ctx, true)
	for range maxVerifyDials - 1 {
		go d.verifier(ctx, false)
	}
	defer func() { cancel(); d.done.Wait() }()
	start := time.Now()
	for i := range 300 {
		d.seen(ann(testID(i), "s"), at(fmt.Sprintf("192.0.2.%d:7466", i%200+1)), time.Now())
	}
	time.Sleep(300 * time.Millisecond)
	if got := maxOpen.Load(); got > maxVerifyDials-1 {
		t.Errorf("%d strangers' dials at once; at most %d (one verifier is kept for trusted devices)", got, maxVerifyDials-1)
	}
	// Now dials fail at once: the rate limit is what bounds them.
	answerAtOnce.Store(true)
	close(release)
	time.Sleep(time.Second)
	elapsed := time.Since(start)
	if limit := int64(verifyBurst + verifyRate*elapsed.Seconds() + 1); total.Load() > limit {
		t.Errorf("%d dials in %v; the rate limit allows %d", total.Load(), elapsed, limit)
	}
	if total.Load() < maxVerifyDials-1 {
		t.Errorf("only %d dials: the verifiers did not run", total.Load())
	}
}
