package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/handoff/handoff/engine/handles"
)

// Handles builds the handles manifest of a running app: every fd and mapped
// file of its processes, classified as moving with the image, required on a
// destination, or blocking a checkpoint.
func (e *Engine) Handles(ctx context.Context, name string) (*handles.Manifest, error) {
	a, err := e.lookup(name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	ctr, rec := a.ctr, a.rec
	a.mu.Unlock()
	if rec.State != StateRunning || ctr == nil {
		return nil, &StateError{App: name, Op: "list the handles of", State: rec.State}
	}
	pids, err := ctr.Processes()
	if err != nil {
		return nil, fmt.Errorf("handles of %q: list processes: %w", name, err)
	}
	scope := handles.Scope{
		PIDs: pids, InitPID: rec.InitPID, UpperDir: a.dirs.upper(), Rootfs: a.dirs.rootfs(), Lower: e.cfg.Base,
		Display: handles.Display{Width: rec.Spec.Width, Height: rec.Spec.Height, Depth: rec.Spec.Depth},
	}
	for _, m := range ctr.Config().Mounts {
		scope.Mounts = append(scope.Mounts, handles.MountSpec{Destination: m.Destination, Type: m.Device,
			Travels: m.Destination == fbDir, Home: m.Destination == rec.Spec.User.Home})
	}
	scope.Mounts = append(scope.Mounts, handles.MountSpec{Destination: "/", Type: "overlay"})
	m, err := handles.Build(ctx, scope, e.hashes)
	if err != nil {
		return nil, fmt.Errorf("handles of %q: %w", name, err)
	}
	return m, nil
}

// checkHandles refuses a checkpoint that a blocking handle would break, naming
// every blocker and what to do about it, and returns the manifest the dump
// options depend on.
func (e *Engine) checkHandles(ctx context.Context, name string) (*handles.Manifest, error) {
	m, err := e.SettledHandles(ctx, name)
	if err != nil {
		return nil, err
	}
	return m, BlockingError(m)
}

// secondLookDelay is how long SettledHandles waits before looking again.
const secondLookDelay = 150 * time.Millisecond

// SettledHandles is Handles for deciding whether a checkpoint may go ahead.
// A manifest reads one process's fds after another while they keep running:
// a client that connects to the app's X server between the two reads seems
// connected to a socket no one in the container holds. A blocker therefore
// has to be seen twice, a moment apart, to count.
func (e *Engine) SettledHandles(ctx context.Context, name string) (*handles.Manifest, error) {
	e.beforeCheckpoint(name)
	m, err := e.Handles(ctx, name)
	if err != nil || len(m.Blocking()) == 0 {
		return m, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(secondLookDelay):
	}
	return e.Handles(ctx, name)
}

// BlockingError describes a manifest's blocking handles, or returns nil.
func BlockingError(m *handles.Manifest) error {
	blockers := m.Blocking()
	if len(blockers) == 0 {
		return nil
	}
	var b strings.Builder
	for i, h := range blockers {
		if i > 0 {
			b.WriteString("; ")
		}
		who := ""
		if len(h.Users) > 0 {
			who = fmt.Sprintf("%s (pid %d) ", h.Users[0].Comm, h.Users[0].PID)
		}
		what := h.Path
		if h.Peer != nil && h.Peer.Address != "" {
			what += " → " + h.Peer.Address
		}
		fmt.Fprintf(&b, "%s%s %s: %s", who, h.Kind, what, h.Reason)
		if h.Remedy != "" {
			b.WriteString(" — " + h.Remedy)
		}
	}
	return fmt.Errorf("%w: %s", ErrBlocked, b.String())
}

// HashCache is the content-hash cache of this engine's manifests. Keys are
// (device, inode, size, times), so a receiver checking a peer's manifest
// against this machine's files can share it: a file hashed for an app that
// ran here is not read again when an app arrives, and the other way round.
func (e *Engine) HashCache() *handles.HashCache { return e.hashes }
