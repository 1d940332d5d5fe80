package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"strconv"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/stream/fb"
	"golang.org/x/sys/unix"
)

// APIPrefix versions the local API.
const APIPrefix = "/v0/"

// apiHost is the Host header the local API accepts: a browser page cannot
// forge it, so a web page cannot drive the daemon through the socket.
const apiHost = "handoff"

// maxRequestBody bounds request bodies; no request needs more.
const maxRequestBody = 1 << 20

// Status is the daemon's answer to GET /v0/status.
type Status struct {
	Handoffs []HandoffRecord  `json:"handoffs,omitempty"` // the last ones, oldest first
	Version  string           `json:"version"`
	StateDir string           `json:"state_dir"`
	Criu     *engine.CriuInfo `json:"criu,omitempty"`
	CriuErr  string           `json:"criu_error,omitempty"`
	Apps     int              `json:"apps"`
}

// RunRequest is the body of POST /v0/apps. The app runs as the caller
// (from the socket's peer credentials), unless root asks otherwise.
type RunRequest struct {
	Name        string   `json:"name"`
	Args        []string `json:"args"`
	Env         []string `json:"env,omitempty"` // e.g. the caller's LANG
	Width       int      `json:"width,omitempty"`
	Height      int      `json:"height,omitempty"`
	Depth       int      `json:"depth,omitempty"`
	MemoryLimit int64    `json:"memory_limit,omitempty"` // bytes
	// As names the user the app runs as: only root may name another user,
	// or root itself.
	As string `json:"as,omitempty"`
	// SudoUser is $SUDO_USER of a root caller that names nobody: the
	// user who ran `sudo handoff run …` gets the app.
	SudoUser string `json:"sudo_user,omitempty"`
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

type access int

const (
	readAccess access = iota
	writeAccess
)

// handler serves the local API. Every endpoint is a method listed in routes.
type handler struct {
	d   *Daemon
	log *slog.Logger
	mux *http.ServeMux
}

func newHandler(d *Daemon) *handler {
	h := &handler{d: d, log: d.log, mux: http.NewServeMux()}
	routes := []struct {
		pattern string
		need    access
		serve   func(http.ResponseWriter, *http.Request)
	}{
		{"GET /v0/status", readAccess, h.serveStatus},
		{"GET /v0/events", readAccess, h.serveEvents},
		{"GET /v0/apps", readAccess, h.serveApps},
		{"POST /v0/apps", writeAccess, h.serveRun},
		{"GET /v0/apps/{name}", readAccess, h.serveApp},
		{"DELETE /v0/apps/{name}", writeAccess, h.serveStop},
		{"POST /v0/apps/{name}/suspend", writeAccess, h.serveSuspend},
		{"POST /v0/apps/{name}/resume", writeAccess, h.serveResume},
		{"GET /v0/apps/{name}/handles", readAccess, h.serveHandles},
		{"GET /v0/apps/{name}/screenshot", readAccess, h.serveScreenshot},
		{"POST /v0/apps/{name}/send", writeAccess, h.serveSend},
		{"POST /v0/apps/{name}/bring-back", writeAccess, h.serveBringBack},
		{"POST /v0/apps/{name}/run-here", writeAccess, h.serveRunHere},
		{"POST /v0/apps/{name}/view", writeAccess, h.serveView},
		{"GET /v0/web", writeAccess, h.serveWeb},
		{"GET /v0/id", readAccess, h.serveID},
		{"GET /v0/peers", readAccess, h.servePeers},
		{"GET /v0/peers/addresses", readAccess, h.servePeerAddresses},
		{"POST /v0/peers/addresses", writeAccess, h.serveAddPeer}, // a place to look: trusts nothing
		{"DELETE /v0/peers/addresses", writeAccess, h.serveRemovePeer},
		{"POST /v0/peers/{id}/trust", writeAccess, h.serveTrust},
		{"DELETE /v0/peers/{id}/trust", writeAccess, h.serveUntrust},
		{"GET /v0/remote", readAccess, h.serveRemote},
		{"POST /v0/pair-code", writeAccess, h.servePairCode}, // with trust changes, also
		{"POST /v0/pair", writeAccess, h.servePairStart},     // an administrator (admin.go)
		{"DELETE /v0/pair", writeAccess, h.servePairCancel},
		{"GET /v0/requests", readAccess, h.serveRequests},
		{"POST /v0/requests/{id}/accept", writeAccess, h.serveAnswer(true)},
		{"POST /v0/requests/{id}/decline", writeAccess, h.serveAnswer(false)},
	}
	for _, r := range routes {
		h.mux.HandleFunc(r.pattern, h.guard(r.need, r.serve))
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// guard refuses browser-originated requests and callers without the access
// the endpoint needs, then bounds the body.
func (h *handler) guard(need access, serve func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" || r.Host != apiHost {
			writeError(w, http.StatusForbidden, "forbidden", "requests from browsers are not accepted on the local API")
			return
		}
		if need == writeAccess && !mayWrite(r.Context()) {
			writeError(w, http.StatusForbidden, "forbidden", "this needs root or membership in the 'handoff' group")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		serve(w, r)
	}
}

func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := Status{Version: Version, StateDir: h.d.engine.StateDir(), Apps: len(h.d.engine.List())}
	if h.d.peers != nil {
		st.Handoffs = h.d.peers.history.list()
	}
	if info, err := h.d.engine.Criu(r.Context()); err != nil {
		st.CriuErr = err.Error()
	} else {
		st.Criu = &info
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) serveApps(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, visible(r.Context(), h.d.engine.List()))
}

func (h *handler) serveApp(w http.ResponseWriter, r *http.Request) {
	if info, ok := h.ownApp(w, r); ok {
		writeJSON(w, http.StatusOK, info)
	}
}

func (h *handler) serveRun(w http.ResponseWriter, r *http.Request) {
	var req RunRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "cannot read the request: "+err.Error())
		return
	}
	c, ok := callerOf(r.Context())
	if !ok {
		writeError(w, http.StatusForbidden, "forbidden", "the daemon cannot tell who you are (no peer credentials)")
		return
	}
	user, err := appUser(c, req.As, req.SudoUser)
	if err != nil {
		h.writeEngineError(w, err)
		return
	}
	info, err := h.d.engine.Run(r.Context(), engine.Spec{
		Name: req.Name, Args: req.Args, Env: req.Env, User: user,
		Width: req.Width, Height: req.Height, Depth: req.Depth, MemoryLimit: req.MemoryLimit,
	})
	if err != nil {
		h.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (h *handler) serveStop(w http.ResponseWriter, r *http.Request) {
	h.lifecycle(w, r, h.d.engine.Stop)
}

func (h *handler) serveSuspend(w http.ResponseWriter, r *http.Request) {
	h.lifecycle(w, r, h.d.engine.Suspend)
}

func (h *handler) serveResume(w http.ResponseWriter, r *http.Request) {
	h.lifecycle(w, r, h.d.engine.Resume)
}

func contextWithoutCancel(r *http.Request) context.Context { return context.WithoutCancel(r.Context()) }

// lifecycle runs a state-changing operation. It does not stop halfway when
// the client goes away: half a checkpoint helps nobody.
func (h *handler) lifecycle(w http.ResponseWriter, r *http.Request, op func(context.Context, string) error) {
	name := r.PathValue("name")
	if _, ok := h.ownApp(w, r); !ok {
		return
	}
	if err := op(context.WithoutCancel(r.Context()), name); err != nil {
		h.writeEngineError(w, err)
		return
	}
	if info, err := h.d.engine.Get(name); err == nil {
		writeJSON(w, http.StatusOK, info)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) serveHandles(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.ownApp(w, r); !ok {
		return
	}
	m, err := h.d.engine.Handles(r.Context(), r.PathValue("name"))
	if err != nil {
		h.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (h *handler) serveScreenshot(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.ownApp(w, r); !ok {
		return
	}
	f, err := h.d.engine.OpenFramebuffer(r.PathValue("name"))
	if err != nil {
		h.writeEngineError(w, err)
		return
	}
	img, err := fb.SnapshotOf(f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "read the app's display: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/png")
	if err := png.Encode(w, img); err != nil {
		h.log.Debug("write screenshot", "err", err)
	}
}

// serveEvents streams events as newline-delimited JSON until the client leaves.
func (h *handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal", "streaming unsupported")
		return
	}
	who, _ := callerOf(r.Context())
	ch, cancel := h.d.events.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	_ = enc.Encode(Event{Type: EventHello, Time: time.Now().UTC()})
	flusher.Flush()
	keepalive := time.NewTicker(30 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			if ev.User != "" && !who.owns(ev.User) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
			flusher.Flush()
		case <-keepalive.C:
			if _, err := io.WriteString(w, "\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// writeEngineError maps engine errors to status codes a client can act on.
func (h *handler) writeEngineError(w http.ResponseWriter, err error) {
	var criuErr *engine.CriuError
	status, code := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, engine.ErrNotFound):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, errForbidden):
		status, code = http.StatusForbidden, "forbidden"
	case errors.Is(err, engine.ErrNoSuchUser):
		status, code = http.StatusBadRequest, "no_such_user"
	case errors.Is(err, engine.ErrInvalidName), errors.Is(err, engine.ErrInvalidSpec):
		status, code = http.StatusBadRequest, "bad_request"
	case errors.Is(err, engine.ErrExists):
		status, code = http.StatusConflict, "exists"
	case errors.Is(err, engine.ErrWrongState), errors.Is(err, engine.ErrBusy):
		status, code = http.StatusConflict, "wrong_state"
	case errors.Is(err, engine.ErrBlocked):
		status, code = http.StatusUnprocessableEntity, "blocked"
	case errors.Is(err, engine.ErrBadImage):
		status, code = http.StatusUnprocessableEntity, "bad_image"
	case errors.Is(err, engine.ErrNoSpace):
		status, code = http.StatusInsufficientStorage, "no_space"
	case errors.As(err, &criuErr):
		status, code = http.StatusServiceUnavailable, "criu"
	}
	if status == http.StatusInternalServerError {
		h.log.Warn("request failed", "err", err)
	}
	writeError(w, status, code, err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	_ = bw.Flush()
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

// Peer credentials of a local API connection (SO_PEERCRED).
type credKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	ctx = withPeerStart(ctx, cred.Pid) // for polkit (admin.go)
	return context.WithValue(ctx, credKey{}, *cred)
}

// mayWrite allows state changes to root and to members of the handoff group.
func mayWrite(ctx context.Context) bool {
	cred, ok := ctx.Value(credKey{}).(unix.Ucred)
	if !ok {
		return false
	}
	if cred.Uid == 0 {
		return true
	}
	u, err := user.LookupId(strconv.Itoa(int(cred.Uid)))
	if err != nil {
		return false
	}
	g, err := user.LookupGroup(SocketGroup)
	if err != nil {
		return false
	}
	gids, _ := u.GroupIds()
	for _, gid := range gids {
		if gid == g.Gid {
			return true
		}
	}
	return false
}
