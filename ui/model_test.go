package ui

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/handoff/handoff/app"
	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
)

func testID(b byte) discovery.DeviceID {
	var id discovery.DeviceID
	for i := range id {
		id[i] = b
	}
	return id
}

func peer(name string, b byte, online, trusted bool) app.PeerView {
	return app.PeerView{Peer: discovery.Peer{ID: testID(b), Name: name, Online: online}, Trusted: trusted}
}

func running(name string) *engine.Info {
	return &engine.Info{Name: name, State: engine.StateRunning, PID: 42, Width: 640, Height: 400}
}

// testSnapshot is a daemon with two local apps, one remote, three peers.
func testSnapshot() Snapshot {
	return Snapshot{
		Self:   app.Identity{ID: testID(1), Short: testID(1).Short(), Name: "ws-a"},
		Apps:   []engine.Info{*running("notes"), {Name: "clock", State: engine.StateSuspended}},
		Remote: []app.RemoteApp{{Name: "eyes", PeerID: testID(2), PeerName: "ws-b"}},
		Peers:  []app.PeerView{peer("ws-c", 3, true, false), peer("ws-b", 2, true, true), peer("ws-d", 4, false, true)},
	}
}

func appNames(s State) []string {
	var out []string
	for _, a := range s.Apps {
		n := a.Name
		if a.Remote {
			n += "@" + a.Peer
			if a.Pending {
				n += "?"
			}
		} else {
			n += ":" + string(a.State)
		}
		out = append(out, n)
	}
	return out
}

func peerNames(s State) []string {
	var out []string
	for _, p := range s.Peers {
		n := p.Name
		if p.Online {
			n += "+online"
		}
		if p.Trusted {
			n += "+trusted"
		}
		out = append(out, n)
	}
	return out
}

func TestModelReset(t *testing.T) {
	m := NewModel()
	var notes []Notice
	m.Listen(func(_ State, n []Notice) { notes = append(notes, n...) })
	m.Reset(testSnapshot())
	s := m.State()
	if !s.Connected || s.Self.Name != "ws-a" {
		t.Fatalf("state %+v", s)
	}
	if got, want := appNames(s), []string{"clock:suspended", "eyes@ws-b", "notes:running"}; !equal(got, want) {
		t.Errorf("apps %v, want %v", got, want)
	}
	// Online first, trusted first among those, then by name.
	if got, want := peerNames(s), []string{"ws-b+online+trusted", "ws-c+online", "ws-d+trusted"}; !equal(got, want) {
		t.Errorf("peers %v, want %v", got, want)
	}
	if ts := s.Targets(); len(ts) != 1 || ts[0].Name != "ws-b" {
		t.Errorf("targets %v, want ws-b only", ts)
	}
	if len(notes) != 1 || notes[0].Kind != NoticeConnected {
		t.Errorf("notices %+v, want one 'connected'", notes)
	}
}

func TestModelEvents(t *testing.T) {
	req := &app.HandoffRequest{ID: "r1", Kind: "handoff", App: "calc", From: "ws-b", FromID: testID(2), Since: time.Unix(100, 0)}
	tests := []struct {
		name      string
		events    []app.Event
		apps      []string
		peers     []string
		handoffs  map[string]string // app → phase
		requests  int
		notices   []NoticeKind
		noticeApp string
		reason    string
	}{
		{
			name:   "app started",
			events: []app.Event{{Type: app.EventApp, App: running("calc")}},
			apps:   []string{"calc:running", "clock:suspended", "eyes@ws-b", "notes:running"},
		},
		{
			name:   "app changes state",
			events: []app.Event{{Type: app.EventApp, App: &engine.Info{Name: "notes", State: engine.StateSuspending}}},
			apps:   []string{"clock:suspended", "eyes@ws-b", "notes:suspending"},
		},
		{
			name:   "app removed",
			events: []app.Event{{Type: app.EventAppRemoved, App: &engine.Info{Name: "clock"}}},
			apps:   []string{"eyes@ws-b", "notes:running"},
		},
		{
			name:   "remote app comes back",
			events: []app.Event{{Type: app.EventApp, App: running("eyes")}},
			apps:   []string{"clock:suspended", "eyes:running", "notes:running"},
		},
		{
			name: "handoff progress",
			events: []app.Event{
				{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "request"}},
				{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "pre-copy", Bytes: 5, Total: 10}},
			},
			apps:     []string{"clock:suspended", "eyes@ws-b", "notes:running"},
			handoffs: map[string]string{"notes": "pre-copy"},
		},
		{
			name: "handoff done: the app is remote",
			events: []app.Event{
				{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "final"}},
				{Type: app.EventAppRemoved, App: &engine.Info{Name: "notes"}},
				{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "done"}},
			},
			apps:      []string{"clock:suspended", "eyes@ws-b", "notes@ws-b?"},
			notices:   []NoticeKind{NoticeHandoffDone},
			noticeApp: "notes",
		},
		{
			name: "handoff failed: rollback then error",
			events: []app.Event{
				{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "request"}},
				{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "rollback"}},
				{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "rollback", Error: "ws-b refused the handoff: the user of ws-b declined"}},
			},
			apps:      []string{"clock:suspended", "eyes@ws-b", "notes:running"},
			notices:   []NoticeKind{NoticeHandoffFailed},
			noticeApp: "notes",
			reason:    "ws-b refused the handoff: the user of ws-b declined",
		},
		{
			name:   "peer appears",
			events: []app.Event{{Type: app.EventPeer, Peer: ptr(peer("ws-e", 5, true, false)), Change: "appeared"}},
			peers:  []string{"ws-b+online+trusted", "ws-c+online", "ws-e+online", "ws-d+trusted"},
		},
		{
			name:   "trusted peer leaves: kept, offline",
			events: []app.Event{{Type: app.EventPeer, Peer: ptr(peer("ws-b", 2, true, true)), Change: "left"}},
			peers:  []string{"ws-c+online", "ws-b+trusted", "ws-d+trusted"},
		},
		{
			name:   "untrusted peer leaves: gone",
			events: []app.Event{{Type: app.EventPeer, Peer: ptr(peer("ws-c", 3, true, false)), Change: "left"}},
			peers:  []string{"ws-b+online+trusted", "ws-d+trusted"},
		},
		{
			name: "peer at a saved address leaves: kept, offline",
			events: []app.Event{{Type: app.EventPeer, Change: "left",
				Peer: &app.PeerView{Peer: discovery.Peer{ID: testID(3), Name: "ws-c"}, Saved: []string{"192.0.2.3:7466"}}}},
			peers: []string{"ws-b+online+trusted", "ws-d+trusted", "ws-c"},
		},
		{
			name:   "offline trusted peer comes online",
			events: []app.Event{{Type: app.EventPeer, Peer: ptr(peer("ws-d", 4, true, true)), Change: "appeared"}},
			peers:  []string{"ws-b+online+trusted", "ws-d+online+trusted", "ws-c+online"},
		},
		{
			name: "paired: trusted, still online",
			events: []app.Event{{Type: app.EventPeer, Change: "paired",
				Peer: &app.PeerView{Peer: discovery.Peer{ID: testID(3), Name: "ws-c"}, Trusted: true}}},
			peers: []string{"ws-b+online+trusted", "ws-c+online+trusted", "ws-d+trusted"},
		},
		{
			name:      "incoming request, repeated",
			events:    []app.Event{{Type: app.EventRequest, Request: req}, {Type: app.EventRequest, Request: req}},
			requests:  1,
			notices:   []NoticeKind{NoticeRequest},
			noticeApp: "calc",
		},
		{
			name: "pairing request withdrawn",
			events: []app.Event{
				{Type: app.EventRequest, Request: &app.HandoffRequest{ID: "pair-X", Kind: "pair", From: "ws-c", Code: "123456"}},
				{Type: app.EventRequest, Request: &app.HandoffRequest{ID: "pair-X", Kind: "pair-cancelled", From: "ws-c"}},
			},
			notices: []NoticeKind{NoticeRequest, NoticeRequestGone},
		},
		{
			name:   "unknown and empty events change nothing",
			events: []app.Event{{Type: "hello"}, {Type: app.EventApp}, {Type: "future-thing"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewModel()
			m.Reset(testSnapshot())
			var notes []Notice
			m.Listen(func(_ State, n []Notice) { notes = append(notes, n...) })
			for _, ev := range tc.events {
				m.Apply(ev)
			}
			s := m.State()
			want := tc.apps
			if want == nil {
				want = []string{"clock:suspended", "eyes@ws-b", "notes:running"}
			}
			if got := appNames(s); !equal(got, want) {
				t.Errorf("apps %v, want %v", got, want)
			}
			wantPeers := tc.peers
			if wantPeers == nil {
				wantPeers = []string{"ws-b+online+trusted", "ws-c+online", "ws-d+trusted"}
			}
			if got := peerNames(s); !equal(got, wantPeers) {
				t.Errorf("peers %v, want %v", got, wantPeers)
			}
			if len(s.Handoffs) != len(tc.handoffs) {
				t.Errorf("handoffs %v, want %v", s.Handoffs, tc.handoffs)
			}
			for a, phase := range tc.handoffs {
				if s.Handoffs[a].Phase != phase {
					t.Errorf("handoff of %s in phase %q, want %q", a, s.Handoffs[a].Phase, phase)
				}
			}
			if len(s.Requests) != tc.requests {
				t.Errorf("%d requests, want %d", len(s.Requests), tc.requests)
			}
			if len(notes) != len(tc.notices) {
				t.Fatalf("notices %+v, want kinds %v", notes, tc.notices)
			}
			for i, k := range tc.notices {
				if notes[i].Kind != k {
					t.Errorf("notice %d is %v, want %v", i, notes[i].Kind, k)
				}
			}
			if tc.noticeApp != "" && notes[0].App != tc.noticeApp {
				t.Errorf("notice about %q, want %q", notes[0].App, tc.noticeApp)
			}
			if tc.reason != "" && notes[0].Reason != tc.reason {
				t.Errorf("reason %q, want %q", notes[0].Reason, tc.reason)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestModelAcceptedArrival(t *testing.T) {
	m := NewModel()
	m.Reset(Snapshot{})
	req := app.HandoffRequest{ID: "r", Kind: "handoff", App: "calc", From: "ws-b"}
	m.Apply(app.Event{Type: app.EventRequest, Request: &req})
	var notes []Notice
	m.Listen(func(_ State, n []Notice) { notes = append(notes, n...) })
	m.Accepted(req)
	if len(m.State().Requests) != 0 {
		t.Fatal("the answered request is still listed")
	}
	m.Apply(app.Event{Type: app.EventApp, App: &engine.Info{Name: "calc", State: engine.StateStarting}})
	m.Apply(app.Event{Type: app.EventApp, App: running("calc")})
	m.Apply(app.Event{Type: app.EventApp, App: running("calc")})
	if len(notes) != 1 || notes[0].Kind != NoticeHandoffDone || notes[0].Direction != "in" || notes[0].Peer != "ws-b" {
		t.Fatalf("notices %+v, want one arrival from ws-b", notes)
	}
}

func TestModelDisconnect(t *testing.T) {
	m := NewModel()
	m.Reset(testSnapshot())
	m.Apply(app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Phase: "pre-copy"}})
	var notes []Notice
	m.Listen(func(_ State, n []Notice) { notes = append(notes, n...) })
	m.Disconnected(errors.New("connection refused"))
	m.Disconnected(errors.New("connection refused"))
	s := m.State()
	if s.Connected || s.Err != "connection refused" || len(s.Handoffs) != 0 {
		t.Fatalf("state after disconnect %+v", s)
	}
	if len(notes) != 1 || notes[0].Kind != NoticeDisconnected {
		t.Fatalf("notices %+v, want one 'disconnected'", notes)
	}
	m.Reset(testSnapshot())
	if len(notes) != 2 || notes[1].Kind != NoticeConnected {
		t.Fatalf("notices %+v, want 'connected' after reset", notes)
	}
}

func TestHandoffFraction(t *testing.T) {
	tests := []struct {
		h    Handoff
		want float64
	}{
		{Handoff{Phase: "request"}, 0},
		{Handoff{Phase: "pre-copy"}, 2.0 / 6},
		{Handoff{Phase: "pre-copy", Bytes: 50, Total: 100, Round: 1}, 2.4 / 6},
		{Handoff{Phase: "pre-copy", Bytes: 100, Total: 100, Round: 1}, 2.8 / 6},
		{Handoff{Phase: "pre-copy", Bytes: 0, Total: 100, Round: 2}, 2.8 / 6},    // a second round goes on from there
		{Handoff{Phase: "pre-copy", Bytes: 500, Total: 100, Round: 2}, 2.96 / 6}, // and leaves room for a third
		{Handoff{Phase: "final", Bytes: 50, Total: 100}, 4.5 / 6},
		{Handoff{Phase: "restore"}, 5.0 / 6},
		{Handoff{Phase: "done"}, 1},
		{Handoff{Phase: "rollback"}, 0},
	}
	for _, tc := range tests {
		if got := tc.h.Fraction(); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("%+v: %v, want %v", tc.h, got, tc.want)
		}
	}
}

// fakeSource is a daemon in memory: each Events call gets a channel the
// test can feed and close.
type fakeSource struct {
	mu       sync.Mutex
	snap     Snapshot
	down     bool
	streams  chan chan app.Event
	remoteCt int
}

func newFakeSource() *fakeSource {
	return &fakeSource{snap: testSnapshot(), streams: make(chan chan app.Event, 10)}
}

var errDown = errors.New("cannot reach the Handoff daemon")

func (f *fakeSource) check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	return nil
}

func (f *fakeSource) ID(context.Context) (app.Identity, error) { return f.snap.Self, f.check() }
func (f *fakeSource) Apps(context.Context) ([]engine.Info, error) {
	return f.snap.Apps, f.check()
}
func (f *fakeSource) Remote(context.Context) ([]app.RemoteApp, error) {
	f.mu.Lock()
	f.remoteCt++
	f.mu.Unlock()
	return f.snap.Remote, f.check()
}
func (f *fakeSource) Peers(context.Context) ([]app.PeerView, error) { return f.snap.Peers, f.check() }
func (f *fakeSource) Requests(context.Context) ([]app.HandoffRequest, error) {
	return f.snap.Requests, f.check()
}
func (f *fakeSource) Events(ctx context.Context) (<-chan app.Event, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	ch := make(chan app.Event, 10)
	f.streams <- ch
	return ch, nil
}

func (f *fakeSource) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFeedReconnects: the stream drops, the daemon is down for a while, it
// comes back: the model says so each time and reloads.
func TestFeedReconnects(t *testing.T) {
	src := newFakeSource()
	m := NewModel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &Feed{Source: src, Model: m, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()

	stream := <-src.streams
	waitFor(t, "connected", func() bool { return m.State().Connected })
	stream <- app.Event{Type: app.EventApp, App: running("calc")}
	waitFor(t, "calc listed", func() bool { _, ok := m.State().App("calc"); return ok })

	src.setDown(true)
	close(stream)
	waitFor(t, "disconnected", func() bool { return !m.State().Connected })
	if s := m.State(); s.Err == "" {
		t.Fatal("no reason given for the disconnection")
	}
	time.Sleep(50 * time.Millisecond) // several failed attempts
	src.setDown(false)
	stream = <-src.streams
	waitFor(t, "reconnected", func() bool { return m.State().Connected })
	if _, ok := m.State().App("calc"); ok {
		t.Fatal("the reload kept an app the daemon no longer lists")
	}
	// A finished handoff makes the feed re-read the remote list.
	src.mu.Lock()
	before := src.remoteCt
	src.mu.Unlock()
	stream <- app.Event{Type: app.EventHandoff, Handoff: &app.HandoffEvent{App: "notes", Peer: "ws-b", Direction: "out", Phase: "done"}}
	waitFor(t, "remote list re-read", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.remoteCt > before
	})
	cancel()
	<-done
}

func TestModelReturning(t *testing.T) {
	m := NewModel()
	m.Reset(testSnapshot())
	m.Returning("eyes", "ws-b")
	if h := m.State().Handoffs["eyes"]; h.Direction != "in" || h.Peer != "ws-b" {
		t.Fatalf("handoff %+v", h)
	}
	m.Apply(app.Event{Type: app.EventApp, App: running("eyes")})
	if len(m.State().Handoffs) != 0 {
		t.Fatal("still arriving after it runs here")
	}
	m.Returning("eyes", "ws-b")
	m.Ended("eyes")
	if len(m.State().Handoffs) != 0 {
		t.Fatal("Ended left the handoff")
	}
}
