package app

import (
	"sync"
	"time"

	"github.com/handoff/handoff/engine"
)

// Event types on the event stream.
const (
	EventApp        = "app"         // an app changed state; App holds its new view
	EventAppRemoved = "app-removed" // an app was stopped and removed; App.Name says which
	EventHello      = "hello"       // first event of every stream
	EventPeer       = "peer"        // a peer appeared, changed or left; Peer and Change say which
	EventHandoff    = "handoff"     // progress of a handoff; Handoff holds it
	EventRequest    = "request"     // a peer asks to hand an app here; answer with accept/decline
	EventNotice     = "notice"      // something the user should know; Notice says what
)

// UserNotice is something a user should be told, as a desktop notification
// would say it.
type UserNotice struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

// Event is one line of the event stream (GET /v0/events, newline-delimited JSON).
type Event struct {
	Type    string          `json:"type"`
	Time    time.Time       `json:"time"`
	App     *engine.Info    `json:"app,omitempty"`
	Peer    *PeerView       `json:"peer,omitempty"`
	Change  string          `json:"change,omitempty"`
	Handoff *HandoffEvent   `json:"handoff,omitempty"`
	Request *HandoffRequest `json:"request,omitempty"`
	Notice  *UserNotice     `json:"notice,omitempty"`
	// User is whose app the event is about: only that user (and root)
	// sees it. Empty for events about devices, which everyone sees.
	User string `json:"user,omitempty"`
}

// hub fans events out to subscribers. A subscriber that does not keep up
// loses events rather than slowing the daemon down.
type hub struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

func newHub() *hub { return &hub{subs: map[chan Event]struct{}{}} }

func (h *hub) subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 64)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *hub) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}
