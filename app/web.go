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
	"time"

	"github.com/handoff/handoff/assets"
)

// DefaultWebListen is where the browser viewer is served: loopback only, so
// only this machine's browser can reach it, and then only with the token.
const DefaultWebListen = "127.0.0.1:7467"

// web serves the browser viewer page and its signalling. Any local user can
// reach a loopback port, so each request must carry the token that only
// callers with write access to the local API can read (GET /v0/web).
type web struct {
	d      *Daemon
	token  string
	addr   string
	server *http.Server
}

// WebInfo is where a browser opens an app.
type WebInfo struct {
	URL string `json:"url"` // add &app=NAME
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
	b := make([]byte, 16)
	rand.Read(b)
	w := &web{d: d, token: hex.EncodeToString(b), addr: ln.Addr().String()}
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

func (w *web) authorized(r *http.Request) bool {
	return subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(w.token)) == 1
}

func (w *web) servePage(rw http.ResponseWriter, r *http.Request) {
	if !w.authorized(r) {
		http.Error(rw, "open this page through `handoff web`, which adds the access token", http.StatusForbidden)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; media-src 'self' blob:")
	rw.Write(assets.ViewerPage)
}

func (w *web) serveView(rw http.ResponseWriter, r *http.Request) {
	if !w.authorized(r) {
		writeError(rw, http.StatusForbidden, "forbidden", "missing or wrong access token")
		return
	}
	r.Body = http.MaxBytesReader(rw, r.Body, maxRequestBody)
	var req ViewRequest
	if err := decodeJSON(r, &req); err != nil || req.Offer == "" {
		writeError(rw, http.StatusBadRequest, "bad_request", "a view request carries the browser's WebRTC offer")
		return
	}
	ans, err := w.d.view(r.Context(), r.PathValue("name"), req.Offer, caller{UID: 0})
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
	writeJSON(w, http.StatusOK, WebInfo{URL: fmt.Sprintf("http://%s/?token=%s", h.d.web.addr, h.d.web.token)})
}

// Web returns the browser viewer's address with its access token.
func (c *Client) Web(ctx context.Context) (WebInfo, error) {
	var info WebInfo
	err := c.do(ctx, http.MethodGet, "/v0/web", nil, &info)
	return info, err
}
