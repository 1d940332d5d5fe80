package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// CRIU probes the kernel (about 40 checks: userfaultfd, pagemap, clone3,
// nftables, …) at the start of every dump and restore, and keeps the answers
// in /run/criu.kdat so that later runs skip the probes. It only writes that
// cache on a tmpfs, so that it is gone after a reboot, which may bring another
// kernel. Where /run is not a tmpfs (some VMs and containers), every CRIU run
// probes again: measured here, `criu check` takes 140 ms without the cache and
// 50 ms with it, and a handoff runs CRIU several times, twice on the
// destination while the app is frozen.
//
// CRIU reads the cache from any filesystem, so prepareKdatCache has CRIU
// write it on a private tmpfs and copies it to /run, stamped with the boot and
// the CRIU version it was made for; a new boot or a new CRIU makes it again.
const (
	kdatRunDir = "/run" // built into CRIU
	kdatFile   = "criu.kdat"
	kdatStamp  = "criu.kdat.handoff"
)

// prepareKdatCache makes CRIU's kernel-probe cache when CRIU cannot keep it
// itself. It reports whether it wrote a new cache. Errors leave CRIU as it
// was: slower, not broken.
func prepareKdatCache(ctx context.Context, criuPath string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(kdatRunDir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", kdatRunDir, err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		return false, nil // CRIU keeps its own cache there
	}
	want, err := kdatIdentity(ctx, criuPath)
	if err != nil {
		return false, err
	}
	cache, stamp := filepath.Join(kdatRunDir, kdatFile), filepath.Join(kdatRunDir, kdatStamp)
	if have, err := os.ReadFile(stamp); err == nil && bytes.Equal(have, want) {
		if _, err := os.Stat(cache); err == nil {
			return false, nil
		}
	}
	data, err := probeKdat(ctx, criuPath)
	if err != nil {
		return false, err
	}
	// The cache first, then its stamp: a stamp never vouches for an older
	// cache. Both by rename, so concurrent daemons never read half a file.
	if err := renameio.WriteFile(cache, data, 0o600); err != nil {
		return false, err
	}
	return true, renameio.WriteFile(stamp, want, 0o644)
}

// kdatIdentity names what a cache is valid for: this boot and this CRIU.
func kdatIdentity(ctx context.Context, criuPath string) ([]byte, error) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return nil, fmt.Errorf("read boot id: %w", err)
	}
	version, err := exec.CommandContext(ctx, criuPath, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", criuPath, err)
	}
	return []byte(strings.TrimSpace(string(boot)) + "\n" + strings.TrimSpace(string(version)) + "\n"), nil
}

// probeKdat runs `criu check` in a private mount namespace whose /run is a
// fresh tmpfs, where CRIU saves its cache, and returns the cache's bytes.
func probeKdat(ctx context.Context, criuPath string) ([]byte, error) {
	script := `mount -t tmpfs -o size=1m,mode=0755 handoff-kdat "$1" && "$2" check >/dev/null 2>&1; cat "$1/` + kdatFile + `"`
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script, "sh", kdatRunDir, criuPath)
	// Go makes the new mount namespace private before running the shell, so
	// the tmpfs never shows outside it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("make CRIU's kernel-probe cache: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if len(out) == 0 {
		return nil, errors.New("make CRIU's kernel-probe cache: `criu check` wrote none")
	}
	return out, nil
}

// prepareCriu makes CRIU's kernel-probe cache before the first dump or
// restore needs it; CRIU works without it, so a failure is only logged.
func (e *Engine) prepareCriu() {
	path, err := exec.LookPath("criu")
	if err != nil {
		return // Criu reports it when an operation needs CRIU
	}
	ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	made, err := prepareKdatCache(ctx, path)
	switch {
	case err != nil:
		e.log.Warn("CRIU will probe the kernel on every run", "err", err)
	case made:
		e.log.Info("made CRIU's kernel-probe cache, which CRIU cannot keep itself: /run is not a tmpfs", "path", filepath.Join(kdatRunDir, kdatFile))
	}
}
