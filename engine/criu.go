package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"
)

// minCriuVersion is the oldest CRIU this engine accepts: 4.0 is the first that
// understands the [vvar_vclock] mapping of current kernels (3.17 fails with
// "Unexpected rt vDSO area bounds").
const minCriuVersion = 40000

// CriuInfo describes the CRIU found on this machine and what the kernel lets it do.
type CriuInfo struct {
	Path    string `json:"path"`
	Version int    `json:"version"` // e.g. 40101 for 4.1.1
	// MemTrack reports soft-dirty tracking; without it incremental pre-dumps do not work.
	MemTrack bool `json:"mem_track"`
	// LazyPages reports userfaultfd support for lazy restore: CRIU's and
	// the kernel's, for processes in a user namespace of their own (see
	// lazyInUserns).
	LazyPages bool `json:"lazy_pages"`
	// LazyPagesOff says, when CRIU could restore lazily but the kernel does
	// not let apps' user namespaces do it, why, and what would.
	LazyPagesOff string `json:"lazy_pages_off,omitempty"`
}

// lazyInUserns reports whether a process in a user namespace of its own may
// make a userfaultfd that handles the kernel's faults too, which CRIU's lazy
// restore needs: only with vm.unprivileged_userfaultfd=1 (Debian's default
// is 0, and the kernel asks for CAP_SYS_PTRACE of the host otherwise).
// Handoff does not change that setting: it widens what every local user may
// do. Without it restores are eager: the app runs once all its memory is in.
func lazyInUserns() (bool, string) {
	data, err := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd")
	if err != nil {
		return false, "the kernel has no vm.unprivileged_userfaultfd"
	}
	if strings.TrimSpace(string(data)) == "1" {
		return true, ""
	}
	return false, "vm.unprivileged_userfaultfd=0: apps in their own user namespaces restore eagerly (an administrator may set it to 1 for faster restores of large apps)"
}

// VersionString formats Version as major.minor.sublevel.
func (c CriuInfo) VersionString() string {
	if c.Version == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d.%d", c.Version/10000, c.Version/100%100, c.Version%100)
}

// CriuError explains why CRIU cannot be used here, naming the failed check.
type CriuError struct {
	Check  string // what failed: "not installed", "version", or the `criu check` error
	Detail string
}

func (e *CriuError) Error() string {
	msg := "CRIU is not usable on this machine: " + e.Check
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg + "; run `make deps` or packaging/install-deps.sh as root to install a working CRIU"
}

// ProbeCriu finds criu on PATH, runs `criu check` and asks it (through go-criu's
// RPC) for its version and features. go-criu has no call for the CHECK request,
// so the check itself runs the binary and reports the first error line it prints.
func ProbeCriu(ctx context.Context) (CriuInfo, error) {
	path, err := exec.LookPath("criu")
	if err != nil {
		return CriuInfo{}, &CriuError{Check: "not installed", Detail: "no criu on PATH"}
	}
	info := CriuInfo{Path: path}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "check")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return info, &CriuError{Check: "`criu check` failed", Detail: firstErrorLine(out.String(), err)}
	}
	c := criu.MakeCriu()
	c.SetCriuPath(path)
	v, err := c.GetCriuVersion()
	if err != nil {
		return info, &CriuError{Check: "version query failed", Detail: err.Error()}
	}
	info.Version = v
	if v < minCriuVersion {
		return info, &CriuError{Check: "version", Detail: fmt.Sprintf("CRIU %s is too old, need 4.0 or newer", info.VersionString())}
	}
	feat, err := c.FeatureCheck(&rpc.CriuFeatures{LazyPages: proto.Bool(true)})
	if err == nil && feat.GetLazyPages() {
		info.LazyPages, info.LazyPagesOff = lazyInUserns()
	}
	// The RPC feature check reports mem_track from what the kernel advertises;
	// on these VMs it says yes while soft-dirty bits never get set. The CLI
	// check really dirties a page and looks, so it decides.
	info.MemTrack = exec.CommandContext(ctx, path, "check", "--feature", "mem_dirty_track").Run() == nil
	return info, nil
}

func firstErrorLine(out string, err error) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "Error") {
			return strings.TrimSpace(l)
		}
	}
	if s := strings.TrimSpace(out); s != "" {
		return strings.SplitN(s, "\n", 2)[0]
	}
	return err.Error()
}
