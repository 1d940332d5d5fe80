//go:build integration

package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff/handoff/engine/handles"
	"github.com/handoff/handoff/internal/testutil"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/handoff/handoff/stream/fb"
)

func typeText(t *testing.T, e *Engine, name, text string) {
	t.Helper()
	waitForPrompt(t, e, name)
	if out, err := e.Exec(context.Background(), name, "xdotool", "mousemove", "20", "20", "type", "--delay", "10", text); err != nil {
		t.Fatalf("type into %s: %v %s", name, err, out)
	}
}

// shellPrompt is the first text line of a default xterm: a prompt there has
// a few hundred dark pixels, a lone cursor under a hundred, and the black
// root window, before xterm maps, all of them.
var shellPrompt = image.Rect(4, 3, 300, 16) // inside xterm's border

func promptInk(ink int) bool { return ink > 150 && ink < shellPrompt.Dx()*shellPrompt.Dy()/2 }

// waitForPrompt waits until xterm's shell has drawn its prompt. Keys typed
// earlier are echoed by the terminal and then again by the shell once it
// starts, so a screen taken before that is not the app's settled state.
func waitForPrompt(t *testing.T, e *Engine, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		{
			if img, err := snapshot(e, name); err == nil && promptInk(fb.Ink(img, shellPrompt)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the shell in xterm drew no prompt within 30 s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSuspendResumeKeepsTheScreen: xterm with typed, unsaved text comes back
// from disk pixel for pixel, and still takes input.
func TestSuspendResumeKeepsTheScreen(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	typeText(t, e, "notes", "unsaved words")
	before := stableShot(t, e, "notes")
	if err := e.Suspend(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	if info, _ := e.Get("notes"); info.State != StateSuspended || info.PID != 0 || info.ImageBytes == 0 {
		t.Fatalf("suspended app: %+v", info)
	}
	if err := e.Resume(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	if after := stableShot(t, e, "notes"); !bytes.Equal(before, after) {
		n := 0
		for i := range before {
			if before[i] != after[i] {
				n++
			}
		}
		os.WriteFile("/tmp/ho-before.rgba", before, 0o644)
		os.WriteFile("/tmp/ho-after.rgba", after, 0o644)
		t.Fatalf("the screen after resume differs from the screen before suspend (%d bytes differ)", n)
	}
	typeText(t, e, "notes", " more")
	if bytes.Equal(before, stableShot(t, e, "notes")) {
		t.Fatal("typing after the resume changed nothing")
	}
}

// TestContainerMountsAcrossResume: /dev/shm (a directory of /dev's tmpfs,
// not a tmpfs of its own) takes files and keeps them across a checkpoint, and
// the host's firmware tables stay hidden before and after.
func TestContainerMountsAcrossResume(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "mounts", Args: []string{"xterm"}, Width: 300, Height: 200}); err != nil {
		t.Fatal(err)
	}
	// The host's /tmp must not show through the container's.
	hostFile, err := os.CreateTemp("/tmp", "handoff-host-only-")
	if err != nil {
		t.Fatal(err)
	}
	hostFile.Close()
	defer os.Remove(hostFile.Name())
	check := func(when string) {
		t.Helper()
		out, err := e.Exec(ctx, "mounts", "sh", "-c", `stat -c %a /dev/shm; cat /dev/shm/kept; ls -A /sys/firmware | wc -l; `+
			`stat -c %a /tmp; cat /tmp/kept; test -e `+hostFile.Name()+` && echo host-tmp-shows || echo host-tmp-hidden`)
		if got, want := strings.Fields(string(out)), []string{"1777", "kept", "0", "1777", "kept", "host-tmp-hidden"}; err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("%s: /dev/shm mode, its file, the count of firmware entries, /tmp mode, its file, the host's /tmp: %q (err %v), want %q", when, out, err, want)
		}
	}
	if out, err := e.Exec(ctx, "mounts", "sh", "-c", "echo kept > /dev/shm/kept; echo kept > /tmp/kept"); err != nil {
		t.Fatalf("write to /dev/shm and /tmp: %v %s", err, out)
	}
	check("before the suspend")
	if err := e.Suspend(ctx, "mounts"); err != nil {
		t.Fatal(err)
	}
	if err := e.Resume(ctx, "mounts"); err != nil {
		t.Fatal(err)
	}
	check("after the resume")
}

// TestCgroupsAcrossResume: CRIU leaves cgroups to libcontainer, so every
// restored process must be back in the cgroups it had, which are the app's,
// under the app's memory limit.
func TestCgroupsAcrossResume(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	const limit = 300 << 20
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "cg", Args: []string{"xterm"}, Width: 300, Height: 200, MemoryLimit: limit}); err != nil {
		t.Fatal(err)
	}
	waitForPrompt(t, e, "cg")
	cgroupsOfApp := func(when string) map[string]bool {
		t.Helper()
		info, err := e.Get("cg")
		if err != nil {
			t.Fatal(err)
		}
		members := pidNamespaceMembers(t, info.PID)
		if len(members) < 3 { // sh, Xvfb, xterm
			t.Fatalf("%s: %d processes in the app's PID namespace, want at least 3", when, len(members))
		}
		sets := map[string]bool{}
		for _, pid := range members {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			if err != nil {
				t.Fatal(err)
			}
			// The hierarchy that keeps the kernel ready for the restore
			// (ExpectRestore) is gone a grace period after it.
			var lines []string
			for _, line := range strings.SplitAfter(string(data), "\n") {
				if !strings.Contains(line, ":name="+warmupCgroupName+":") {
					lines = append(lines, line)
				}
			}
			sets[strings.Join(lines, "")] = true
		}
		if len(sets) != 1 {
			t.Fatalf("%s: the app's processes are in different cgroups: %v", when, sets)
		}
		for set := range sets {
			if !strings.Contains(set, e.cgroupPath("cg")+"\n") {
				t.Fatalf("%s: the app's processes are not in its cgroup %s: %q", when, e.cgroupPath("cg"), set)
			}
		}
		if got := memoryLimit(t, e.cgroupPath("cg")); got != limit {
			t.Fatalf("%s: memory limit %d, want %d", when, got, limit)
		}
		return sets
	}
	before := cgroupsOfApp("before the suspend")
	if err := e.Suspend(ctx, "cg"); err != nil {
		t.Fatal(err)
	}
	if err := e.Resume(ctx, "cg"); err != nil {
		t.Fatal(err)
	}
	after := cgroupsOfApp("after the resume")
	for set := range before {
		if !after[set] {
			t.Fatalf("cgroups changed across the resume:\nbefore %v\nafter  %v", before, after)
		}
	}
}

// pidNamespaceMembers lists the processes in the PID namespace of pid.
func pidNamespaceMembers(t *testing.T, pid int) []int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	var members []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		var p int
		if _, err := fmt.Sscan(filepath.Base(d), &p); err != nil {
			continue
		}
		if other, err := os.Readlink(d + "/ns/pid"); err == nil && other == ns {
			members = append(members, p)
		}
	}
	return members
}

// memoryLimit reads a cgroup's memory limit, from cgroup v1 or v2.
func memoryLimit(t *testing.T, cgroup string) int64 {
	t.Helper()
	for _, f := range []string{"/sys/fs/cgroup/memory" + cgroup + "/memory.limit_in_bytes", "/sys/fs/cgroup" + cgroup + "/memory.max"} {
		if data, err := os.ReadFile(f); err == nil {
			var n int64
			if _, err := fmt.Sscan(string(data), &n); err != nil {
				t.Fatalf("%s: %q", f, data)
			}
			return n
		}
	}
	t.Fatalf("no memory limit file for cgroup %s", cgroup)
	return 0
}

// TestClockTicksAfterResume: a resumed app keeps running, not just showing.
func TestClockTicksAfterResume(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "clock", Args: []string{"xclock", "-update", "1"}, Width: 300, Height: 300}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := e.Suspend(ctx, "clock"); err != nil {
		t.Fatal(err)
	}
	if err := e.Resume(ctx, "clock"); err != nil {
		t.Fatal(err)
	}
	shot := func() (*image.RGBA, error) { return snapshot(e, "clock") }
	first, err := shot()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		img, err := shot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(img.Pix, first.Pix) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the clock does not tick after the resume")
		}
	}
}

// TestCheckpointRightAfterHostHangUp: the daemon closes a viewer's X
// connection just before a checkpoint. The X server holds its end, a socket
// of the host's network namespace that CRIU cannot find from the app's,
// until it reads the hangup; the checkpoint waits for that instead of
// failing ("Unix socket ... not found", 1 in ~5 demos).
func TestCheckpointRightAfterHostHangUp(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var viewer net.Conn
	e, err := New(Config{StateDir: testutil.StateDir(t), BeforeCheckpoint: func(string) bool {
		mu.Lock()
		defer mu.Unlock()
		if viewer == nil {
			return false
		}
		viewer.Close()
		viewer = nil
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, a := range e.List() {
			e.Stop(context.Background(), a.Name)
		}
		e.Close()
	})
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "viewed", Args: []string{"xclock"}, Width: 320, Height: 240}); err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, error) { return e.DialDisplay(context.Background(), "viewed") }
	connect := func() {
		t.Helper()
		conn, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		// Complete the X11 connection setup: then the server has accepted us.
		conn.Write([]byte{'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		reply := make([]byte, 8)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, reply); err != nil || reply[0] != 1 {
			t.Fatalf("X11 connection setup: %v %v", err, reply)
		}
		mu.Lock()
		viewer = conn
		mu.Unlock()
	}
	for i := 0; i < 5; i++ {
		connect()
		if err := e.Snapshot(ctx, "viewed", filepath.Join(t.TempDir(), "image")); err != nil {
			t.Fatalf("snapshot %d right after the viewer hung up: %v", i+1, err)
		}
	}
	connect()
	if err := e.Freeze(ctx, "viewed"); err != nil {
		t.Fatal(err)
	}
	if err := e.DumpFrozen(ctx, "viewed", filepath.Join(t.TempDir(), "image")); err != nil {
		t.Fatalf("dump of the app frozen right after the viewer hung up: %v", err)
	}
	if err := e.Thaw(ctx, "viewed"); err != nil {
		t.Fatal(err)
	}
}

// TestHostSocketBlocksSuspend: an app with a connection to a host process
// cannot be checkpointed. The realistic case: a host X client (the viewer's
// input connection, a stray xdotool) connected to the app's display. The
// manifest names it, the suspend says why, the app keeps running, and once
// the connection closes the suspend works.
func TestHostSocketBlocksSuspend(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "viewed", Args: []string{"xclock"}, Width: 320, Height: 240}); err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, error) { return e.DialDisplay(context.Background(), "viewed") }
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Complete the X11 connection setup: then the server has accepted us.
	conn.Write([]byte{'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	reply := make([]byte, 8)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, reply); err != nil || reply[0] != 1 {
		t.Fatalf("X11 connection setup: %v %v", err, reply)
	}
	manifest, err := e.Handles(ctx, "viewed")
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest.Blocking()) == 0 {
		t.Fatal("the manifest does not mark the host connection blocking")
	}
	err = e.Suspend(ctx, "viewed")
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "unix socket") || !strings.Contains(err.Error(), "keeps running") {
		t.Fatalf("suspend: %v; want ErrBlocked naming the unix socket", err)
	}
	if info, _ := e.Get("viewed"); info.State != StateRunning || !pidAlive(info.PID) {
		t.Fatalf("after the refused suspend the app is %+v", info)
	}
	conn.Close()
	// Closing the connection is the remedy the message gives.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err = e.Suspend(ctx, "viewed"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("suspend after closing the connection: %v", err)
	}
}

// TestRestartKeepsRunningAndSuspendedApps: a new engine on the same state
// dir lists both apps; both are usable.
func TestRestartKeepsRunningAndSuspendedApps(t *testing.T) {
	ctx := context.Background()
	dir := testutil.StateDir(t)
	e, err := New(Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"running", "sleeping"} {
		if _, err := e.Run(ctx, Spec{User: appUser(t), Name: n, Args: []string{"xclock"}, Width: 200, Height: 200}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Suspend(ctx, "sleeping"); err != nil {
		t.Fatal(err)
	}
	pid := mustGet(t, e, "running").PID
	e.Close()
	e2, err := New(Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, a := range e2.List() {
			e2.Stop(ctx, a.Name)
		}
		e2.Close()
	})
	if got := mustGet(t, e2, "running"); got.State != StateRunning || got.PID != pid {
		t.Fatalf("re-adopted app: %+v (pid was %d)", got, pid)
	}
	if got := mustGet(t, e2, "sleeping"); got.State != StateSuspended {
		t.Fatalf("suspended app after restart: %+v", got)
	}
	if out, err := e2.Exec(ctx, "running", "true"); err != nil {
		t.Fatalf("exec in the re-adopted app: %v %s", err, out)
	}
	if err := e2.Suspend(ctx, "running"); err != nil {
		t.Fatalf("suspend the re-adopted app: %v", err)
	}
	for _, n := range []string{"running", "sleeping"} {
		if err := e2.Resume(ctx, n); err != nil {
			t.Fatalf("resume %s: %v", n, err)
		}
	}
}

func mustGet(t *testing.T, e *Engine, name string) Info {
	t.Helper()
	in, err := e.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// mountsPerApp: a running app's overlay root, its pinned network namespace
// and the sysfs of that namespace.
const mountsPerApp = 3

// leftovers counts what an engine could leak: mounts under its
// state dir, its cgroup dirs, processes whose root is in its state dir, and
// this process's open fds.
func leftovers(t *testing.T, e *Engine) (mounts, cgroups, procs, fds int) {
	t.Helper()
	data, _ := os.ReadFile("/proc/1/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], e.StateDir()) {
			mounts++
		}
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + e.cgroup + "/*")
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			cgroups++
		}
	}
	ps, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range ps {
		if cg, err := os.ReadFile(p); err == nil && strings.Contains(string(cg), e.cgroup+"/") {
			procs++
		}
	}
	fdList, _ := os.ReadDir("/proc/self/fd")
	return mounts, cgroups, procs, len(fdList)
}

// TestCyclesLeakNothing: 20 suspend/resume cycles, then stop: nothing of the
// app is left, and the daemon holds no more fds than before.
func TestCyclesLeakNothing(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	_, _, _, fdsBefore := leftovers(t, e)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "cycle", Args: []string{"xterm"}, Width: 400, Height: 300}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := e.Suspend(ctx, "cycle"); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := e.Resume(ctx, "cycle"); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	if m, c, p, _ := leftovers(t, e); m != mountsPerApp || p < 3 {
		t.Fatalf("while running: %d mounts, %d cgroups, %d processes; want %d mounts and the app's processes", m, c, p, mountsPerApp)
	}
	if err := e.Stop(ctx, "cycle"); err != nil {
		t.Fatal(err)
	}
	m, c, p, fds := leftovers(t, e)
	if m != 0 || c != 0 || p != 0 {
		t.Fatalf("after stop: %d mounts, %d cgroups, %d processes left", m, c, p)
	}
	if fds > fdsBefore+2 { // the runtime may open an fd or two of its own
		t.Fatalf("fds went from %d to %d over 20 cycles", fdsBefore, fds)
	}
	if _, err := os.Stat(filepath.Join(e.StateDir(), "apps", "cycle")); !os.IsNotExist(err) {
		t.Fatalf("the app's directory is left: %v", err)
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if err := e.Suspend(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown app: %v", err)
	}
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "../x", Args: []string{"xterm"}}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "one", Args: []string{"xclock"}, Width: 200, Height: 200}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "one", Args: []string{"xclock"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := e.Resume(ctx, "one"); !errors.Is(err, ErrWrongState) {
		t.Fatalf("resume of a running app: %v", err)
	}
	if err := e.Suspend(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	// A damaged page image is refused and kept.
	pages, _ := filepath.Glob(filepath.Join(e.StateDir(), "apps", "one", "checkpoint", "pages-*.img"))
	if len(pages) == 0 {
		t.Fatal("no page image in the checkpoint")
	}
	data, _ := os.ReadFile(pages[0])
	data[len(data)/2] ^= 0xff
	os.WriteFile(pages[0], data, 0o600)
	if err := e.Resume(ctx, "one"); !errors.Is(err, ErrBadImage) {
		t.Fatalf("resume of a damaged image: %v", err)
	}
	if _, err := os.Stat(pages[0]); err != nil {
		t.Fatal("the damaged checkpoint was deleted")
	}
	if got := mustGet(t, e, "one"); got.State != StateSuspended || got.Error == "" {
		t.Fatalf("after a failed resume: %+v", got)
	}
}

// TestWarmHandlesCachesHashes: with WarmHandles, the engine hashes a new
// app's files by itself soon after it starts, so the first send reads none.
func TestWarmHandlesCachesHashes(t *testing.T) {
	ctx := context.Background()
	for _, warm := range []bool{false, true} {
		e, err := New(Config{StateDir: testutil.StateDir(t), WarmHandles: warm})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, a := range e.List() {
				e.Stop(ctx, a.Name)
			}
			e.Close()
		})
		if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "warm", Args: []string{"xterm"}, Width: 400, Height: 300}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(warmDelay + 2*time.Second)
		_, missesBefore, _ := e.hashes.Stats()
		if _, err := e.Handles(ctx, "warm"); err != nil {
			t.Fatal(err)
		}
		_, misses, hashed := e.hashes.Stats()
		switch {
		case warm && misses != missesBefore:
			t.Errorf("warm: the first manifest after start still hashed %d files", misses-missesBefore)
		case !warm && (missesBefore != 0 || misses == 0 || hashed == 0):
			t.Errorf("not warm: %d files hashed before any manifest, %d after (%d bytes)", missesBefore, misses, hashed)
		}
	}
}

// TestDumpRunsFrozen: a dump of a running app runs with the app's cgroup
// frozen by the engine (CRIU would wait 100 ms for its own freeze), and the
// app runs again afterwards whether the dump worked or failed; an app that
// was frozen before stays frozen.
func TestDumpRunsFrozen(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "frozen", Args: []string{"xclock"}, Width: 200, Height: 200}); err != nil {
		t.Fatal(err)
	}
	a, err := e.lookup("frozen")
	if err != nil {
		t.Fatal(err)
	}
	ctr := a.ctr
	status := func() libcontainer.Status {
		st, err := ctr.Status()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	failed := errors.New("the dump failed")
	for _, dumpErr := range []error{nil, failed} {
		var during libcontainer.Status
		err := withFrozen(ctr, func() error { during = status(); return dumpErr })
		if !errors.Is(err, dumpErr) || (dumpErr == nil && err != nil) {
			t.Fatalf("withFrozen returned %v, want %v", err, dumpErr)
		}
		if during != libcontainer.Paused || status() != libcontainer.Running {
			t.Fatalf("dump error %v: the app was %s during the dump and %s after; want paused, then running", dumpErr, during, status())
		}
	}
	if err := e.Freeze(ctx, "frozen"); err != nil {
		t.Fatal(err)
	}
	if err := withFrozen(ctr, func() error { return failed }); !errors.Is(err, failed) || status() != libcontainer.Paused {
		t.Fatalf("a frozen app after a failed dump: %v, %s; want it still frozen", err, status())
	}
	if err := e.Thaw(ctx, "frozen"); err != nil {
		t.Fatal(err)
	}
}

// TestHashesServeEveryContainerAndTheHost: base files an app has open are
// cached as the host's files, not under the app's overlay (a device of its
// own), so another container over the same base and a destination
// checking a manifest against "/" read none of them again.
func TestHashesServeEveryContainerAndTheHost(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	manifest := func(name string) *handles.Manifest {
		if _, err := e.Run(ctx, Spec{User: appUser(t), Name: name, Args: []string{"xterm"}, Width: 400, Height: 300}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Stop(ctx, name) })
		m, err := e.Handles(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := manifest("one")
	_, misses, _ := e.hashes.Stats()
	if misses == 0 || len(first.Required()) == 0 {
		t.Fatalf("the first app's manifest hashed %d files for %d required ones", misses, len(first.Required()))
	}
	second := manifest("two")
	// The second app may have opened files the first had not yet.
	seen := map[string]bool{}
	for _, r := range first.Required() {
		seen[r.Path] = true
	}
	var fresh int64
	for _, r := range second.Required() {
		if r.Hash != "" && !seen[r.Path] {
			fresh++
		}
	}
	if _, again, _ := e.hashes.Stats(); again-misses > fresh {
		t.Errorf("a second container over the same base hashed %d files again (%d are new)", again-misses, fresh)
	}
	_, misses, _ = e.hashes.Stats()
	if lacks := second.Missing(handles.LocalChecker("/", e.hashes)); len(lacks) != 0 {
		t.Errorf("checked against this machine's own files, %d are missing, e.g. %s", len(lacks), lacks[0].Path)
	}
	if _, again, _ := e.hashes.Stats(); again != misses {
		t.Errorf("checking the manifest against / hashed %d files again", again-misses)
	}
}
