package engine

import (
	"bytes"
	"context"
	"fmt"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Exec runs a command inside a running app's container as the app's user
// (with the app's display, and no capabilities) and returns its combined
// output. The process must end before the app is suspended: its stdio is
// connected to the daemon.
func (e *Engine) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	a, end, err := e.begin(name)
	if err != nil {
		return nil, err
	}
	defer end()
	a.mu.Lock()
	ctr, state, spec := a.ctr, a.rec.State, a.rec.Spec
	a.mu.Unlock()
	if state != StateRunning || ctr == nil {
		return nil, &StateError{App: name, Op: "exec in", State: state}
	}
	var out bytes.Buffer
	groups := make([]int, 0, len(spec.User.Groups))
	for _, g := range spec.User.Groups {
		groups = append(groups, g.GID)
	}
	proc := &libcontainer.Process{
		Args:             args,
		Env:              append(containerEnv(spec), "DISPLAY="+containerDisplay),
		Cwd:              "/",
		UID:              spec.User.UID,
		GID:              spec.User.GID,
		AdditionalGroups: groups,
		Capabilities:     &configs.Capabilities{},
		Stdout:           &out,
		Stderr:           &out,
	}
	if err := ctr.Run(proc); err != nil {
		return nil, fmt.Errorf("exec in %q: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { _, err := proc.Wait(); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			return out.Bytes(), fmt.Errorf("exec %v in %q: %w: %s", args, name, err, out.String())
		}
		return out.Bytes(), nil
	case <-ctx.Done():
		_ = proc.Signal(unix.SIGKILL)
		<-done
		return out.Bytes(), ctx.Err()
	}
}
