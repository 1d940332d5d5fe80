//go:build integration

package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/internal/testutil"
)

// The fault matrix of a handoff: whatever fails — the link, either
// daemon, both — and wherever it fails, afterwards the app runs on exactly
// one machine, as it was, and nothing of it is left anywhere else.

// faultDesk is two workstations whose daemons stop where failpoints say.
type faultDesk struct {
	net     *testnet.Net
	a, b    *workstation
	failDir string
	before  []byte // the app's screen before the handoff
}

func newFaultDesk(t *testing.T, failA, failB string) *faultDesk {
	t.Helper()
	d := &faultDesk{net: testnet.New(t, "a", "b"), failDir: t.TempDir()}
	d.a = startFaultWorkstation(t, d.net.Host("a"), "ws-a", failA, d.failDir)
	d.b = startFaultWorkstation(t, d.net.Host("b"), "ws-b", failB, d.failDir)
	ctx := context.Background()
	waitPeer(t, d.a, "ws-b", true, 15*time.Second)
	waitPeer(t, d.b, "ws-a", true, 15*time.Second)
	idA, _ := d.a.client.ID(ctx)
	idB, _ := d.b.client.ID(ctx)
	if _, err := d.a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 640, Height: 400}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	typeInto(t, d.a, "notes", "state kept")
	d.before = settledShot(t, d.a, "notes")
	return d
}

func startFaultWorkstation(t *testing.T, h *testnet.Host, name, failpoints, dir string) *workstation {
	t.Helper()
	sd := testutil.StateDir(t)
	w := &workstation{name: name, host: h, dir: sd, client: NewClient(filepath.Join(sd, "handoff.sock"))}
	if failpoints != "" {
		w.env = []string{"HANDOFF_FAILPOINTS=" + failpoints, "HANDOFF_FAILPOINT_DIR=" + dir}
	}
	w.start(t)
	t.Cleanup(func() { w.stop(t) })
	return w
}

// restart starts a workstation's daemon again, without failpoints, after
// it died.
func (w *workstation) restart(t *testing.T) {
	t.Helper()
	if w.cmd.ProcessState == nil {
		w.cmd.Process.Kill()
		w.cmd.Wait()
	}
	w.env = nil
	w.start(t)
}

// killDaemon ends a workstation's daemon as a crash would.
func (w *workstation) killDaemon() {
	w.cmd.Process.Kill()
	w.cmd.Wait()
}

// waitReached waits until a held failpoint is reached.
func (d *faultDesk) waitReached(t *testing.T, point string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(d.failDir, point+".reached")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handoff never reached %s", point)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *faultDesk) release(t *testing.T, point string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.failDir, point+".release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// daemonDied waits for a daemon that a kill failpoint ended.
func daemonDied(t *testing.T, w *workstation) {
	t.Helper()
	done := make(chan struct{})
	go func() { w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("%s's daemon did not stop at its failpoint", w.name)
	}
}

// oneCopy waits until the app runs on exactly one of the two machines and
// is gone (not frozen, not anything) from the other, then checks its
// screen is what it was and that nothing of it is left on the other side.
func (d *faultDesk) oneCopy(t *testing.T) *workstation {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(120 * time.Second)
	var here, there *workstation
	for {
		ia, ea := d.a.client.App(ctx, "notes")
		ib, eb := d.b.client.App(ctx, "notes")
		runA, runB := ea == nil && ia.State == engine.StateRunning, eb == nil && ib.State == engine.StateRunning
		goneA, goneB := IsNotFound(ea), IsNotFound(eb)
		switch {
		case runA && runB:
			t.Fatalf("the app runs on both machines: ws-a %+v, ws-b %+v", ia, ib)
		case runA && goneB:
			here, there = d.a, d.b
		case runB && goneA:
			here, there = d.b, d.a
		}
		if here != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single copy after 2 minutes: ws-a %+v (%v), ws-b %+v (%v)", ia, ea, ib, eb)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := settledShot(t, here, "notes"); string(got) != string(d.before) {
		t.Errorf("the app on %s does not look as it did before the handoff", here.name)
	}
	checkNothingLeft(t, there)
	return here
}

// checkNothingLeft looks for what an app that is gone could leave on a
// workstation: mounts, cgroups, processes, app and transfer dirs, handoffs
// the sender still thinks are open.
func checkNothingLeft(t *testing.T, w *workstation) {
	t.Helper()
	state := filepath.Join(w.dir, "state")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		data, _ := os.ReadFile("/proc/1/mountinfo")
		if n := strings.Count(string(data), " "+state+"/"); n > 0 {
			left = append(left, fmt.Sprintf("%d mounts", n))
		}
		sum := sha256.Sum256([]byte(state))
		cg := "/handoff/" + hex.EncodeToString(sum[:4]) + "/notes"
		if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cg); len(dirs) > 0 {
			left = append(left, "cgroups "+strings.Join(dirs, " "))
		}
		if ps, _ := filepath.Glob("/proc/[0-9]*/cgroup"); len(ps) > 0 {
			for _, p := range ps {
				if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), cg) {
					left = append(left, "process "+p)
				}
			}
		}
		for _, dir := range []string{"apps/notes", "transfers"} {
			if ents, err := os.ReadDir(filepath.Join(state, dir)); err == nil && (dir == "apps/notes" || len(ents) > 0) {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				left = append(left, dir+" ("+strings.Join(names, " ")+")")
			}
		}
		if outs, _ := filepath.Glob(filepath.Join(state, "handoffs", "out-*.json")); len(outs) > 0 {
			left = append(left, fmt.Sprintf("%d open outgoing handoffs", len(outs)))
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s keeps what the app left: %s", w.name, strings.Join(left, "; "))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cut cuts ws-a's cable, and ends every peer-channel connection on both
// machines as a lost link does in the end (a cut TCP connection would
// otherwise resume when the cable is back, and no answer would be lost).
func (d *faultDesk) cut(t *testing.T) { d.cutHost(t, d.net.Host("a")) }

func (d *faultDesk) cutHost(t *testing.T, h *testnet.Host) {
	t.Helper()
	if err := h.SetLink(false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		ns := "/run/netns/" + d.net.Host(name).NS
		out, err := exec.Command("nsenter", "--net="+ns, "ss", "-K", "( dport = :7466 or sport = :7466 )").CombinedOutput()
		if err != nil {
			t.Fatalf("end the connections of %s: %v %s", name, err, out)
		}
	}
}

// send starts a handoff A→B in the background.
func (d *faultDesk) send() <-chan error {
	done := make(chan error, 1)
	go func() { _, err := d.a.client.Send(context.Background(), "notes", "ws-b"); done <- err }()
	return done
}

// TestLinkCutAtEveryPhase: the link between the two machines is cut at each
// boundary of the handoff — on the source, as it enters each state, and on
// the destination right after it restored the app and before its answer
// can reach the source — and comes back a few seconds later.
func TestLinkCutAtEveryPhase(t *testing.T) {
	for _, point := range []string{"out:syncing", "out:pre-copy", "out:frozen", "out:final", "out:committing", "in:restoring", "in:running"} {
		t.Run(point, func(t *testing.T) {
			failA, failB := point+"=hold", ""
			if strings.HasPrefix(point, "in:") {
				failA, failB = "", point+"=hold"
			}
			d := newFaultDesk(t, failA, failB)
			done := d.send()
			d.waitReached(t, point)
			d.cut(t)
			d.release(t, point)
			time.Sleep(3 * time.Second)
			if err := d.net.Host("a").SetLink(true); err != nil {
				t.Fatal(err)
			}
			err := <-done
			t.Logf("send: %v", err)
			where := d.oneCopy(t)
			t.Logf("the app runs on %s", where.name)
		})
	}
}

// TestDaemonKilledAtEveryPhase: the source's daemon, the destination's, or
// both, die (SIGKILL) at each boundary and are started again.
func TestDaemonKilledAtEveryPhase(t *testing.T) {
	cases := []struct {
		failA, failB string
		// killA, killB: the test kills that daemon too, once the
		// failpoints have fired (both machines down at once).
		killA, killB bool
	}{
		{failA: "out:syncing=kill"}, {failA: "out:pre-copy=kill"}, {failA: "out:frozen=kill"}, {failA: "out:final=kill"},
		{failA: "out:committing=kill"},
		{failB: "in:receiving=kill"}, {failB: "in:restoring=kill"}, {failB: "in:running=kill"},
		// Both down: before the commit was sent, and after the source lost
		// the answer to it.
		{failA: "out:final=kill", killB: true},
		{failB: "in:running=kill", killA: true},
	}
	for _, c := range cases {
		name := strings.Trim(c.failA+"+"+c.failB, "+")
		if c.killA || c.killB {
			name += "+both"
		}
		t.Run(name, func(t *testing.T) {
			d := newFaultDesk(t, c.failA, c.failB)
			done := d.send()
			if c.failA != "" {
				daemonDied(t, d.a)
			}
			if c.failB != "" {
				daemonDied(t, d.b)
			}
			if c.failA == "" {
				// The source saw the destination go: the send ended.
				t.Logf("send: %v", <-done)
			}
			if c.killA {
				d.a.killDaemon()
			}
			if c.killB {
				d.b.killDaemon()
			}
			if c.failA != "" || c.killA {
				d.a.restart(t)
			}
			if c.failB != "" || c.killB {
				d.b.restart(t)
			}
			where := d.oneCopy(t)
			t.Logf("the app runs on %s", where.name)
		})
	}
}

// TestRandomLinkCuts: 50 handoffs back and forth, each with the link cut
// at a random moment for a random while (seeded; the seed is printed): no
// app is lost, and none ever runs twice.
func TestRandomLinkCuts(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HANDOFF_FAULT_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (HANDOFF_FAULT_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	d := newFaultDesk(t, "", "")
	ctx := context.Background()
	here := d.a
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	for i := 0; i < rounds; i++ {
		from, to := here, d.b
		if here == d.b {
			to = d.a
		}
		done := make(chan error, 1)
		go func() { _, err := from.client.Send(ctx, "notes", to.name); done <- err }()
		cutAfter := time.Duration(rng.IntN(2500)) * time.Millisecond
		cutFor := time.Duration(500+rng.IntN(4000)) * time.Millisecond
		host := d.net.Host(strings.TrimPrefix(from.name, "ws-"))
		select {
		case err := <-done:
			t.Logf("handoff %d %s→%s ended before the cut: %v", i, from.name, to.name, err)
			done <- err
		case <-time.After(cutAfter):
			d.cutHost(t, host)
			time.Sleep(cutFor)
			host.SetLink(true)
		}
		err := <-done
		here = d.oneCopy(t)
		t.Logf("handoff %d %s→%s (cut after %v for %v): %v; the app runs on %s", i, from.name, to.name, cutAfter, cutFor, err, here.name)
		d.before = settledShot(t, here, "notes")
	}
}
