package engine

import (
	"errors"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A restore takes two kernel paths that wait for an RCU grace period
// (10–12 ms each on these machines, seen in the scheduler's trace events)
// unless something already keeps them ready:
//
//   - Moving a process into a cgroup (libcontainer moves the restoring CRIU
//     into the app's cgroups) write-locks the kernel's cgroup_threadgroup_rwsem,
//     which waits for a grace period unless a cgroup hierarchy is mounted
//     with favordynmods.
//   - CRIU stops the restored tasks with hardware breakpoints; the first
//     per-task perf event in the system switches on the scheduler's perf
//     hooks with synchronize_rcu.
//
// kernelWarmup keeps both ready while a restore is expected: a cgroup v1
// hierarchy of its own, without controllers, mounted with favordynmods, and
// a disabled software perf event on this process. Setting them up costs the
// same waits once, outside the app's downtime. The mount is detached (never
// in the file tree) and dies with this process; CRIU does not see it, as it
// leaves cgroups alone (criuOpts). Both make forks, exits and context
// switches a little more expensive, so they are dropped when no restore is
// expected.
//
// It also makes a spare network namespace for the restored app, kept by an
// fd: making one takes 2–6 ms here (the kernel sets up every protocol's
// state for it).
type kernelWarmup struct {
	mu    sync.Mutex
	users int
	ready chan struct{} // closed once set up; nil when nobody expects a restore
	fds   []int         // what keeps the kernel ready
	spare int           // fd of a network namespace for the next restore; -1 if none
}

// warmupCgroupName names the hierarchy; every process lists it in
// /proc/PID/cgroup while it exists.
const warmupCgroupName = "handoff-restore"

// ExpectRestore tells the engine a restore is coming soon (an app is being
// handed to this machine), so that it makes the kernel ready for it in the
// background. Call done when the restore happened or will not happen.
func (e *Engine) ExpectRestore() (done func()) {
	w := &e.warmup
	w.mu.Lock()
	w.users++
	if w.users == 1 {
		ready := make(chan struct{})
		w.ready, w.spare = ready, -1
		go func() {
			defer close(ready)
			fds, err := warmKernel()
			w.fds = fds // read only after ready is closed
			if err != nil {
				e.log.Debug("restores wait for the kernel", "err", err)
			}
			w.spare, err = newNetns()
			if err != nil {
				e.log.Debug("no spare network namespace", "err", err)
			}
		}()
	}
	w.mu.Unlock()
	var once sync.Once
	return func() { once.Do(w.release) }
}

func (w *kernelWarmup) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.users--
	if w.users > 0 {
		return
	}
	<-w.ready
	for _, fd := range w.fds {
		unix.Close(fd)
	}
	if w.spare >= 0 {
		unix.Close(w.spare)
	}
	w.fds, w.ready, w.spare = nil, nil, -1
}

// takeSpareNetns pins the spare network namespace, if one is ready, at path
// (as createNetns would have made one there) and reports whether it did.
func (w *kernelWarmup) takeSpareNetns(path string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ready == nil {
		return false
	}
	select {
	case <-w.ready:
	default:
		return false // still being made
	}
	if w.spare < 0 {
		return false
	}
	if err := pinNetns(w.spare, path); err != nil {
		return false
	}
	unix.Close(w.spare)
	w.spare = -1
	return true
}

// warmKernel sets up what keeps the kernel ready; either part may be
// missing (no cgroup v1 in the kernel, perf events disabled), and the
// error says why.
func warmKernel() ([]int, error) {
	var fds []int
	cg, cgErr := favordynmodsHierarchy()
	if cgErr == nil {
		fds = append(fds, cg)
	}
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_DUMMY,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Bits:   unix.PerfBitDisabled,
	}
	perf, perfErr := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if perfErr == nil {
		fds = append(fds, perf)
	}
	return fds, errors.Join(cgErr, perfErr)
}

// favordynmodsHierarchy mounts a controller-less cgroup v1 hierarchy with
// favordynmods, detached: the returned mount fd is all that keeps it. While
// the kernel destroys the previous one (a grace period after it was let go)
// the mount fails with EBUSY; the kernel's own mount(2) retries then too.
func favordynmodsHierarchy() (int, error) {
	for tries := 1; ; tries++ {
		fd, err := mountFavordynmods()
		if !errors.Is(err, unix.EBUSY) || tries == 100 {
			return fd, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mountFavordynmods() (int, error) {
	fs, err := unix.Fsopen("cgroup", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	for _, set := range []func() error{
		func() error { return unix.FsconfigSetFlag(fs, "none") },
		func() error { return unix.FsconfigSetString(fs, "name", warmupCgroupName) },
		func() error { return unix.FsconfigSetFlag(fs, "favordynmods") },
		func() error { return unix.FsconfigCreate(fs) },
	} {
		if err := set(); err != nil {
			return -1, err
		}
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
}
