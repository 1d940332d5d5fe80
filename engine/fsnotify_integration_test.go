//go:build integration

package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inotifyScript watches a base directory CRIU's reverse inode map has no
// hint for (its inotify handles on the overlay root are what made every GTK
// app fail to dump) and a directory of the app's own, and writes each
// event it sees to /tmp/events.
const inotifyScript = `
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
os.makedirs("/tmp/watched", exist_ok=True)
for d in (b"/usr/share/doc", b"/tmp/watched"):
    if libc.inotify_add_watch(fd, d, 0x100 | 0x2) < 0:  # IN_CREATE | IN_MODIFY
        raise SystemExit("watch failed")
open("/tmp/ready", "w").close()
while True:
    data = os.read(fd, 4096)
    i = 0
    while i < len(data):
        wd, mask, cookie, n = struct.unpack_from("iIII", data, i)
        name = data[i+16:i+16+n].rstrip(b"\0").decode()
        with open("/tmp/events", "a") as f:
            f.write(name + "\n")
        i += 16 + n
`

// TestInotifyWatchesAcrossResume: an app that watches directories of the
// base and of its own upper dir can be suspended and resumed, and its
// watches still report events afterwards.
func TestInotifyWatchesAcrossResume(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "watcher", Args: []string{"python3", "-c", inotifyScript}, Width: 200, Height: 200}); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(e.dirsOf("watcher").upper(), "tmp")
	waitFile(t, filepath.Join(upper, "ready"))
	if err := e.Suspend(ctx, "watcher"); err != nil {
		t.Fatalf("suspend an app with inotify watches on the base: %v", err)
	}
	if err := e.Resume(ctx, "watcher"); err != nil {
		t.Fatal(err)
	}
	if out, err := e.Exec(ctx, "watcher", "touch", "/tmp/watched/after-resume"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(upper, "events"))
		if strings.Contains(string(data), "after-resume") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restored watch reported nothing; events: %q", data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
