package ui

import (
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/engine/migration"
)

// State is what the tray knows about the daemon at one moment. The Model
// hands out copies: a State never changes after it was given out.
type State struct {
	// Connected says the event stream is up; Err says why it is not. Both
	// are empty until the first attempt to connect ended (Connecting).
	Connected bool
	Err       string
	Self      app.Identity
	Apps      []AppItem // local and remote, by name
	Peers     []app.PeerView
	Requests  []app.HandoffRequest // oldest first
	// Handoffs in progress, by app name.
	Handoffs map[string]Handoff
}

// AppItem is one app, running here or handed to a peer from here.
type AppItem struct {
	Name   string
	State  engine.State // the engine's state; "" for a remote app
	Info   engine.Info  // for local apps
	Remote bool
	Peer   string             // the device running it, when Remote
	PeerID discovery.DeviceID // when Remote and known
	// Pending: the handoff just finished and the daemon has not listed the
	// app as remote yet; it cannot be brought back until it does.
	Pending bool
}

// Handoff is a handoff in progress.
type Handoff struct {
	App, Peer string
	Direction string // "out" or "in"
	Phase     string
	Bytes     int64
	Total     int64
	Round     int // pre-copy round, from 1
}

// Fraction is how far the handoff got, 0 to 1, counting phases and the
// bytes of the copying phases.
func (h Handoff) Fraction() float64 {
	steps := []string{migration.PhaseRequest, migration.PhaseHandles, migration.PhasePreCopy,
		migration.PhaseFreeze, migration.PhaseFinal, migration.PhaseRestore, migration.PhaseDone}
	i := 0
	for ; i < len(steps) && steps[i] != h.Phase; i++ {
	}
	if i == len(steps) {
		return 0
	}
	f := float64(i) / float64(len(steps)-1)
	if h.Total > 0 && i < len(steps)-1 {
		part := float64(min(h.Bytes, h.Total)) / float64(h.Total)
		if h.Phase == migration.PhasePreCopy {
			part = preCopyPart(h.Round, part)
		}
		f += part / float64(len(steps)-1)
	}
	return min(f, 1)
}

// preCopyPart is how much of the pre-copy phase is done when round has sent
// part of its bytes. The number of rounds is not known ahead, and each is
// smaller than the one before: the first fills 80% of the phase, each next
// one 80% of what is left, so the bar never moves back.
func preCopyPart(round int, part float64) float64 {
	const rest = 0.2 // share of the phase a round leaves to later ones
	left := math.Pow(rest, float64(max(round, 1)-1))
	return 1 - left*(1-(1-rest)*part)
}

// Connecting reports that the tray has not reached the daemon yet and no
// attempt failed either: too early to say the daemon is not running.
func (s State) Connecting() bool { return !s.Connected && s.Err == "" }

// App returns the named app.
func (s State) App(name string) (AppItem, bool) {
	for _, a := range s.Apps {
		if a.Name == name {
			return a, true
		}
	}
	return AppItem{}, false
}

// Peer returns a peer by name, device ID or short ID.
func (s State) Peer(key string) (app.PeerView, bool) {
	for _, p := range s.Peers {
		if p.ID.String() == key || strings.EqualFold(p.Name, key) || strings.EqualFold(p.ID.Short(), key) {
			return p, true
		}
	}
	return app.PeerView{}, false
}

// Targets are the peers an app can be sent to now: online and trusted.
func (s State) Targets() []app.PeerView {
	var out []app.PeerView
	for _, p := range s.Peers {
		if canReceive(p) {
			out = append(out, p)
		}
	}
	return out
}

func canReceive(p app.PeerView) bool { return p.Online && p.Trusted && !p.Impostor }

// NoticeKind says what a Notice is about.
type NoticeKind int

const (
	NoticeHandoffDone   NoticeKind = iota + 1 // an app now runs on Peer (out) or here (in)
	NoticeHandoffFailed                       // Reason says why; the app keeps running where it was
	NoticeRequest                             // a peer asks: Request
	NoticeRequestGone                         // a request was withdrawn: Request
	NoticeDisconnected                        // the daemon went away
	NoticeMessage                             // the daemon has something to say: Title, Body
	NoticeConnected                           // the daemon is back (or there for the first time)
)

// Notice is something the user should hear about, as opposed to a change of
// state the windows just show.
type Notice struct {
	Kind      NoticeKind
	App, Peer string
	Direction string
	Reason    string
	Request   app.HandoffRequest
	Title     string // NoticeMessage
	Body      string
}

// Model holds the daemon's state as the tray shows it. Apply feeds it the
// daemon's events; listeners hear about every change. It knows nothing of
// Fyne and is safe for concurrent use.
type Model struct {
	mu        sync.Mutex
	s         State
	listeners []func(State, []Notice)
	// accepted remembers incoming handoffs the user took, so that the app's
	// arrival can be announced: app name → peer name.
	accepted map[string]string
}

// NewModel returns a model that is not connected yet.
func NewModel() *Model {
	return &Model{s: State{Handoffs: map[string]Handoff{}}, accepted: map[string]string{}}
}

// Listen adds a function called, outside the model's lock, after every
// change with the new state and what to tell the user.
func (m *Model) Listen(f func(State, []Notice)) {
	m.mu.Lock()
	m.listeners = append(m.listeners, f)
	m.mu.Unlock()
}

// State returns the current state.
func (m *Model) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s.clone()
}

func (s State) clone() State {
	c := s
	c.Apps = append([]AppItem(nil), s.Apps...)
	c.Peers = append([]app.PeerView(nil), s.Peers...)
	c.Requests = append([]app.HandoffRequest(nil), s.Requests...)
	c.Handoffs = make(map[string]Handoff, len(s.Handoffs))
	for k, v := range s.Handoffs {
		c.Handoffs[k] = v
	}
	return c
}

// update runs f under the lock and tells the listeners.
func (m *Model) update(f func(s *State) []Notice) {
	m.mu.Lock()
	notes := f(&m.s)
	s := m.s.clone()
	ls := append([]func(State, []Notice){}, m.listeners...)
	m.mu.Unlock()
	for _, l := range ls {
		l(s, notes)
	}
}

// Snapshot is everything the daemon lists, fetched when the event stream
// (re)connects.
type Snapshot struct {
	Self     app.Identity
	Apps     []engine.Info
	Remote   []app.RemoteApp
	Peers    []app.PeerView
	Requests []app.HandoffRequest
}

// Reset replaces the state with a fresh snapshot: the daemon is reachable.
func (m *Model) Reset(snap Snapshot) {
	m.update(func(s *State) []Notice {
		var notes []Notice
		if !s.Connected {
			notes = append(notes, Notice{Kind: NoticeConnected})
		}
		known := map[string]bool{}
		for _, r := range s.Requests {
			known[r.ID] = true
		}
		*s = State{Connected: true, Self: snap.Self, Peers: append([]app.PeerView(nil), snap.Peers...),
			Handoffs: s.Handoffs}
		for _, info := range snap.Apps {
			s.Apps = append(s.Apps, AppItem{Name: info.Name, State: info.State, Info: info})
		}
		setRemote(s, snap.Remote)
		for _, r := range snap.Requests {
			s.Requests = append(s.Requests, r)
			if !known[r.ID] {
				notes = append(notes, Notice{Kind: NoticeRequest, Request: r, App: r.App, Peer: r.From})
			}
		}
		sortState(s)
		return notes
	})
}

// SetRemote replaces the list of apps handed to peers.
func (m *Model) SetRemote(remote []app.RemoteApp) {
	m.update(func(s *State) []Notice {
		setRemote(s, remote)
		sortState(s)
		return nil
	})
}

// SetRequests replaces the list of pending requests (they end without an
// event when answered elsewhere or when they time out).
func (m *Model) SetRequests(reqs []app.HandoffRequest) {
	m.update(func(s *State) []Notice {
		var notes []Notice
		still := map[string]bool{}
		for _, r := range reqs {
			still[r.ID] = true
		}
		for _, r := range s.Requests {
			if !still[r.ID] {
				notes = append(notes, Notice{Kind: NoticeRequestGone, Request: r, App: r.App, Peer: r.From})
			}
		}
		s.Requests = append([]app.HandoffRequest(nil), reqs...)
		return notes
	})
}

func setRemote(s *State, remote []app.RemoteApp) {
	apps := s.Apps[:0:0]
	for _, a := range s.Apps {
		if !a.Remote {
			apps = append(apps, a)
		}
	}
	for _, r := range remote {
		if hasLocal(apps, r.Name) {
			continue // it came back; the daemon forgets it soon
		}
		apps = append(apps, AppItem{Name: r.Name, Remote: true, Peer: r.PeerName, PeerID: r.PeerID})
	}
	s.Apps = apps
}

func hasLocal(apps []AppItem, name string) bool {
	for _, a := range apps {
		if a.Name == name && !a.Remote {
			return true
		}
	}
	return false
}

// Disconnected records that the daemon cannot be reached.
func (m *Model) Disconnected(err error) {
	m.update(func(s *State) []Notice {
		was := s.Connected
		s.Connected = false
		s.Err = "the Handoff daemon is not running"
		if err != nil {
			s.Err = err.Error()
		}
		s.Handoffs = map[string]Handoff{}
		if was {
			return []Notice{{Kind: NoticeDisconnected, Reason: s.Err}}
		}
		return nil
	})
}

// Accepted records that the user took an incoming handoff, so that its
// arrival is announced.
func (m *Model) Accepted(req app.HandoffRequest) {
	m.update(func(s *State) []Notice {
		removeRequest(s, req.ID)
		if req.Kind == "handoff" {
			m.accepted[req.App] = req.From
		}
		return nil
	})
}

// Returning records that the user asked for an app back: the daemon here
// reports no progress for a handoff it receives, so the app shows as
// arriving until it runs here (or Ended is called).
func (m *Model) Returning(name, peer string) {
	m.update(func(s *State) []Notice {
		s.Handoffs[name] = Handoff{App: name, Peer: peer, Direction: "in", Phase: migration.PhaseRequest}
		return nil
	})
}

// Ended forgets a handoff that ended without an event (a failed request).
func (m *Model) Ended(name string) {
	m.update(func(s *State) []Notice {
		delete(s.Handoffs, name)
		return nil
	})
}

// Answered removes a request the user answered.
func (m *Model) Answered(id string) {
	m.update(func(s *State) []Notice {
		removeRequest(s, id)
		return nil
	})
}

func removeRequest(s *State, id string) {
	out := s.Requests[:0:0]
	for _, r := range s.Requests {
		if r.ID != id {
			out = append(out, r)
		}
	}
	s.Requests = out
}

// Apply takes one event from the daemon's stream.
func (m *Model) Apply(ev app.Event) {
	m.update(func(s *State) []Notice { return m.apply(s, ev) })
}

func (m *Model) apply(s *State, ev app.Event) []Notice {
	switch ev.Type {
	case app.EventApp:
		if ev.App == nil {
			return nil
		}
		return m.applyApp(s, *ev.App)
	case app.EventAppRemoved:
		if ev.App != nil {
			removeLocal(s, ev.App.Name)
		}
	case app.EventPeer:
		if ev.Peer != nil {
			applyPeer(s, *ev.Peer, ev.Change)
		}
	case app.EventHandoff:
		if ev.Handoff != nil {
			return applyHandoff(s, *ev.Handoff)
		}
	case app.EventRequest:
		if ev.Request != nil {
			return applyRequest(s, *ev.Request)
		}
	case app.EventNotice:
		if ev.Notice != nil {
			return []Notice{{Kind: NoticeMessage, Title: ev.Notice.Title, Body: ev.Notice.Body}}
		}
	}
	return nil
}

func (m *Model) applyApp(s *State, info engine.Info) []Notice {
	if info.State == "" {
		removeLocal(s, info.Name)
		return nil
	}
	item := AppItem{Name: info.Name, State: info.State, Info: info}
	replaced := false
	apps := s.Apps[:0:0]
	for _, a := range s.Apps {
		if a.Name == info.Name {
			if !replaced {
				apps = append(apps, item) // a local app replaces its remote entry: it came back
				replaced = true
			}
			continue
		}
		apps = append(apps, a)
	}
	if !replaced {
		apps = append(apps, item)
	}
	s.Apps = apps
	sortState(s)
	if h, ok := s.Handoffs[info.Name]; ok && h.Direction == "in" && info.State == engine.StateRunning {
		delete(s.Handoffs, info.Name) // it arrived
	}
	if from, ok := m.accepted[info.Name]; ok && info.State == engine.StateRunning {
		delete(m.accepted, info.Name)
		delete(s.Handoffs, info.Name)
		return []Notice{{Kind: NoticeHandoffDone, App: info.Name, Peer: from, Direction: "in"}}
	}
	return nil
}

func removeLocal(s *State, name string) {
	out := s.Apps[:0:0]
	for _, a := range s.Apps {
		if a.Name != name || a.Remote {
			out = append(out, a)
		}
	}
	s.Apps = out
}

func applyPeer(s *State, p app.PeerView, change string) {
	for i, old := range s.Peers {
		if old.ID != p.ID {
			continue
		}
		switch change {
		case discovery.PeerLeft:
			// Trusted devices and those at saved addresses stay, offline.
			if !p.Trusted && len(p.Saved) == 0 {
				s.Peers = append(s.Peers[:i:i], s.Peers[i+1:]...)
				return
			}
			old.Online, old.Trusted, old.Saved = false, p.Trusted, p.Saved
			s.Peers[i] = old
		case "paired":
			// The event names the peer and nothing else: keep what discovery saw.
			old.Trusted = true
			if p.Name != "" {
				old.Name = p.Name
			}
			s.Peers[i] = old
		default:
			s.Peers[i] = p
		}
		sortState(s)
		return
	}
	if change == discovery.PeerLeft && !p.Trusted && len(p.Saved) == 0 {
		return
	}
	if change == discovery.PeerLeft {
		p.Online = false
	}
	s.Peers = append(s.Peers, p)
	sortState(s)
}

func applyHandoff(s *State, h app.HandoffEvent) []Notice {
	switch {
	case h.Phase == migration.PhaseDone:
		delete(s.Handoffs, h.App)
		if h.Direction == "out" {
			// It runs there now; the daemon's remote list catches up with the ID.
			removeLocal(s, h.App)
			found := false
			for _, a := range s.Apps {
				found = found || (a.Name == h.App && a.Remote)
			}
			if !found {
				id := discovery.DeviceID{}
				if p, ok := s.Peer(h.Peer); ok {
					id = p.ID
				}
				s.Apps = append(s.Apps, AppItem{Name: h.App, Remote: true, Peer: h.Peer, PeerID: id, Pending: true})
				sortState(s)
			}
		}
		return []Notice{{Kind: NoticeHandoffDone, App: h.App, Peer: h.Peer, Direction: h.Direction}}
	case h.Phase == migration.PhaseRollback || h.Error != "":
		delete(s.Handoffs, h.App)
		if h.Error == "" {
			return nil // the rollback's own progress; the error follows
		}
		return []Notice{{Kind: NoticeHandoffFailed, App: h.App, Peer: h.Peer, Direction: h.Direction, Reason: h.Error}}
	default:
		s.Handoffs[h.App] = Handoff{App: h.App, Peer: h.Peer, Direction: h.Direction, Phase: h.Phase, Bytes: h.Bytes, Total: h.Total, Round: h.Round}
	}
	return nil
}

func applyRequest(s *State, r app.HandoffRequest) []Notice {
	if r.Kind == "pair-cancelled" {
		removeRequest(s, r.ID)
		return []Notice{{Kind: NoticeRequestGone, Request: r, Peer: r.From}}
	}
	for _, old := range s.Requests {
		if old.ID == r.ID {
			return nil
		}
	}
	s.Requests = append(s.Requests, r)
	sort.SliceStable(s.Requests, func(i, j int) bool { return s.Requests[i].Since.Before(s.Requests[j].Since) })
	return []Notice{{Kind: NoticeRequest, Request: r, App: r.App, Peer: r.From}}
}

func sortState(s *State) {
	sort.SliceStable(s.Apps, func(i, j int) bool { return s.Apps[i].Name < s.Apps[j].Name })
	sort.SliceStable(s.Peers, func(i, j int) bool {
		a, b := s.Peers[i], s.Peers[j]
		if a.Online != b.Online {
			return a.Online
		}
		if a.Trusted != b.Trusted {
			return a.Trusted
		}
		return strings.ToLower(a.Name) < strings.ToLower(b.Name)
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
