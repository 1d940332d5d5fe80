package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"192.0.2.2", "192.0.2.2:7466", ""},
		{"192.0.2.2:9000", "192.0.2.2:9000", ""},
		{" ws-b.example.org ", "ws-b.example.org:7466", ""},
		{"WS-B.local.:7467", "ws-b.local:7467", ""},
		{"2001:db8::2", "[2001:db8::2]:7466", ""},
		{"[2001:db8::2]", "[2001:db8::2]:7466", ""},
		{"[2001:db8::2]:9", "[2001:db8::2]:9", ""},
		{"::ffff:192.0.2.9", "192.0.2.9:7466", ""},
		{"", "", "no address"},
		{"192.0.2.2:0", "", "port"},
		{"192.0.2.2:http", "", "port"},
		{"0.0.0.0", "", "not a device"},
		{"224.0.0.251", "", "not a device"},
		{"ws_b", "", "neither"},
		{"a b", "", "neither"},
		{"-ws.example", "", "neither"},
	} {
		got, err := NormalizeAddress(tc.in, 7466)
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("NormalizeAddress(%q) = %q, %v; want %q, error with %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// fakeHellos answers hellos from a table of address → device.
type fakeHellos struct {
	mu    sync.Mutex
	at    map[string]Hello
	calls map[string]int
}

func (f *fakeHellos) hello(_ context.Context, addr string, _ Hello) (Hello, netip.AddrPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[addr]++
	h, ok := f.at[addr]
	if !ok {
		return Hello{}, netip.AddrPort{}, errors.New("connection refused")
	}
	return h, netip.MustParseAddrPort(addr), nil
}

func (f *fakeHellos) set(addr string, h *Hello) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h == nil {
		delete(f.at, addr)
	} else {
		f.at[addr] = *h
	}
}

// events records the table's change events.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(p Peer, kind string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, fmt.Sprintf("%s %s online=%v", kind, p.Name, p.Online))
}

func (e *events) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		ok := slices.Contains(e.list, want)
		list := slices.Clone(e.list)
		e.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %q; events: %q", want, list)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSavedAddressLifecycle: a saved address's device appears at once,
// leaves as soon as a dial fails, comes back, survives a restart in the
// saved file, and goes when the address is removed by the device's name.
func TestSavedAddressLifecycle(t *testing.T) {
	self, b := testID(0), testID(2)
	hellos := &fakeHellos{at: map[string]Hello{}, calls: map[string]int{}}
	bHello := Hello{ID: b, Version: ProtocolVersion, Name: "ws-b", Port: 7466}
	hellos.set("192.0.2.2:7466", &bHello)
	file := filepath.Join(t.TempDir(), "addresses.json")
	ev := &events{}
	start := func() *Discovery {
		d, err := Start(Config{Self: ann(self, "ws-a"), Port: 7466, NoMDNS: true, Hello: hellos.hello,
			AddressFile: file, Logger: quiet, Verify: (&fakeDials{}).verify, OnChange: ev.add})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := start()
	st, err := d.AddAddress(context.Background(), "192.0.2.2")
	if err != nil || !st.Online || st.ID != b || st.Name != "ws-b" {
		t.Fatalf("adding ws-b's address: %+v %v", st, err)
	}
	if p, ok := d.Peer(b); !ok || !p.Online || p.Endpoint() != "192.0.2.2:7466" || p.Name != "ws-b" {
		t.Fatalf("ws-b in the table: %+v %v", p, ok)
	}
	ev.wait(t, "appeared ws-b online=true")

	// ws-b stops: the next dial (2 s later) finds nobody, and it leaves.
	hellos.set("192.0.2.2:7466", nil)
	ev.wait(t, "left ws-b online=false")
	if st := d.Addresses(); len(st) != 1 || st[0].Online || st[0].Error == "" || st[0].Name != "ws-b" {
		t.Fatalf("the saved address while ws-b is away: %+v", st)
	}
	hellos.set("192.0.2.2:7466", &bHello)
	d.Close()

	// A new start dials the saved address at once.
	ev = &events{}
	d = start()
	defer d.Close()
	ev.wait(t, "appeared ws-b online=true")
	if _, err := d.AddAddress(context.Background(), "192.0.2.2:7466"); err != nil || len(d.Addresses()) != 1 {
		t.Fatalf("adding a saved address again: %v, %d saved", err, len(d.Addresses()))
	}
	if _, err := d.RemoveAddress("nobody"); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("removing an unknown address: %v", err)
	}
	gone, err := d.RemoveAddress("WS-B")
	if err != nil || len(gone) != 1 || gone[0].Addr != "192.0.2.2:7466" {
		t.Fatalf("removing ws-b by name: %+v %v", gone, err)
	}
	ev.wait(t, "left ws-b online=false")
	if p, _ := d.Peer(b); p.Online {
		t.Fatalf("ws-b is online after its address was removed: %+v", p)
	}
	if list, _ := loadAddresses(file); len(list) != 0 {
		t.Fatalf("the saved file still lists %+v", list)
	}
}

// TestSeenBothWaysIsOneDevice: a device announced on mDNS and found at a
// saved address is one entry; losing either way keeps it online.
func TestSeenBothWaysIsOneDevice(t *testing.T) {
	b := testID(2)
	d := newDiscovery(Config{Logger: quiet})
	now := time.Now()
	d.seen(ann(b, "ws-b"), at("192.0.2.2:7466"), now)
	d.dialled(ann(b, "ws-b"), netip.MustParseAddrPort("192.0.2.2:7466"), now)
	d.dialled(ann(b, "ws-b"), netip.MustParseAddrPort("198.51.100.2:7466"), now)
	if ps := d.Peers(); len(ps) != 1 || len(ps[0].Addrs) != 2 {
		t.Fatalf("one device seen both ways: %+v", ps)
	}
	// mDNS goes quiet: the dialled addresses keep it.
	d.expire(now.Add(2 * offlineAfter))
	if p, _ := d.Peer(b); !p.Online || len(p.Addrs) != 2 {
		t.Fatalf("mDNS quiet, dials answering: %+v", p)
	}
	// A failed dial drops its address only.
	d.undial(b, netip.MustParseAddrPort("198.51.100.2:7466"))
	if p, _ := d.Peer(b); !p.Online || p.Endpoint() != "192.0.2.2:7466" {
		t.Fatalf("after one address stopped answering: %+v", p)
	}
	d.undial(b, netip.MustParseAddrPort("192.0.2.2:7466"))
	d.expire(now.Add(2 * offlineAfter))
	if p, _ := d.Peer(b); p.Online {
		t.Fatalf("nothing answers and nothing announces it: %+v", p)
	}
}

// TestHelloOnThePeerChannel: a device asks another who it is over the real
// peer channel (loopback); each learns the other, the asked one by dialling
// back the address the hello came from, pinned.
func TestHelloOnThePeerChannel(t *testing.T) {
	a, b, mallory := newIdentity(t, "ws-a"), newIdentity(t, "ws-b"), newIdentity(t, "mallory")
	nobody, _ := OpenTrustStore(filepath.Join(t.TempDir(), "trust.json"))
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	portA, portB := lnA.Addr().(*net.TCPAddr).Port, lnB.Addr().(*net.TCPAddr).Port
	start := func(id *Identity, ln net.Listener, port int) *Discovery {
		d, err := Start(Config{Self: Announcement{ID: id.ID, Version: ProtocolVersion, Name: id.Name}, Port: port,
			NoMDNS: true, Hello: id.SayHello, Verify: id.VerifyPeer, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST "+HelloPath, d.ServeHello)
		srv := id.PeerServer(mux, nobody, func(p string) bool { return p == HelloPath })
		go ServePeers(srv, ln)
		t.Cleanup(func() { srv.Close(); d.Close() })
		return d
	}
	da, db := start(a, lnA, portA), start(b, lnB, portB)

	st, err := da.AddAddress(context.Background(), fmt.Sprintf("127.0.0.1:%d", portB))
	if err != nil || !st.Online || st.ID != b.ID || st.Name != "ws-b" {
		t.Fatalf("ws-a adding ws-b by address: %+v %v", st, err)
	}
	if p, ok := da.Peer(b.ID); !ok || !p.Online || p.Impostor {
		t.Fatalf("ws-a's view of ws-b: %+v", p)
	}
	// ws-b heard the hello and verified ws-a where it listens.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, ok := db.Peer(a.ID)
		if ok && p.Online && p.Endpoint() == fmt.Sprintf("127.0.0.1:%d", portA) && p.Name == "ws-a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ws-b did not learn ws-a from its hello: %+v %v", p, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := da.AddAddress(context.Background(), fmt.Sprintf("127.0.0.1:%d", portA)); !errors.Is(err, ErrSelf) {
		t.Fatalf("adding this device's own address: %v", err)
	}

	// A hello naming another device than the certificate is refused.
	lie := HelloOf(Announcement{ID: b.ID, Version: ProtocolVersion, Name: "ws-b"}, portB)
	if _, _, err := mallory.SayHello(context.Background(), fmt.Sprintf("127.0.0.1:%d", portA), lie); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a hello with another device's ID: %v", err)
	}
}
