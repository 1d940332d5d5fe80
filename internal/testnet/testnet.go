// Package testnet builds simulated workstations for tests: network
// namespaces joined by a bridge that lives in a namespace of its own, with
// addresses from the documentation range 192.0.2.0/24. Multicast (mDNS)
// crosses the bridge. Everything it creates is named with a per-run prefix
// and removed by those names, and every process started through it is
// killed by PID, when the test ends, failed or not.
package testnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Net is a set of workstations on one bridge.
type Net struct {
	t      testing.TB
	Prefix string
	bridge string // namespace holding the bridge
	hosts  map[string]*Host
}

// Host is one workstation: a network namespace with eth0 on the bridge.
type Host struct {
	net  *Net
	Name string
	NS   string     // network namespace name
	Addr netip.Addr // its address on the bridge
	port string     // its veth end in the bridge namespace

	mu    sync.Mutex
	procs []*exec.Cmd
}

// New creates one workstation per name. It fails the test if it cannot.
func New(t testing.TB, names ...string) *Net {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	n := &Net{t: t, Prefix: "ho" + hex.EncodeToString(b[:]), hosts: map[string]*Host{}}
	n.bridge = n.Prefix + "-br"
	t.Cleanup(n.teardown)
	n.ip("netns", "add", n.bridge)
	n.ip("-n", n.bridge, "link", "set", "lo", "up")
	n.ip("-n", n.bridge, "link", "add", "br0", "type", "bridge")
	n.ip("-n", n.bridge, "link", "set", "br0", "up")
	for i, name := range names {
		h := &Host{net: n, Name: name, NS: n.Prefix + "-" + name,
			Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), port: fmt.Sprintf("%s-p%d", n.Prefix, i)}
		n.hosts[name] = h
		inner := fmt.Sprintf("%s-e%d", n.Prefix, i)
		n.ip("netns", "add", h.NS)
		n.ip("link", "add", h.port, "type", "veth", "peer", "name", inner)
		n.ip("link", "set", h.port, "netns", n.bridge)
		n.ip("link", "set", inner, "netns", h.NS)
		n.ip("-n", n.bridge, "link", "set", h.port, "master", "br0", "up")
		n.ip("-n", h.NS, "link", "set", inner, "name", "eth0")
		n.ip("-n", h.NS, "addr", "add", h.Addr.String()+"/24", "dev", "eth0")
		n.ip("-n", h.NS, "link", "set", "eth0", "up", "multicast", "on")
		n.ip("-n", h.NS, "link", "set", "lo", "up")
	}
	return n
}

// Host returns the workstation with the given name.
func (n *Net) Host(name string) *Host {
	h, ok := n.hosts[name]
	if !ok {
		n.t.Fatalf("testnet: no host %q", name)
	}
	return h
}

func (n *Net) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("testnet: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Command returns a command that runs inside the workstation's network
// namespace. It uses nsenter rather than `ip netns exec`, which also mounts
// a fresh /sys and so hides the cgroup hierarchies a daemon needs.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.NS, "--", name}, args...)...)
}

// Start starts cmd and kills it by PID when the test ends.
func (h *Host) Start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	h.mu.Lock()
	h.procs = append(h.procs, cmd)
	h.mu.Unlock()
	return nil
}

// SetLink cuts (false) or restores (true) the workstation's cable.
func (h *Host) SetLink(up bool) {
	state := "down"
	if up {
		state = "up"
	}
	h.net.ip("-n", h.net.bridge, "link", "set", h.port, state)
}

func (n *Net) teardown() {
	for _, h := range n.hosts {
		h.mu.Lock()
		for _, c := range h.procs {
			if c.ProcessState == nil && c.Process != nil {
				c.Process.Kill()
				done := make(chan struct{})
				go func() { c.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
				}
			}
		}
		h.mu.Unlock()
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	exec.Command("ip", "netns", "del", n.bridge).Run()
}
