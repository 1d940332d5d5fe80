//go:build integration

package migration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff/handoff/engine"
)

// lockHolder is an app that holds a POSIX lock on a file of its user's
// home, as Firefox does on its profile's .parentlock, and says so in /tmp.
const lockHolder = `import fcntl, os, time
f = open(os.path.expanduser("~/handoff-test.lock"), "a+")
fcntl.lockf(f, fcntl.LOCK_EX)
open("/tmp/locked", "w").close()
while True:
    time.sleep(3600)
`

// runLockHolder starts lockHolder on s and returns the locked file's host
// path once the lock is taken.
func runLockHolder(t *testing.T, s side, name string) string {
	t.Helper()
	if _, err := s.eng.Run(context.Background(), engine.Spec{User: appUser(t), Name: name, Args: []string{"python3", "-c", lockHolder}, Width: 200, Height: 200}); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(s.eng.StateDir(), "apps", name, "upper", "tmp", "locked")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the app did not take its lock")
		}
	}
	return filepath.Join(appUser(t).Home, "handoff-test.lock")
}

// lockHolderPID returns the host pid holding a POSIX write lock on path, or 0.
func lockHolderPID(t *testing.T, path string) int {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if lk.Type == unix.F_UNLCK {
		return 0
	}
	return int(lk.Pid)
}

// inApp reports whether host pid belongs to the app's container.
func inApp(e *engine.Engine, name string, pid int) bool {
	info, err := e.Get(name)
	if err != nil || info.PID == 0 {
		return false
	}
	mine, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	init, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", info.PID))
	return err1 == nil && err2 == nil && mine == init
}

// TestSharedLockHandoff: the app holds a lock on a file of its user's home,
// and the destination sees the same home (here the same machine; at work, a
// home on a file server). The restore there must take the lock, which the
// frozen copy here would hold forever: the copy here ends before the
// commit, and comes back from its final image if the handoff fails.
func TestSharedLockHandoff(t *testing.T) {
	t.Run("arrives holding its lock", func(t *testing.T) {
		a, b := newSide(t), newSide(t)
		lock := runLockHolder(t, a, "locker")
		rv := &Receiver{Engine: b.eng, WorkDir: b.work}
		s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := s.Send(ctx, "locker", serve(t, rv, nil), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := a.eng.Get("locker"); err == nil {
			t.Error("the source still has the app")
		}
		if pid := lockHolderPID(t, lock); !inApp(b.eng, "locker", pid) {
			t.Errorf("the lock is held by pid %d, not by the app on the destination", pid)
		}
		if left, _ := os.ReadDir(a.work); len(left) != 0 {
			t.Errorf("the sender left %d entries in its work dir", len(left))
		}
	})
	t.Run("a failed commit resumes it here", func(t *testing.T) {
		a, b := newSide(t), newSide(t)
		lock := runLockHolder(t, a, "locker")
		rv := &Receiver{Engine: b.eng, WorkDir: b.work}
		peer := serve(t, rv, cutLinkOn("/commit")(nil))
		// The commit's answer is lost: the sender asks the destination how
		// the handoff ended, which never saw the commit.
		s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work,
			Reach: func(context.Context, string) (Peer, error) { return peer, nil }}
		t.Cleanup(s.Close)
		_, err := s.Send(context.Background(), "locker", peer, nil)
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("a lost commit: %v, want the outcome unknown", err)
		}
		var info engine.Info
		var gerr error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if info, gerr = a.eng.Get("locker"); gerr == nil && info.State == engine.StateRunning {
				break
			}
		}
		if gerr != nil || info.State != engine.StateRunning {
			t.Fatalf("after the failed handoff the app is %+v, %v; want running here", info, gerr)
		}
		if _, err := b.eng.Get("locker"); err == nil {
			t.Error("the destination kept the app")
		}
		if pid := lockHolderPID(t, lock); !inApp(a.eng, "locker", pid) {
			t.Errorf("the lock is held by pid %d, not by the app resumed here", pid)
		}
		if rv.Pending() != 0 {
			t.Error("the receiver keeps the failed handoff")
		}
	})
}
