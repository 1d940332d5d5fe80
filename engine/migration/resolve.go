package migration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/internal/failpoint"
)

// failpointHit lets fault tests stop the daemon at a state (see
// internal/failpoint).
var failpointHit = failpoint.Hit

// Outcome answers GET /{id}/outcome: how a handoff ended on the
// destination, as far as it can tell now.
type Outcome struct {
	State string `json:"state"` // OutcomeRunning, OutcomeRestoring or OutcomeAborted
}

// Outcomes a destination reports.
const (
	OutcomeRunning   = "running"   // the app runs here: release the copy there
	OutcomeRestoring = "restoring" // ask again
	OutcomeAborted   = "aborted"   // it does not run here and never will
)

// resolution is the sender asking a destination how a handoff ended.
type resolution struct {
	cancel context.CancelFunc
	here   chan struct{} // closed when the user decides to run the app here
	done   chan struct{}
}

// startResolution keeps asking the destination of e how it ended, in the
// background, holding the app (frozen) until it knows.
func (s *Sender) startResolution(e Entry, out *engine.Outgoing) {
	ctx, cancel := context.WithCancel(s.life())
	r := &resolution{cancel: cancel, here: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	if s.resolving == nil {
		s.resolving = map[string]*resolution{}
	}
	s.resolving[e.App] = r
	s.mu.Unlock()
	go func() {
		defer close(r.done)
		defer func() {
			s.mu.Lock()
			delete(s.resolving, e.App)
			s.mu.Unlock()
		}()
		s.resolve(ctx, e, out, r)
	}()
}

// resolveBackoff bounds how often a destination is asked.
const (
	resolveFirst = time.Second
	resolveMax   = 30 * time.Second
)

func (s *Sender) resolve(ctx context.Context, e Entry, out *engine.Outgoing, r *resolution) {
	if out != nil {
		defer out.Close()
	}
	log := s.log().With("app", e.App, "peer", e.PeerName, "handoff", e.ID)
	wait := resolveFirst
	for {
		how, peer, err := s.askOutcome(ctx, e)
		switch {
		case err != nil:
			log.Debug("the destination cannot say yet how the handoff ended", "err", err)
		case how == OutcomeRunning:
			log.Info("the app runs on the destination: the copy here goes")
			if out != nil {
				s.finish(ctx, e, out, peer)
			}
			s.end(e, OutDone)
			return
		case how == OutcomeAborted:
			log.Info("the destination dropped the handoff: the app runs here again")
			s.thawHere(ctx, e, out)
			s.end(e, OutRolledBack)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-r.here:
			log.Warn("the user chose to run the app here while the destination's answer is unknown")
			s.thawHere(ctx, e, out)
			s.end(e, OutRolledBack)
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, resolveMax)
	}
}

// askOutcome asks the destination of e how it ended.
func (s *Sender) askOutcome(ctx context.Context, e Entry) (string, Peer, error) {
	if s.Reach == nil {
		return "", Peer{}, errors.New("no way to reach the destination")
	}
	peer, err := s.Reach(ctx, e.Peer)
	if err != nil {
		return "", peer, err
	}
	var o Outcome
	if err := peer.call(ctx, http.MethodGet, "/"+e.ID+"/outcome", nil, &o); err != nil {
		return "", peer, err
	}
	return o.State, peer, nil
}

func (s *Sender) thawHere(ctx context.Context, e Entry, out *engine.Outgoing) {
	if out == nil {
		return
	}
	if err := runHere(context.WithoutCancel(ctx), out); err != nil {
		s.log().Error("the app's copy here after the handoff was dropped", "app", e.App, "err", err)
	}
}

// end forgets a handoff that ended and says so.
func (s *Sender) end(e Entry, how OutState) {
	if s.Journal != nil {
		s.Journal.remove("out", e.ID)
	}
	if s.Ended != nil {
		s.Ended(e, how, true)
	}
}

// Pending lists the apps whose handoff's end is still being asked for.
func (s *Sender) Pending() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.resolving))
	for app := range s.resolving {
		out = append(out, app)
	}
	return out
}

// ErrNotPending is returned for an app whose handoff is not in doubt.
var ErrNotPending = errors.New("no handoff of this app is waiting for its destination's answer")

// RunHere is the user's decision, for an app whose destination cannot say
// whether it took it (unreachable for good), to run it here again. If the
// destination did restore it, it now runs on both machines: the caller
// warns the user first.
func (s *Sender) RunHere(ctx context.Context, app string) error {
	s.mu.Lock()
	r := s.resolving[app]
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("%q: %w", app, ErrNotPending)
	}
	select {
	case <-r.here:
	default:
		close(r.here)
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops asking destinations; a restarted daemon asks again
// (Recover).
func (s *Sender) Close() {
	s.life()
	s.stop()
	s.mu.Lock()
	rs := make([]*resolution, 0, len(s.resolving))
	for _, r := range s.resolving {
		rs = append(rs, r)
	}
	s.mu.Unlock()
	for _, r := range rs {
		r.cancel()
		<-r.done
	}
}

// Recover settles, after a daemon start, the handoffs this machine was
// sending when it stopped: those that had not asked the destination to
// restore roll back (the app thaws here, the destination is told to drop
// them); those that had are asked about until the destination says. An app
// left frozen with no such handoff is thawed: no destination can run it.
func (s *Sender) Recover(ctx context.Context) {
	doubt := map[string]bool{}
	if s.Journal != nil {
		for _, e := range s.Journal.Entries("out") {
			if e.Out == OutCommitting || e.Out == OutUnknown {
				doubt[e.App] = true
				e.Out = OutUnknown
				_ = s.Journal.put(e, true)
				out, err := s.Engine.Outgoing(e.App, e.PeerName)
				if err != nil {
					out = nil // released before the daemon stopped: only the answer is missing
				}
				s.log().Info("asking the destination how a handoff ended", "app", e.App, "peer", e.PeerName, "handoff", e.ID)
				s.startResolution(e, out)
				continue
			}
			s.log().Info("rolling back a handoff the daemon stopped in", "app", e.App, "state", e.Out)
			if out, err := s.Engine.Outgoing(e.App, e.PeerName); err == nil {
				if err := runHere(ctx, out); err != nil {
					s.log().Error("the app's copy here after a handoff the daemon stopped in", "app", e.App, "err", err)
				}
				out.Close()
			}
			go s.dropLater(e.Peer, e.ID)
			s.end(e, OutRolledBack)
		}
	}
	for _, info := range s.Engine.List() {
		if info.State == engine.StateFrozen && !doubt[info.Name] {
			if err := s.Engine.Thaw(ctx, info.Name); err != nil {
				s.log().Error("thaw an app a handoff left frozen", "app", info.Name, "err", err)
			} else {
				s.log().Info("thawed an app a handoff had frozen before the daemon stopped", "app", info.Name)
			}
		}
	}
}
