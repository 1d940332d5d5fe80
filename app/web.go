package app

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/handoff/handoff/assets"
)

// DefaultWebListen is where the browser viewer is served: loopback only, so
// only this machine's browser can reach it, and then only with the token.
const DefaultWebListen = "127.0.0.1:7467"

// web serves the browser viewer page and its signalling. Any local user can
// reach a loopback port, so each request must carry a token that only
// callers with write access to the local API can get (GET /v0/web?app=…).
// A token shows one app, must be opened within webOpenWithin, and ends
// webSessionMax after it was made: a link left in a shell's history or a
// browser's does not open the daemon's apps for good.
type web struct {
	d      *Daemon
	addr   string
	server *http.Server

	mu     sync.Mutex
	tokens map[string]*webToken
	now    func() time.Time // tests move the clock
}

type webToken struct {
	app    string
	who    caller // who asked for the link: the viewer sees with their rights
	minted time.Time
	opened bool
}

// Browser viewer token lifetimes.
const (
	webOpenWithin = 2 * time.Minute
	webSessionMax = 12 * time.Hour
	maxWebTokens  = 64 // the oldest goes first
)

// WebInfo is where a browser opens an app.
type WebInfo struct {
	URL     string    `json:"url"`
	App     string    `json:"app"`
	Expires time.Time `json:"expires"` // the link must be opened before
}

func (d *Daemon) startWeb(listen string) error {
	addr, err := netip.ParseAddrPort(listen)
	if err != nil || !addr.Addr().IsLoopback() {
		return fmt.Errorf("the browser viewer listens on loopback only, not %q", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("browser viewer: %w", err)
	}
	w := &web{d: d, addr: ln.Addr().String(), tokens: map[string]*webToken{}, now: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", w.servePage)
	mux.HandleFunc("POST /view/{name}", w.serveView)
	w.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := w.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("browser viewer stopped", "err", err)
		}
	}()
	d.web = w
	return nil
}

// mint makes a token for app, for who.
func (w *web) mint(app string, who caller) (string, time.Time) {
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(now)
	for len(w.tokens) >= maxWebTokens {
		var oldest string
		for t, wt := range w.tokens {
			if oldest == "" || wt.minted.Before(w.tokens[oldest].minted) {
				oldest = t
			}
		}
		delete(w.tokens, oldest)
	}
	w.tokens[token] = &webToken{app: app, who: who, minted: now}
	return token, now.Add(webOpenWithin)
}

func (w *web) expireLocked(now time.Time) {
	for t, wt := range w.tokens {
		if age := now.Sub(wt.minted); age > webSessionMax || !wt.opened && age > webOpenWithin {
			delete(w.tokens, t)
		}
	}
}

// authorized checks the request's token and returns the app it shows and
// whom it was made for.
func (w *web) authorized(r *http.Request) (string, caller, bool) {
	given := r.URL.Query().Get("token")
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(w.now())
	for t, wt := range w.tokens {
		if subtle.ConstantTimeCompare([]byte(given), []byte(t)) == 1 {
			wt.opened = true
			return wt.app, wt.who, true
		}
	}
	return "", caller{}, false
}

func (w *web) servePage(rw http.ResponseWriter, r *http.Request) {
	if _, _, ok := w.authorized(r); !ok {
		http.Error(rw, "open this page through `handoff web APP`, which adds an access token (it must be opened within 2 minutes, and works for 12 hours)", http.StatusForbidden)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; media-src 'self' blob:")
	rw.Header().Set("Referrer-Policy", "no-referrer")
	rw.Write(assets.ViewerPage)
}

func (w *web) serveView(rw http.ResponseWriter, r *http.Request) {
	app, who, ok := w.authorized(r)
	if !ok {
		writeError(rw, http.StatusForbidden, "forbidden", "missing, wrong or expired access token: get a new link with `handoff web APP`")
		return
	}
	if app != r.PathValue("name") {
		writeError(rw, http.StatusForbidden, "forbidden", fmt.Sprintf("this link shows %s only: get one for %s with `handoff web %s`", app, r.PathValue("name"), r.PathValue("name")))
		return
	}
	r.Body = http.MaxBytesReader(rw, r.Body, maxRequestBody)
	var req ViewRequest
	if err := decodeJSON(r, &req); err != nil || req.Offer == "" {
		writeError(rw, http.StatusBadRequest, "bad_request", "a view request carries the browser's WebRTC offer")
		return
	}
	ans, err := w.d.view(r.Context(), app, req.Offer, who)
	if err != nil {
		writeError(rw, http.StatusConflict, "view_failed", err.Error())
		return
	}
	writeJSON(rw, http.StatusOK, ans)
}

func (h *handler) serveWeb(w http.ResponseWriter, r *http.Request) {
	if h.d.web == nil {
		writeError(w, http.StatusNotFound, "not_found", "the browser viewer is off (daemon --web)")
		return
	}
	app := r.URL.Query().Get("app")
	if app == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "say which app the link is for: `handoff web APP`")
		return
	}
	who, _ := callerOf(r.Context())
	if !h.d.knowsApp(app, who) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no app named %q here or handed off from here", app))
		return
	}
	token, expires := h.d.web.mint(app, who)
	q := url.Values{"app": {app}, "token": {token}}
	writeJSON(w, http.StatusOK, WebInfo{URL: fmt.Sprintf("http://%s/?%s", h.d.web.addr, q.Encode()), App: app, Expires: expires.UTC()})
}

// knowsApp reports whether app, one of who's, runs here or was handed off
// from here.
func (d *Daemon) knowsApp(app string, who caller) bool {
	if info, err := d.engine.Get(app); err == nil {
		return who.owns(info.User)
	}
	if d.peers == nil {
		return false
	}
	d.peers.mu.Lock()
	defer d.peers.mu.Unlock()
	r, ok := d.peers.remote[app]
	return ok && who.owns(r.User)
}

// Web returns a browser viewer link for app, with its access token.
func (c *Client) Web(ctx context.Context, app string) (WebInfo, error) {
	var info WebInfo
	err := c.do(ctx, http.MethodGet, "/v0/web?app="+urlQueryEscape(app), nil, &info)
	return info, err
}
