package engine

import (
	"context"
	"io"
	"os"

	"github.com/handoff/handoff/engine/handles"
)

// Outgoing holds an app for a handoff: from Outgoing until Close, the app is
// the handoff's — a user's suspend, resume or stop is refused as busy — and
// every step acts on the same app, not on whatever is named so by then.
type Outgoing struct {
	e    *Engine
	a    *app
	name string
}

// Outgoing takes a running app for a handoff to device to (its name, for
// messages).
func (e *Engine) Outgoing(name, to string) (*Outgoing, error) {
	a, end, err := e.begin(name)
	if err != nil {
		return nil, err
	}
	defer end()
	// Frozen or suspended: a restarted daemon settling a handoff it was in.
	if st := a.info().State; st != StateRunning && st != StateFrozen && st != StateSuspended {
		return nil, &StateError{App: name, Op: "hand off", State: st}
	}
	a.mu.Lock()
	a.handingTo = to
	a.mu.Unlock()
	return &Outgoing{e: e, a: a, name: name}, nil
}

// Close ends the hold: the app is anyone's again (if it is still here).
func (o *Outgoing) Close() {
	o.a.mu.Lock()
	o.a.handingTo = ""
	o.a.mu.Unlock()
}

// Name is the app's name.
func (o *Outgoing) Name() string { return o.name }

func (o *Outgoing) do(op func(*app) error) error {
	end := o.a.hold()
	defer end()
	return op(o.a)
}

// Spec is the app's spec.
func (o *Outgoing) Spec() Spec {
	o.a.mu.Lock()
	defer o.a.mu.Unlock()
	return o.a.rec.Spec
}

// Info is the app's public view.
func (o *Outgoing) Info() Info { return o.a.info() }

// Snapshot writes a pre-copy image of the running app into dir.
func (o *Outgoing) Snapshot(ctx context.Context, dir string) error {
	return o.do(func(a *app) error { return o.e.checkpointIn(a, "snapshot", StateRunning, dir) })
}

// Freeze stops the app.
func (o *Outgoing) Freeze(ctx context.Context) error { return o.do(o.e.freeze) }

// DumpFrozen writes the frozen app's final image into dir.
func (o *Outgoing) DumpFrozen(ctx context.Context, dir string) error {
	return o.do(func(a *app) error { return o.e.checkpointIn(a, "dump", StateFrozen, dir) })
}

// Thaw lets the frozen app run again here: the handoff rolled back.
func (o *Outgoing) Thaw(ctx context.Context) error { return o.do(o.e.thaw) }

// SuspendFrozen turns the frozen app into a suspended one on its final
// image dir (see Engine.SuspendFrozen).
func (o *Outgoing) SuspendFrozen(ctx context.Context, dir string) error {
	return o.do(func(a *app) error { return o.e.suspendFrozen(a, dir) })
}

// Resume brings a suspended app back here (the handoff failed after
// SuspendFrozen).
func (o *Outgoing) Resume(ctx context.Context) error {
	return o.do(func(a *app) error { return o.e.resume(ctx, a) })
}

// Stop removes the app: after SuspendFrozen, once it runs elsewhere.
func (o *Outgoing) Stop(ctx context.Context) error {
	return o.do(func(a *app) error { return o.e.stop(ctx, a) })
}

// Release removes the frozen copy: the app runs on the other machine.
func (o *Outgoing) Release(ctx context.Context) error { return o.do(o.e.release) }

// State is the app's state now.
func (o *Outgoing) State() State { return o.a.info().State }

// Handles is the app's settled handles manifest (see SettledHandles).
func (o *Outgoing) Handles(ctx context.Context) (*handles.Manifest, error) {
	return o.e.SettledHandles(ctx, o.name)
}

// SampleMemory draws a sample of the app's memory (see SampleMemory).
func (o *Outgoing) SampleMemory(ctx context.Context, n int) (*MemorySample, error) {
	return o.e.SampleMemory(ctx, o.name, n)
}

// ExportUpper writes the app's upper dir and the base files extra names.
func (o *Outgoing) ExportUpper(ctx context.Context, w io.Writer, extra []string) error {
	return o.e.ExportUpper(ctx, o.name, w, extra)
}

// HomeFiles lists the user's files the app uses (see Engine.HomeFiles).
func (o *Outgoing) HomeFiles(ctx context.Context, m *handles.Manifest) ([]HomeFile, error) {
	return o.e.HomeFiles(ctx, o.name, m)
}

// HomeRead lists the user's files the app only read.
func (o *Outgoing) HomeRead() []string { return o.e.HomeRead(o.name) }

// OpenHomeFile opens one of the user's files the app uses.
func (o *Outgoing) OpenHomeFile(rel string) (*os.File, error) { return o.e.OpenHomeFile(o.name, rel) }

// HomeProbe leaves a probe in the user's home (see Engine.HomeProbe).
func (o *Outgoing) HomeProbe() (string, func(), error) { return o.e.HomeProbe(o.name) }
