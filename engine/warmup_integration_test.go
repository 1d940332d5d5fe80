//go:build integration

package engine

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExpectRestore checks that the kernel is kept ready (a favordynmods
// cgroup hierarchy, which every process then lists, and a perf event) and a
// spare network namespace is made while at least one restore is expected,
// and that they go once none is. The hierarchy
// is the kernel's: another process on the machine may hold one too, so what
// this engine holds is told by its fds.
func TestExpectRestore(t *testing.T) {
	e := newTestEngine(t)
	hierarchy := ":name=" + warmupCgroupName + ":/\n"
	listed := func() bool {
		data, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(data), hierarchy)
	}
	// held counts this process's open cgroup mounts and perf events.
	held := func() (cgroups, perfEvents int) {
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			n, err := strconv.Atoi(fd.Name())
			if err != nil {
				continue
			}
			if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); target == "anon_inode:[perf_event]" {
				perfEvents++
			}
			var st unix.Statfs_t
			if unix.Fstatfs(n, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
				cgroups++
			}
		}
		return cgroups, perfEvents
	}
	// libcontainer keeps fds of its own on cgroup file systems.
	cgroupsBefore, perfBefore := held()
	check := func(when string, more int) {
		t.Helper()
		if c, p := held(); c != cgroupsBefore+more || p != perfBefore+more {
			t.Fatalf("%s: %d more cgroup mounts and %d more perf events held, want %d of each", when, c-cgroupsBefore, p-perfBefore, more)
		}
	}
	first := e.ExpectRestore()
	second := e.ExpectRestore()
	e.warmup.mu.Lock()
	ready := e.warmup.ready
	e.warmup.mu.Unlock()
	<-ready
	check("while a restore is expected", 1)
	if !listed() {
		t.Fatalf("while a restore is expected, /proc/self/cgroup does not list %q", hierarchy)
	}
	isNetns := func(path string) bool {
		var st unix.Statfs_t
		return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
	}
	var st unix.Statfs_t
	if spare := e.warmup.spare; spare < 0 || unix.Fstatfs(spare, &st) != nil || st.Type != unix.NSFS_MAGIC {
		t.Fatalf("while a restore is expected, no spare network namespace (fd %d)", spare)
	}
	taken := filepath.Join(t.TempDir(), "netns")
	if !e.warmup.takeSpareNetns(taken) || !isNetns(taken) {
		t.Fatal("the spare network namespace could not be taken")
	}
	defer removeNetns(taken)
	if e.warmup.takeSpareNetns(taken + "2") {
		t.Fatal("the spare network namespace was taken twice")
	}
	first()
	first() // a second call changes nothing
	check("when one of two expected restores ended", 1)
	second()
	check("when no restore is expected", 0)
	// A spare nobody took goes when no restore is expected.
	done := e.ExpectRestore()
	e.warmup.mu.Lock()
	ready = e.warmup.ready
	e.warmup.mu.Unlock()
	<-ready
	spare := e.warmup.spare
	done()
	if spare < 0 || unix.Fstatfs(spare, &st) == nil && st.Type == unix.NSFS_MAGIC {
		t.Fatalf("the spare network namespace (fd %d) is kept after the expected restore", spare)
	}
}
