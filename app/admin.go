package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Trust decides who may make this device restore an image with its root
// daemon, so changing it (trust, untrust, finishing or accepting a pairing)
// is an administrator's decision: root, or a yes from polkit for the action
// below (packaging/deb/dev.handoff.policy), asked with the caller's
// process so that the desktop's agent can ask for a password. Membership
// in the handoff group alone is not enough.
const polkitTrustAction = "dev.handoff.trust"

// pkcheck is the polkit client; a variable for tests.
var pkcheck = "pkcheck"

// polkitWait bounds how long an administrator has to answer the
// authentication dialog.
const polkitWait = 5 * time.Minute

// errNoAdmin says why a caller is not an administrator, in words.
var errNoAdmin = errors.New("not an administrator")

// peerStartKey carries the start time (in clock ticks since boot, as
// /proc/PID/stat has it) of the process at the other end of a local API
// connection, read when it connected: polkit names a process by PID and
// start time, so a PID reused later is not mistaken for it.
type peerStartKey struct{}

// withPeerStart records the start time of the connecting process pid.
func withPeerStart(ctx context.Context, pid int32) context.Context {
	if start, err := processStart(pid); err == nil {
		return context.WithValue(ctx, peerStartKey{}, start)
	}
	return ctx
}

// processStart reads field 22 of /proc/PID/stat.
func processStart(pid int32) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64) // field 22 is the 20th after the name
}

// requireAdmin lets root through, and asks polkit about anyone else. When
// it refuses, it answers 403 saying what to run instead (command) and
// returns false.
func (h *handler) requireAdmin(w http.ResponseWriter, r *http.Request, command string) bool {
	err := administers(r.Context())
	if err == nil {
		return true
	}
	h.log.Info("trust change refused", "err", err)
	writeError(w, http.StatusForbidden, "needs_admin",
		fmt.Sprintf("trusting a device needs an administrator: run `sudo %s` (%v)", command, err))
	return false
}

// administers reports whether the caller of a request may change trust.
func administers(ctx context.Context) error {
	cred, ok := ctx.Value(credKey{}).(unix.Ucred)
	if !ok {
		return fmt.Errorf("%w: the caller is unknown", errNoAdmin)
	}
	if cred.Uid == 0 {
		return nil
	}
	start, ok := ctx.Value(peerStartKey{}).(uint64)
	if !ok {
		return fmt.Errorf("%w: the calling process is gone", errNoAdmin)
	}
	return polkitAllows(ctx, cred, start)
}

// polkitAllows asks polkit whether the process (pid, start, uid) may
// change trust, letting the desktop's agent ask the user to authenticate.
func polkitAllows(ctx context.Context, cred unix.Ucred, start uint64) error {
	path, err := exec.LookPath(pkcheck)
	if err != nil {
		return fmt.Errorf("%w, and polkit (pkcheck) is not installed to ask for one", errNoAdmin)
	}
	ctx, cancel := context.WithTimeout(ctx, polkitWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--action-id", polkitTrustAction,
		"--process", fmt.Sprintf("%d,%d,%d", cred.Pid, start, cred.Uid), "--allow-user-interaction")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return fmt.Errorf("%w: polkit did not authorize it", errNoAdmin)
	case errors.As(err, &exit) && exit.ExitCode() == 2:
		return fmt.Errorf("%w: polkit wants an administrator's password, and no authentication agent could ask for it", errNoAdmin)
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		return fmt.Errorf("%w: the authentication dialog was dismissed", errNoAdmin)
	}
	msg := strings.TrimSpace(string(out))
	if i := strings.IndexByte(msg, '\n'); i > 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("%w, and polkit could not be asked (%v: %s)", errNoAdmin, err, msg)
}
