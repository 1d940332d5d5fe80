package app

import (
	"context"
	"encoding/json"
	"github.com/handoff/handoff/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/handoff/handoff/engine"
	"golang.org/x/sys/unix"
)

// newTestHandler serves the API over an engine with an empty state dir; no
// container is started by these tests.
func newTestHandler(t testing.TB) *handler {
	t.Helper()
	eng, err := engine.New(engine.Config{StateDir: testutil.StateDir(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), engine: eng, events: newHub()}
	return newHandler(d)
}

func asRoot(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), credKey{}, unix.Ucred{Uid: 0}))
}

func TestAPIErrors(t *testing.T) {
	h := newTestHandler(t)
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		root                     bool
		want                     int
		wantMsg                  string
	}{
		{"list empty", "GET", "/v0/apps", "", nil, false, 200, ""},
		{"unknown app", "GET", "/v0/apps/nope", "", nil, false, 404, `no such app: "nope"`},
		{"suspend unknown", "POST", "/v0/apps/nope/suspend", "", nil, true, 404, "no such app"},
		{"resume unknown", "POST", "/v0/apps/nope/resume", "", nil, true, 404, "no such app"},
		{"stop unknown", "DELETE", "/v0/apps/nope", "", nil, true, 404, "no such app"},
		{"handles unknown", "GET", "/v0/apps/nope/handles", "", nil, false, 404, "no such app"},
		{"screenshot unknown", "GET", "/v0/apps/nope/screenshot", "", nil, false, 404, "no such app"},
		{"bad json", "POST", "/v0/apps", "{not json", nil, true, 400, "cannot read the request"},
		{"unknown field", "POST", "/v0/apps", `{"name":"a","args":["x"],"bogus":1}`, nil, true, 400, "unknown field"},
		{"bad name", "POST", "/v0/apps", `{"name":"../etc","args":["xterm"],"as":"root"}`, nil, true, 400, "invalid app name"},
		{"no command", "POST", "/v0/apps", `{"name":"a","as":"root"}`, nil, true, 400, "no command given"},
		{"bad display", "POST", "/v0/apps", `{"name":"a","args":["x"],"width":-5,"as":"root"}`, nil, true, 400, "out of range"},
		{"root names no user", "POST", "/v0/apps", `{"name":"a","args":["x"]}`, nil, true, 400, "pass --as USER"},
		{"no such user", "POST", "/v0/apps", `{"name":"a","args":["x"],"as":"nobody-here"}`, nil, true, 400, "no such user"},
		{"reserved env", "POST", "/v0/apps", `{"name":"a","args":["x"],"as":"root","env":["HANDOFF_UID=0"]}`, nil, true, 400, "reserved"},
		{"huge body", "POST", "/v0/apps", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, nil, true, 400, "too large"},
		{"write without creds", "POST", "/v0/apps", `{"name":"a","args":["x"]}`, nil, false, 403, "root or membership"},
		{"browser origin", "GET", "/v0/apps", "", map[string]string{"Origin": "http://evil.example"}, true, 403, "browsers"},
		{"browser referer", "GET", "/v0/apps", "", map[string]string{"Referer": "http://evil.example/"}, true, 403, "browsers"},
		{"wrong method", "PUT", "/v0/apps", "", nil, true, 404, "no API endpoint PUT /v0/apps"},
		{"unknown endpoint", "GET", "/v0/nothing", "", nil, true, 404, "no API endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://handoff"+tt.path, strings.NewReader(tt.body))
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			if tt.root {
				r = asRoot(r)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.want, w.Body)
			}
			if tt.wantMsg != "" {
				var e apiError
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
					t.Fatalf("error body is not JSON: %q", w.Body)
				}
				if !strings.Contains(e.Error, tt.wantMsg) {
					t.Fatalf("error %q does not mention %q", e.Error, tt.wantMsg)
				}
			}
		})
	}
}

func TestAPIRejectsForeignHost(t *testing.T) {
	h := newTestHandler(t)
	r := asRoot(httptest.NewRequest("GET", "http://localhost:8080/v0/apps", nil))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403 for a request not addressed to the local API host", w.Code)
	}
}

// FuzzAPI throws arbitrary paths and bodies at the handler: it must answer,
// never panic, and never answer 5xx for a request about an app that does not exist.
func FuzzAPI(f *testing.F) {
	f.Add("POST", "/v0/apps", `{"name":"x","args":["xterm"],"width":-5}`)
	f.Add("GET", "/v0/apps/%2e%2e", "")
	f.Add("POST", "/v0/apps/a/suspend", "garbage")
	f.Add("DELETE", "/v0/apps/", "")
	h := newTestHandler(f)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#?") || len(method) == 0 || strings.ContainsAny(method, " \r\n\t()<>@,;:\\\"/[]?={}") {
			return
		}
		// Creating containers is not this fuzzer's business.
		if method == "POST" && strings.Contains(body, `"args"`) {
			return
		}
		r, err := http.NewRequest(method, "http://handoff"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, asRoot(r))
		if w.Code >= 500 {
			t.Fatalf("%s %s → %d %s", method, path, w.Code, w.Body)
		}
	})
}
