//go:build integration

package discovery

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/handoff/handoff/internal/testnet"
)

// These tests run real discovery in network namespaces (internal/testnet)
// and attack it with hand-made mDNS answers: a stranger on the LAN may send
// any device ID at any address, as fast as it likes.

const helperEnv = "HANDOFF_MDNS_HELPER"

// TestMDNSHelperDevice is not a test: run by the tests below inside a
// namespace, it is a Handoff device (identity in $DIR, trusting the IDs in
// $TRUST, peer channel on :7466 with the hello endpoint, discovery, the
// addresses in $SAVE saved, $RETRY_MIN and $RETRY_MAX the waits before
// dialling one that does not answer again) that writes its peer table as JSON to $OUT
// every 50 ms until SIGTERM.
func TestMDNSHelperDevice(t *testing.T) {
	if os.Getenv(helperEnv) != "device" {
		t.Skip("a helper process for the mDNS tests")
	}
	id, err := LoadOrCreateIdentity(os.Getenv("DIR"), os.Getenv("NAME"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := OpenTrustStore(filepath.Join(os.Getenv("DIR"), "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range strings.Fields(os.Getenv("TRUST")) {
		peer, err := ParseDeviceID(s)
		if err != nil {
			t.Fatal(err)
		}
		ts.Trust(peer, "", false)
	}
	ln, err := net.Listen("tcp", ":7466")
	if err != nil {
		t.Fatal(err)
	}
	var ready sync.WaitGroup // hellos wait for discovery to start
	ready.Add(1)
	var d *Discovery
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+HelloPath, func(w http.ResponseWriter, r *http.Request) { ready.Wait(); d.ServeHello(w, r) })
	srv := id.PeerServer(mux, ts, func(p string) bool { return p == HelloPath })
	go ServePeers(srv, ln)
	retryMin, _ := time.ParseDuration(os.Getenv("RETRY_MIN"))
	retryMax, _ := time.ParseDuration(os.Getenv("RETRY_MAX"))
	d, err = Start(Config{Self: Announcement{ID: id.ID, Version: ProtocolVersion, Name: id.Name},
		Port: 7466, Verify: id.VerifyPeer, Trusted: ts.IsTrusted, Hello: id.SayHello,
		AddressFile: filepath.Join(os.Getenv("DIR"), "addresses.json"), RetryMin: retryMin, RetryMax: retryMax})
	ready.Done()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(os.Getenv("SAVE")) {
		if _, err := d.AddAddress(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	out := os.Getenv("OUT")
	for {
		data, _ := json.Marshal(d.Peers())
		os.WriteFile(out+".tmp", data, 0o644)
		os.Rename(out+".tmp", out)
		select {
		case <-stop:
			d.Close()
			srv.Close()
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// device is a helper process running as a Handoff device in a namespace.
type device struct {
	id   *Identity
	host *testnet.Host
	dir  string
	out  string
	proc *os.Process
}

func startDevice(t *testing.T, h *testnet.Host, name string, trust ...DeviceID) *device {
	t.Helper()
	return startDeviceWithDir(t, h, t.TempDir(), name, trust...)
}

// stop ends the device cleanly (the harness kills it by PID if this fails).
func (d *device) stop() {
	d.proc.Signal(syscall.SIGTERM)
	d.proc.Wait()
}

// peers is the device's peer table as last written.
func (d *device) peers() []Peer {
	var ps []Peer
	data, _ := os.ReadFile(d.out)
	json.Unmarshal(data, &ps)
	return ps
}

func (d *device) peer(id DeviceID) (Peer, bool) {
	for _, p := range d.peers() {
		if p.ID == id {
			return p, true
		}
	}
	return Peer{}, false
}

// waitPeer waits for a table entry matching ok; it fails with what it saw.
func (d *device) waitPeer(t *testing.T, id DeviceID, what string, within time.Duration, ok func(Peer) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p, found := d.peer(id)
		if found && ok(p) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not seen within %v; last entry: %+v (found %v)", what, within, p, found)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inNamespace runs fn on a thread that is in h's network namespace: sockets
// fn opens stay there.
func inNamespace(t *testing.T, h *testnet.Host, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + h.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(fmt.Sprintf("cannot return to the test's namespace: %v", err)) // the thread must not be reused
		}
	}()
	fn()
}

// spoofer sends mDNS answers from a namespace, as a stranger on the LAN would.
type spoofer struct {
	conn *ipv4.PacketConn
	dst  *net.UDPAddr
}

func newSpoofer(t *testing.T, h *testnet.Host) *spoofer {
	s := &spoofer{dst: &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}}
	inNamespace(t, h, func() {
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		eth0, err := net.InterfaceByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		s.conn = ipv4.NewPacketConn(c)
		if err := s.conn.SetMulticastInterface(eth0); err != nil {
			t.Fatal(err)
		}
	})
	return s
}

// announce sends one unsolicited answer saying the device a is instance
// at addr:port.
func (s *spoofer) announce(t *testing.T, instance string, a Announcement, at netip.AddrPort) {
	service := ServiceType + ".local."
	name := instance + "." + service
	host := strings.ReplaceAll(instance, " ", "-") + ".local."
	hdr := func(n string, typ uint16) dns.RR_Header {
		return dns.RR_Header{Name: n, Rrtype: typ, Class: dns.ClassINET | 1<<15, Ttl: 120}
	}
	m := new(dns.Msg)
	m.Response, m.Authoritative = true, true
	m.Answer = []dns.RR{
		&dns.PTR{Hdr: dns.RR_Header{Name: service, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 120}, Ptr: name},
		&dns.SRV{Hdr: hdr(name, dns.TypeSRV), Target: host, Port: at.Port()},
		&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: a.TXT()},
	}
	m.Extra = []dns.RR{&dns.A{Hdr: hdr(host, dns.TypeA), A: at.Addr().AsSlice()}}
	packet, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.conn.WriteTo(packet, nil, s.dst); err != nil {
		t.Errorf("send a spoofed answer: %v", err)
	}
}

// keepSpoofing announces a every 200 ms until the test ends.
func (s *spoofer) keepSpoofing(t *testing.T, instance string, a Announcement, at netip.AddrPort) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			s.announce(t, instance, a, at)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestSpoofedAnnouncementDoesNotStick: a stranger announces a trusted
// device's ID at its own address, where its own certificate answers. The
// ID shows as an impostor only until the real device answers; then the real
// device is usable, at its own address and name, while the spoofing goes on.
func TestSpoofedAnnouncementDoesNotStick(t *testing.T) {
	lan := testnet.New(t, "victim", "real", "mallory")
	realDir := t.TempDir()
	realID, err := LoadOrCreateIdentity(realDir, "ws-real")
	if err != nil {
		t.Fatal(err)
	}
	victim := startDevice(t, lan.Host("victim"), "ws-victim", realID.ID)

	// Mallory's peer channel answers with her own certificate.
	mallory := newIdentity(t, "mallory")
	inNamespace(t, lan.Host("mallory"), func() {
		ln, err := net.Listen("tcp", ":7466")
		if err != nil {
			t.Fatal(err)
		}
		nobody, _ := OpenTrustStore(filepath.Join(t.TempDir(), "trust.json"))
		srv := mallory.PeerServer(http.NotFoundHandler(), nobody, nil)
		go ServePeers(srv, ln)
		t.Cleanup(func() { srv.Close() })
	})
	spoof := newSpoofer(t, lan.Host("mallory"))
	malloryAt := netip.AddrPortFrom(lan.Host("mallory").Addr, 7466)
	spoof.keepSpoofing(t, "ws-real (spoof)", Announcement{ID: realID.ID, Version: ProtocolVersion, Name: "ws-real-spoofed"}, malloryAt)
	victim.waitPeer(t, realID.ID, "the spoofed ID flagged as an impostor", 15*time.Second, func(p Peer) bool { return p.Impostor })

	// The real device starts (with the identity the victim trusts).
	startDeviceWithDir(t, lan.Host("real"), realDir, "ws-real", victim.id.ID)
	want := netip.AddrPortFrom(lan.Host("real").Addr, 7466).String()
	victim.waitPeer(t, realID.ID, "the real device, verified, at its own address", 20*time.Second, func(p Peer) bool {
		return p.Online && !p.Impostor && p.Endpoint() == want && p.Name == "ws-real"
	})
	// It stays so while the spoofing goes on.
	for range 20 {
		p, _ := victim.peer(realID.ID)
		if p.Impostor || p.Endpoint() != want || p.Name != "ws-real" || slices.Contains(p.Addrs, lan.Host("mallory").Addr) {
			t.Fatalf("the spoofer took over the trusted device again: %+v", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startDeviceWithDir is startDevice with an identity made beforehand.
func startDeviceWithDir(t *testing.T, h *testnet.Host, dir, name string, trust ...DeviceID) *device {
	t.Helper()
	return startDeviceEnv(t, h, dir, name, nil, trust...)
}

// startDeviceEnv is startDeviceWithDir with more of the helper's settings
// (SAVE, RETRY_MIN, RETRY_MAX).
func startDeviceEnv(t *testing.T, h *testnet.Host, dir, name string, env []string, trust ...DeviceID) *device {
	t.Helper()
	id, err := LoadOrCreateIdentity(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range trust {
		ids = append(ids, p.String())
	}
	d := &device{id: id, host: h, dir: dir, out: filepath.Join(dir, "peers.json")}
	cmd := h.Command(context.Background(), os.Args[0], "-test.run=^TestMDNSHelperDevice$")
	cmd.Env = append(os.Environ(), helperEnv+"=device", "DIR="+dir, "NAME="+name, "OUT="+d.out, "TRUST="+strings.Join(ids, " "))
	cmd.Env = append(cmd.Env, env...)
	log, _ := os.Create(filepath.Join(dir, "log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := h.Start(cmd); err != nil {
		t.Fatal(err)
	}
	d.proc = cmd.Process
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("%s's log:\n%s", name, data)
		}
	})
	return d
}

// tarpit accepts connections and never answers, counting them per caller.
type tarpit struct {
	mu      sync.Mutex
	total   map[netip.Addr]int
	open    map[netip.Addr]int
	maxOpen map[netip.Addr]int
}

func (tp *tarpit) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		tp.mu.Lock()
		tp.total[from]++
		tp.open[from]++
		tp.maxOpen[from] = max(tp.maxOpen[from], tp.open[from])
		tp.mu.Unlock()
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			tp.mu.Lock()
			tp.open[from]--
			tp.mu.Unlock()
		}()
	}
}

// TestStrangerFloodIsBounded: a stranger announces 600 device IDs, all at
// an address that accepts connections and never answers. The table stays
// within its cap, the trusted device stays in it and verified, and the
// verification dials stay bounded in number at once and per second.
func TestStrangerFloodIsBounded(t *testing.T) {
	lan := testnet.New(t, "victim", "real", "mallory")
	realDir := t.TempDir()
	realID, err := LoadOrCreateIdentity(realDir, "ws-real")
	if err != nil {
		t.Fatal(err)
	}
	victim := startDevice(t, lan.Host("victim"), "ws-victim", realID.ID)
	startDeviceWithDir(t, lan.Host("real"), realDir, "ws-real", victim.id.ID)
	realAt := netip.AddrPortFrom(lan.Host("real").Addr, 7466).String()
	verified := func(p Peer) bool { return p.Online && !p.Impostor && p.Endpoint() == realAt }
	victim.waitPeer(t, realID.ID, "the trusted device", 20*time.Second, verified)

	pit := tarpit{total: map[netip.Addr]int{}, open: map[netip.Addr]int{}, maxOpen: map[netip.Addr]int{}}
	inNamespace(t, lan.Host("mallory"), func() {
		ln, err := net.Listen("tcp", ":9")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go pit.serve(ln)
	})
	spoof := newSpoofer(t, lan.Host("mallory"))
	at := netip.AddrPortFrom(lan.Host("mallory").Addr, 9)
	const strangers = 600
	fakes := make([]Announcement, strangers)
	for i := range fakes {
		var cert [32]byte
		rand.Read(cert[:])
		fakes[i] = Announcement{ID: IDFromCert(cert[:]), Version: ProtocolVersion, Name: fmt.Sprintf("stranger-%d", i)}
	}
	start := time.Now()
	maxTable := 0
	for round := 0; round < 3; round++ {
		for i, a := range fakes {
			spoof.announce(t, fmt.Sprintf("stranger-%d", i), a, at)
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond)
				maxTable = max(maxTable, len(victim.peers()))
			}
		}
	}
	for range 40 { // let the victim take it all in
		maxTable = max(maxTable, len(victim.peers()))
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	pit.mu.Lock()
	total, maxOpen := pit.total[lan.Host("victim").Addr], pit.maxOpen[lan.Host("victim").Addr]
	pit.mu.Unlock()
	t.Logf("the victim's table: at most %d entries; its verification dials: %d in %v, at most %d at once",
		maxTable, total, elapsed.Round(time.Millisecond), maxOpen)
	if maxTable <= 1 || total == 0 {
		t.Fatal("the flood never reached the victim: the test proves nothing")
	}
	if maxTable > maxPeers {
		t.Errorf("the peer table grew to %d entries (cap %d)", maxTable, maxPeers)
	}
	if maxOpen > maxVerifyDials {
		t.Errorf("%d verification dials at once (cap %d)", maxOpen, maxVerifyDials)
	}
	if limit := int(verifyBurst + verifyRate*elapsed.Seconds() + 1); total > limit {
		t.Errorf("%d verification dials in %v (the rate limit allows %d)", total, elapsed, limit)
	}
	if p, ok := victim.peer(realID.ID); !ok || !verified(p) {
		t.Errorf("the trusted device was pushed out or lost its verification: %+v (in the table: %v)", p, ok)
	}
}
