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
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Net is a set of workstations on one bridge.
type Net struct {
	Prefix string
	bridge string // namespace holding the bridge
	hosts  map[string]*Host
	order  []string
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

// New creates one workstation per name for a test and removes them when it
// ends. It fails the test if it cannot.
func New(t testing.TB, names ...string) *Net {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	n, err := Build("ho"+hex.EncodeToString(b[:]), names...)
	if n != nil {
		t.Cleanup(n.Teardown)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Build creates one workstation per name, every namespace and link named
// with prefix (at most 8 characters: interface names are short). On error
// it returns what it built so far, for Teardown.
func Build(prefix string, names ...string) (*Net, error) {
	n := &Net{Prefix: prefix, bridge: prefix + "-br", hosts: map[string]*Host{}}
	steps := [][]string{
		{"netns", "add", n.bridge},
		{"-n", n.bridge, "link", "set", "lo", "up"},
		{"-n", n.bridge, "link", "add", "br0", "type", "bridge"},
		{"-n", n.bridge, "link", "set", "br0", "up"},
	}
	for i, name := range names {
		h := &Host{net: n, Name: name, NS: prefix + "-" + name,
			Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), port: fmt.Sprintf("%s-p%d", prefix, i)}
		n.hosts[name] = h
		n.order = append(n.order, name)
		inner := fmt.Sprintf("%s-e%d", prefix, i)
		steps = append(steps,
			[]string{"netns", "add", h.NS},
			[]string{"link", "add", h.port, "type", "veth", "peer", "name", inner},
			[]string{"link", "set", h.port, "netns", n.bridge},
			[]string{"link", "set", inner, "netns", h.NS},
			[]string{"-n", n.bridge, "link", "set", h.port, "master", "br0", "up"},
			[]string{"-n", h.NS, "link", "set", inner, "name", "eth0"},
			[]string{"-n", h.NS, "addr", "add", h.Addr.String() + "/24", "dev", "eth0"},
			[]string{"-n", h.NS, "link", "set", "eth0", "up", "multicast", "on"},
			[]string{"-n", h.NS, "link", "set", "lo", "up"},
		)
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return n, fmt.Errorf("testnet: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n, nil
}

// Hosts returns the workstations in the order they were named.
func (n *Net) Hosts() []*Host {
	out := make([]*Host, 0, len(n.order))
	for _, name := range n.order {
		out = append(out, n.hosts[name])
	}
	return out
}

// Host returns the workstation with the given name, or nil.
func (n *Net) Host(name string) *Host { return n.hosts[name] }

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
func (h *Host) SetLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "-n", h.net.bridge, "link", "set", h.port, state).CombinedOutput(); err != nil {
		return fmt.Errorf("set %s's link %s: %v: %s", h.Name, state, err, out)
	}
	return nil
}

// Teardown kills the processes started through the workstations (by PID)
// and deletes their namespaces (by name). Deleting a namespace removes its
// links with it.
func (n *Net) Teardown() {
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

// Do runs f on a thread inside the workstation's network namespace: sockets
// f creates belong to the workstation. Only what f does on its own goroutine
// is inside; the thread is thrown away afterwards if it cannot switch back.
func (h *Host) Do(f func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	ns, err := os.Open("/run/netns/" + h.NS)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", h.NS, err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	}
	return ferr
}

// DropMDNS makes the workstation a machine on a network that blocks
// multicast DNS: nftables rules in its namespace drop every mDNS packet in
// and out (they go with the namespace).
func (h *Host) DropMDNS() error {
	rules := `table inet handoff_nomdns {
	chain in { type filter hook input priority 0; udp dport 5353 drop; udp sport 5353 drop; }
	chain out { type filter hook output priority 0; udp dport 5353 drop; udp sport 5353 drop; }
}
`
	cmd := h.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("drop mDNS in %s (nft: run `make deps`): %v: %s", h.Name, err, out)
	}
	return nil
}

// Shape limits the workstation's cable to rate (tc syntax, e.g. "1gbit") in
// both directions with a token bucket, as a real network link would be.
func (h *Host) Shape(rate string) error {
	for _, q := range [][]string{
		{"-n", h.NS, "qdisc", "replace", "dev", "eth0"},
		{"-n", h.net.bridge, "qdisc", "replace", "dev", h.port},
	} {
		args := append(q, "root", "tbf", "rate", rate, "burst", "512kb", "latency", "20ms")
		if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("shape %s's link to %s: tc %s: %v: %s", h.Name, rate, strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// Dial connects to address from inside the workstation.
func (h *Host) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Listen listens on address inside the workstation.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}
