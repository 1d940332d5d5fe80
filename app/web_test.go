package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// webTestDaemon is a daemon with a browser viewer on loopback and an app
// "notes" on record as handed off from here; no container runs.
func webTestDaemon(t *testing.T) (*handler, *clock) {
	t.Helper()
	h := newTestHandler(t)
	h.d.peers = &peers{d: h.d, remote: map[string]RemoteApp{"notes": {Name: "notes"}}}
	if err := h.d.startWeb("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.d.web.server.Close() })
	c := &clock{t: time.Now()}
	h.d.web.now = c.now
	return h, c
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// webLink asks the local API for a link to app, as `handoff web` does.
func webLink(t *testing.T, h *handler, app string) (int, WebInfo) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, asRoot(httptest.NewRequest("GET", "http://handoff/v0/web?app="+url.QueryEscape(app), nil)))
	var info WebInfo
	json.Unmarshal(w.Body.Bytes(), &info)
	return w.Code, info
}

// browse does what the viewer page does: load the page, then signal for app.
func browse(t *testing.T, link, app string) (page, view int, msg string) {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	page = resp.StatusCode
	u, _ := url.Parse(link)
	u.Path = "/view/" + app
	resp, err = http.Post(u.String(), "application/json", strings.NewReader(`{"offer":"v=0"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page, resp.StatusCode, string(body)
}

func TestWebTokens(t *testing.T) {
	h, clk := webTestDaemon(t)
	if code, _ := webLink(t, h, ""); code != http.StatusBadRequest {
		t.Fatalf("a link for no app: %d", code)
	}
	if code, _ := webLink(t, h, "nothing"); code != http.StatusNotFound {
		t.Fatalf("a link for an unknown app: %d", code)
	}
	code, info := webLink(t, h, "notes")
	if code != http.StatusOK || !strings.Contains(info.URL, "app=notes") || !strings.Contains(info.URL, "token=") {
		t.Fatalf("link: %d %+v", code, info)
	}

	// The token shows notes, and nothing else.
	if _, view, msg := browse(t, info.URL, "calc"); view != http.StatusForbidden || !strings.Contains(msg, "shows notes only") {
		t.Fatalf("another app with notes' token: %d %s", view, msg)
	}
	u, _ := url.Parse(info.URL)
	resp, err := http.Get("http://" + u.Host + "/?app=notes&token=" + strings.Repeat("0", 32))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a made-up token: %d", resp.StatusCode)
	}

	// Opened in time, it works for the session; then it ends.
	clk.add(webSessionMax - time.Minute)
	if page, _, _ := browse(t, info.URL, "calc"); page != http.StatusOK {
		t.Fatalf("an opened link within its session: %d", page)
	}
	clk.add(2 * time.Minute)
	if page, _, _ := browse(t, info.URL, "notes"); page != http.StatusForbidden {
		t.Fatalf("a link past its session: %d", page)
	}

	// A link nobody opened in time is dead.
	_, late := webLink(t, h, "notes")
	clk.add(webOpenWithin + time.Second)
	if page, _, _ := browse(t, late.URL, "notes"); page != http.StatusForbidden {
		t.Fatalf("a link opened too late: %d", page)
	}

	// Links do not pile up.
	for i := 0; i < 3*maxWebTokens; i++ {
		webLink(t, h, "notes")
	}
	if n := len(h.d.web.tokens); n > maxWebTokens {
		t.Fatalf("%d tokens kept", n)
	}
}
