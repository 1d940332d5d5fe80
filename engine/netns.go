package engine

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// An app's network namespace is made by the engine, not by libcontainer,
// and handed to the container by path. CRIU then treats it as external:
// it neither dumps nor restores addresses, routes and firewall tables of a
// namespace that only has loopback, which took ~60 ms of every restore and
// part of every frozen dump. The namespace lives as long as the container.

// createNetns makes a network namespace with loopback up and pins it at
// path with a bind mount.
func createNetns(path string) error {
	ns, err := newNetns()
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	return pinNetns(ns, path)
}

// newNetns makes a network namespace with loopback up and returns an fd
// that keeps it (until it is closed, or the process ends).
func newNetns() (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread that entered the new namespace ends
		// with this goroutine instead of going back to serve others.
		runtime.LockOSThread()
		fd, err := enterNewNetns()
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		return -1, fmt.Errorf("network namespace: %w", r.err)
	}
	return r.fd, nil
}

func enterNewNetns() (int, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("unshare: %w", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return -1, err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return -1, fmt.Errorf("loopback up: %w", err)
	}
	return unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// mountSysfs mounts a sysfs of the app's network namespace at d.sys(), for
// the container's /sys. The kernel lets only the owner of a network
// namespace mount a sysfs showing it, and the app's user namespace does not
// own the namespace the engine made; and a bind of the host's /sys would
// bring its submounts, locked, which CRIU cannot bind again. A fresh sysfs
// has none.
func mountSysfs(d appDirs) error {
	if mounted, _ := isMountpoint(d.sys()); mounted {
		return nil
	}
	if err := os.MkdirAll(d.sys(), 0o755); err != nil {
		return err
	}
	return inNetns(d.netns(), func() error {
		err := unix.Mount("sysfs", d.sys(), "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		if err != nil {
			return fmt.Errorf("mount the app's sysfs: %w", err)
		}
		return nil
	})
}

// pinNetns pins the network namespace of the fd ns at path.
func pinNetns(ns int, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", ns), path, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("network namespace: pin at %s: %w", path, err)
	}
	return nil
}

// removeNetns unpins a namespace made by createNetns; the kernel frees it
// once no process is left in it. A missing one is not an error.
func removeNetns(path string) error {
	for {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point
		}
		if err != nil {
			return fmt.Errorf("unpin network namespace %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// inNetns runs criu, a libcontainer call that starts CRIU, on a thread in
// the app's network namespace, so that CRIU starts there. CRIU then sees the
// app in its own namespace and leaves the namespace alone; for one that
// differs, even one marked external, it reads the kernel's connection-
// tracking tables on every dump, which walks all of the host's conntrack
// buckets: 29 ms of each dump here, frozen time in the final one.
func inNetns(path string, criu func() error) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return criu() // an app from before the engine made namespaces
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine instead of
		// going back, in the app's namespace, to serve others.
		runtime.LockOSThread()
		ns, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- criu()
	}()
	return <-errc
}
