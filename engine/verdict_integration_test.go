//go:build integration

package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// holdingApps are programs that each hold one kind of handle and then
// wait; /tmp/ready says the handle is open.
var holdingApps = []struct {
	name   string
	script string
	// dial: a process outside the container (this test) holds a
	// connection to the app's X server.
	dial bool
}{
	{name: "plain", script: `open("/tmp/ready", "w").close()`},
	{name: "inotify-pipe-eventfd", script: `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
libc.inotify_add_watch(fd, b"/usr/share", 0x100)
r, w = os.pipe()
e = libc.eventfd(0, 0)
open("/tmp/ready", "w").close()`},
	{name: "posix message queue", script: `import ctypes, os
rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.restype = ctypes.c_int
q = rt.mq_open(b"/handoff-test", os.O_CREAT | os.O_RDWR, 0o600, None)
if q < 0:
    raise SystemExit("mq_open: errno %d" % ctypes.get_errno())
open("/tmp/ready", "w").close()`},
	{name: "landlock ruleset", script: `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
attr = (ctypes.c_uint64 * 1)(1)  # handled_access_fs: execute
fd = libc.syscall(444, attr, 8, 0)  # landlock_create_ruleset
if fd < 0:
    raise SystemExit("landlock_create_ruleset: errno %d" % ctypes.get_errno())
open("/tmp/ready", "w").close()`},
	{name: "host connection", script: `open("/tmp/ready", "w").close()`, dial: true},
}

// TestManifestPredictsCriu holds the handles manifest's verdict against
// what CRIU really does: an app whose manifest has no blocker dumps, and
// one whose manifest has a blocker does not; suspend refuses the latter
// before anything is frozen, and the app keeps running.
func TestManifestPredictsCriu(t *testing.T) {
	ctx := context.Background()
	for _, app := range holdingApps {
		t.Run(app.name, func(t *testing.T) {
			e := newTestEngine(t)
			name := strings.ReplaceAll(app.name, " ", "-")
			script := app.script + "\nimport time\nwhile True:\n    time.sleep(3600)\n"
			if _, err := e.Run(ctx, Spec{User: appUser(t), Name: name, Args: []string{"python3", "-c", script}, Width: 200, Height: 200}); err != nil {
				t.Fatal(err)
			}
			upper := filepath.Join(e.dirsOf(name).upper(), "tmp")
			waitFile(t, filepath.Join(upper, "ready"))
			if app.dial {
				conn, err := e.DialDisplay(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				waitAccepted(t, e, name)
			}
			m, err := e.SettledHandles(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			blockers := m.Blocking()
			dumpErr := e.Snapshot(ctx, name, filepath.Join(t.TempDir(), "image"))
			t.Logf("manifest: %d blockers %v; CRIU: %v", len(blockers), BlockingError(m), dumpErr)
			if (len(blockers) == 0) != (dumpErr == nil) {
				t.Fatalf("the manifest predicted %d blockers (%v), CRIU's dump said %v", len(blockers), BlockingError(m), dumpErr)
			}
			if len(blockers) == 0 {
				return
			}
			for _, h := range blockers {
				if h.Reason == "" || h.Remedy == "" {
					t.Errorf("blocker %s has no reason or remedy in words: %+v", h.Path, h)
				}
			}
			before, _ := e.Get(name)
			if err := e.Suspend(ctx, name); !errors.Is(err, ErrBlocked) {
				t.Fatalf("suspend: %v, want it refused with ErrBlocked", err)
			}
			if after, _ := e.Get(name); after.State != StateRunning || after.PID != before.PID {
				t.Fatalf("after the refused suspend the app is %+v; it was %+v", after, before)
			}
		})
	}
}

// waitAccepted waits until the app's X server holds a connection from
// outside the container.
func waitAccepted(t *testing.T, e *Engine, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m, err := e.Handles(context.Background(), name); err == nil && len(m.Blocking()) > 0 {
			return
		}
	}
	t.Fatal("the X server did not accept the connection")
}
