package ui

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
)

// Source is what the model is fed from: the daemon's client (*app.Client),
// or a fake in tests.
type Source interface {
	ID(ctx context.Context) (app.Identity, error)
	Apps(ctx context.Context) ([]engine.Info, error)
	Remote(ctx context.Context) ([]app.RemoteApp, error)
	Peers(ctx context.Context) ([]app.PeerView, error)
	Requests(ctx context.Context) ([]app.HandoffRequest, error)
	Events(ctx context.Context) (<-chan app.Event, error)
}

// Feed keeps a Model in step with the daemon: it subscribes to the event
// stream, loads a snapshot, applies events, and when the stream ends it
// marks the model disconnected and reconnects with backoff.
type Feed struct {
	Source Source
	Model  *Model
	Log    *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between reconnections.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often pending requests are re-read while any are shown
	// (they end without an event when they time out on the daemon).
	Poll time.Duration
}

// Run feeds the model until ctx ends.
func (f *Feed) Run(ctx context.Context) {
	minB, maxB := f.MinBackoff, f.MaxBackoff
	if minB == 0 {
		minB = 250 * time.Millisecond
	}
	if maxB == 0 {
		maxB = 5 * time.Second
	}
	log := f.Log
	if log == nil {
		log = slog.Default()
	}
	backoff := minB
	for ctx.Err() == nil {
		started := time.Now()
		err := f.session(ctx)
		if ctx.Err() != nil {
			return
		}
		f.Model.Disconnected(err)
		if time.Since(started) > 10*time.Second {
			backoff = minB // it had been working: try again soon
		}
		log.Debug("daemon unreachable; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxB)
	}
}

// errStreamEnded is why a session ends when the daemon closes the stream.
var errStreamEnded = errors.New("the Handoff daemon stopped (its event stream ended)")

// session is one connection: subscribe first so that nothing between the
// snapshot and the first event is lost, then load, then follow.
func (f *Feed) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := f.Source.Events(ctx)
	if err != nil {
		return err
	}
	snap, err := f.load(ctx)
	if err != nil {
		return err
	}
	f.Model.Reset(snap)
	poll := f.Poll
	if poll == 0 {
		poll = 3 * time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return errStreamEnded
			}
			f.Model.Apply(ev)
			f.follow(ctx, ev)
		case <-tick.C:
			if len(f.Model.State().Requests) > 0 {
				if reqs, err := f.Source.Requests(ctx); err == nil {
					f.Model.SetRequests(reqs)
				}
			}
		}
	}
}

// follow re-reads what an event changed but does not carry: the list of
// remote apps after a handoff or a return. The daemon records a sent app
// as remote only after it announced the handoff done, so the re-read waits
// a little for the app to show up there.
func (f *Feed) follow(ctx context.Context, ev app.Event) {
	switch {
	case ev.Type == app.EventHandoff && ev.Handoff != nil && ev.Handoff.Phase == migration.PhaseDone && ev.Handoff.Direction == "out":
		name := ev.Handoff.App
		go func() {
			for i := 0; i < 25 && ctx.Err() == nil; i++ {
				rs, err := f.Source.Remote(ctx)
				if err != nil {
					return
				}
				for _, r := range rs {
					if r.Name == name {
						f.Model.SetRemote(rs)
						return
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	case ev.Type == app.EventApp && ev.App != nil && ev.App.State == engine.StateRunning:
		if rs, err := f.Source.Remote(ctx); err == nil {
			f.Model.SetRemote(rs)
		}
	}
}

func (f *Feed) load(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	var err error
	if snap.Apps, err = f.Source.Apps(ctx); err != nil {
		return snap, err
	}
	// A daemon without its peer channel answers 503 to the peer endpoints:
	// it still runs apps, so show those.
	if snap.Self, err = f.Source.ID(ctx); err != nil && !noPeers(err) {
		return snap, err
	}
	if snap.Remote, err = f.Source.Remote(ctx); err != nil && !noPeers(err) {
		return snap, err
	}
	if snap.Peers, err = f.Source.Peers(ctx); err != nil && !noPeers(err) {
		return snap, err
	}
	if snap.Requests, err = f.Source.Requests(ctx); err != nil && !noPeers(err) {
		return snap, err
	}
	return snap, nil
}

func noPeers(err error) bool {
	var ae *app.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable
}
