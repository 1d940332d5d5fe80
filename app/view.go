package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/stream"
)

const peerView = "/peer/v1/view/"

// ViewRequest carries a viewer's WebRTC offer; ViewAnswer the app's answer.
type ViewRequest struct {
	Offer string `json:"offer"`
}

type ViewAnswer struct {
	Answer string `json:"answer"`
	Where  string `json:"where"` // the name of the device running the app
}

// streams keeps a stream host for each app that has viewers. A host is
// bound to one incarnation of the app: the PID of its container's init,
// which changes with every restore.
type streams struct {
	d     *Daemon
	mu    sync.Mutex
	hosts map[string]*streamHost
}

type streamHost struct {
	*stream.Host
	pid int
}

func newStreams(d *Daemon) *streams {
	return &streams{d: d, hosts: map[string]*streamHost{}}
}

// answer connects a viewer to an app running here.
func (s *streams) answer(ctx context.Context, name, offer string) (string, error) {
	info, err := s.d.engine.Get(name)
	if err != nil {
		return "", err
	}
	if info.State != engine.StateRunning {
		return "", &engine.StateError{App: name, Op: "show", State: info.State}
	}
	s.mu.Lock()
	h := s.hosts[name]
	if h == nil || h.pid != info.PID {
		if h != nil {
			go h.Close()
		}
		display := stream.Display{
			OpenFramebuffer: func() (*os.File, error) { return s.d.engine.OpenFramebuffer(name) },
			Dial:            func(ctx context.Context) (net.Conn, error) { return s.d.engine.DialDisplay(ctx, name) },
		}
		sound := func(ctx context.Context) (net.Conn, error) { return s.d.engine.DialSound(ctx, name) }
		h = &streamHost{Host: stream.NewHost(stream.HostConfig{Display: display, Sound: sound, Logger: s.d.log.With("app", name)}), pid: info.PID}
		s.hosts[name] = h
	}
	s.mu.Unlock()
	return h.Answer(ctx, offer)
}

// drop ends the viewers' streams of an app: before a checkpoint, or when it
// stopped running here. Viewers reconnect to wherever it runs next. It
// reports whether there was a stream (with X and sound connections into
// the app).
func (s *streams) drop(name string) bool {
	s.mu.Lock()
	h := s.hosts[name]
	delete(s.hosts, name)
	s.mu.Unlock()
	if h != nil {
		h.Close()
	}
	return h != nil
}

func (s *streams) closeAll() {
	s.mu.Lock()
	names := make([]string, 0, len(s.hosts))
	for n := range s.hosts {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.drop(n)
	}
}

// view routes a viewer's offer to wherever the app runs: here, or on the
// peer it was handed to.
// Only the app's user (or root) may see and type into it.
func (d *Daemon) view(ctx context.Context, name, offer string, c caller) (ViewAnswer, error) {
	if info, err := d.engine.Get(name); err == nil {
		if !c.owns(info.User) {
			return ViewAnswer{}, errNotYours(name)
		}
		ans, err := d.streams.answer(ctx, name, offer)
		return ViewAnswer{Answer: ans, Where: d.deviceName()}, err
	}
	if d.peers == nil {
		return ViewAnswer{}, fmt.Errorf("%w: no app named %q", engine.ErrNotFound, name)
	}
	return d.peers.viewRemote(ctx, name, offer, c)
}

func (d *Daemon) deviceName() string {
	if d.peers != nil {
		return d.peers.id.Name
	}
	return d.cfg.Name
}

// view asks the peer running app name (handed off from here) for its stream.
func (p *peers) viewRemote(ctx context.Context, name, offer string, c caller) (ViewAnswer, error) {
	p.mu.Lock()
	r, ok := p.remote[name]
	p.mu.Unlock()
	if !ok || !c.owns(r.User) {
		return ViewAnswer{}, fmt.Errorf("%w: no app named %q here or handed off from here", engine.ErrNotFound, name)
	}
	v, err := p.find(r.PeerID.String())
	if err != nil {
		return ViewAnswer{}, err
	}
	var ans ViewAnswer
	if err := p.call(ctx, v, peerView+name, ViewRequest{Offer: offer}, &ans); err != nil {
		return ViewAnswer{}, fmt.Errorf("show %q from %s: %w", name, v.Name, err)
	}
	return ans, nil
}

// serveView answers a trusted peer's viewer for an app running here.
func (p *peers) serveView(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, peerView)
	var req ViewRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	from, _ := discovery.RequestPeer(r.Context())
	// A peer sees and types into only what it handed here: its own app,
	// running on this device for it.
	if err := p.handedBy(name, from); err != nil {
		writeHandedByError(w, err, "view it")
		return
	}
	p.d.log.Info("peer opens a viewer", "app", name, "peer", from.Short())
	ans, err := p.d.streams.answer(r.Context(), name, req.Offer)
	if err != nil {
		status := http.StatusConflict
		if errors.Is(err, engine.ErrNotFound) {
			status = http.StatusNotFound
		}
		writeError(w, status, "view_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ViewAnswer{Answer: ans, Where: p.id.Name})
}

// serveView is the local API's end of a viewer's signalling.
func (h *handler) serveView(w http.ResponseWriter, r *http.Request) {
	var req ViewRequest
	if err := decodeJSON(r, &req); err != nil || req.Offer == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "a view request carries the viewer's WebRTC offer")
		return
	}
	c, _ := callerOf(r.Context())
	ans, err := h.d.view(r.Context(), r.PathValue("name"), req.Offer, c)
	if err != nil {
		h.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// View exchanges a viewer's offer for the app's answer, wherever it runs.
func (c *Client) View(ctx context.Context, name, offer string) (ViewAnswer, error) {
	var ans ViewAnswer
	err := c.do(ctx, http.MethodPost, "/v0/apps/"+name+"/view", ViewRequest{Offer: offer}, &ans)
	return ans, err
}

// Viewer returns a stream viewer for an app that signals through the daemon.
// Where it runs is reported to where, when not nil, at every connection.
func (c *Client) Viewer(name string, where func(string)) *stream.Viewer {
	return stream.NewViewer(func(ctx context.Context, offer string) (string, error) {
		ans, err := c.View(ctx, name, offer)
		if err != nil {
			return "", err
		}
		if where != nil {
			where(ans.Where)
		}
		return ans.Answer, nil
	}, nil)
}
