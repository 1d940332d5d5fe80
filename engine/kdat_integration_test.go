//go:build integration

package engine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestKdatCache checks that, after prepareKdatCache, a CRIU run loads its
// kernel-probe cache instead of probing; that the cache is made once per boot
// and CRIU; and that a stamp from another boot makes it again.
func TestKdatCache(t *testing.T) {
	criuPath, err := exec.LookPath("criu")
	if err != nil {
		t.Fatalf("criu is not installed; run make deps: %v", err)
	}
	ctx := context.Background()
	var st unix.Statfs_t
	if err := unix.Statfs(kdatRunDir, &st); err != nil {
		t.Fatal(err)
	}
	runIsTmpfs := st.Type == unix.TMPFS_MAGIC
	stamp := filepath.Join(kdatRunDir, kdatStamp)

	// As after a reboot: a stamp for another boot.
	if err := os.WriteFile(stamp, []byte("another boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	made, err := prepareKdatCache(ctx, criuPath)
	if err != nil {
		t.Fatal(err)
	}
	if made == runIsTmpfs {
		t.Fatalf("made a cache: %v, with /run a tmpfs: %v; want one exactly when /run is not a tmpfs", made, runIsTmpfs)
	}
	if runIsTmpfs {
		// CRIU keeps the cache itself: one run makes it.
		if err := exec.Command(criuPath, "check").Run(); err != nil {
			t.Fatal(err)
		}
	}

	log := filepath.Join(t.TempDir(), "check.log")
	if out, err := exec.Command(criuPath, "check", "-v4", "--log-file", log).CombinedOutput(); err != nil {
		t.Fatalf("criu check: %v: %s", err, out)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "Loaded kdat cache from /run/criu.kdat") {
		t.Errorf("CRIU probed the kernel instead of loading the cache; its log:\n%s", firstLines(string(data), 15))
	}

	// CRIU deletes a cache it fails to save over; one it loaded must stay.
	if _, err := os.Stat(filepath.Join(kdatRunDir, kdatFile)); err != nil {
		t.Errorf("the cache is gone after a CRIU run: %v", err)
	}
	if made, err := prepareKdatCache(ctx, criuPath); err != nil || made {
		t.Errorf("second prepare: made %v, err %v; want the cache kept", made, err)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
