//go:build integration

package discovery

import (
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/testnet"
)

// TestPeerByAddressWithoutMDNS: three workstations on a network whose mDNS
// packets nftables drops. ws-a has ws-b's address saved: each finds the
// other (ws-b through ws-a's hello), verified at its own address; ws-c, with
// nothing saved, finds nobody and nobody finds it, which shows mDNS does
// not pass. ws-b stops: ws-a sees it leave.
func TestPeerByAddressWithoutMDNS(t *testing.T) {
	lan := testnet.New(t, "a", "b", "c")
	for _, h := range lan.Hosts() {
		if err := h.DropMDNS(); err != nil {
			t.Fatal(err)
		}
	}
	bAt := netip.AddrPortFrom(lan.Host("b").Addr, 7466)
	aAt := netip.AddrPortFrom(lan.Host("a").Addr, 7466)
	b := startDevice(t, lan.Host("b"), "ws-b")
	c := startDevice(t, lan.Host("c"), "ws-c")
	a := startDeviceEnv(t, lan.Host("a"), t.TempDir(), "ws-a", []string{"SAVE=" + lan.Host("b").Addr.String()})
	start := time.Now()
	a.waitPeer(t, b.id.ID, "ws-b on ws-a, at its saved address", 10*time.Second, func(p Peer) bool {
		return p.Online && !p.Impostor && p.Endpoint() == bAt.String() && p.Name == "ws-b"
	})
	b.waitPeer(t, a.id.ID, "ws-a on ws-b, from its hello", 10*time.Second, func(p Peer) bool {
		return p.Online && !p.Impostor && p.Endpoint() == aAt.String() && p.Name == "ws-a"
	})
	t.Logf("ws-a and ws-b found each other by address %v after ws-a started", time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // mDNS, were it passing, would have shown ws-c by now (browse cycles of 0.8 s)
	for _, d := range []*device{a, b, c} {
		for _, p := range d.peers() {
			if p.ID == c.id.ID || d == c {
				t.Fatalf("%s saw %s: mDNS is not blocked, the test proves nothing", d.id.Name, p.Name)
			}
		}
	}
	b.stop()
	stopped := time.Now()
	a.waitPeer(t, b.id.ID, "ws-b leaving ws-a", 10*time.Second, func(p Peer) bool { return !p.Online })
	t.Logf("ws-a saw ws-b leave %v after it stopped", time.Since(stopped).Round(time.Millisecond))
}

// TestNetworkChangeDialsSavedPeers: ws-a has ws-b's address saved while
// ws-b is down, and would wait an hour before dialling it again. ws-b
// starts; ws-a does not notice until its own network changes (an address
// added): then it dials at once.
func TestNetworkChangeDialsSavedPeers(t *testing.T) {
	lan := testnet.New(t, "a", "b")
	for _, h := range lan.Hosts() {
		if err := h.DropMDNS(); err != nil {
			t.Fatal(err)
		}
	}
	// A new namespace's IPv6 addresses finish their duplicate detection
	// a second or two after it is made: a network change of its own.
	settled(t, lan.Host("a"))
	a := startDeviceEnv(t, lan.Host("a"), t.TempDir(), "ws-a",
		[]string{"SAVE=" + lan.Host("b").Addr.String(), "RETRY_MIN=1h", "RETRY_MAX=1h"})
	time.Sleep(time.Second) // ws-a is up and its first dial failed
	b := startDevice(t, lan.Host("b"), "ws-b")
	time.Sleep(3 * time.Second)
	if p, ok := a.peer(b.id.ID); ok && p.Online {
		t.Fatalf("ws-a found ws-b without a network change: the test proves nothing (%+v)", p)
	}
	for i, change := range [][]string{
		{"addr", "add", "198.51.100.7/32", "dev", "lo"},
		{"route", "add", "198.51.100.128/25", "dev", "eth0"},
	} {
		if i == 1 { // again, this time by a route: ws-b restarts unnoticed first
			b.stop()
			a.waitPeer(t, b.id.ID, "ws-b leaving ws-a", 10*time.Second, func(p Peer) bool { return !p.Online })
			time.Sleep(3 * time.Second) // ws-a's backoff is an hour now
			b = startDeviceWithDir(t, lan.Host("b"), b.dir, "ws-b")
			time.Sleep(3 * time.Second)
			if p, _ := a.peer(b.id.ID); p.Online {
				t.Fatalf("ws-a found the restarted ws-b without a network change: %+v", p)
			}
		}
		if out, err := exec.Command("ip", append([]string{"-n", lan.Host("a").NS}, change...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", change, err, out)
		}
		changed := time.Now()
		a.waitPeer(t, b.id.ID, fmt.Sprintf("ws-b on ws-a after `ip %v`", change[:2]), 10*time.Second, func(p Peer) bool { return p.Online })
		t.Logf("ws-a found ws-b %v after `ip %s %s`", time.Since(changed).Round(time.Millisecond), change[0], change[1])
	}
}

// settled waits until no address of h is tentative any more.
func settled(t *testing.T, h *testnet.Host) {
	t.Helper()
	for i := 0; ; i++ {
		out, err := exec.Command("ip", "-n", h.NS, "addr", "show", "tentative").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr: %v %s", err, out)
		}
		if len(out) == 0 {
			return
		}
		if i > 100 {
			t.Fatalf("%s's addresses stay tentative: %s", h.Name, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
