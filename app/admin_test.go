package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoff/handoff/discovery"
	"golang.org/x/sys/unix"
)

// fakePkcheck puts a pkcheck in a temporary dir that records its arguments
// and answers with exit; it stands in for polkit in tests of the logic
// around it (TestPolkitDecides runs the real one).
func fakePkcheck(t *testing.T, exit int) (path, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	path = filepath.Join(dir, "pkcheck")
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" > %s\necho 'Error checking for authorization: polkit is not running' >&2\nexit %d\n", argsFile, exit)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, argsFile
}

// trustRequest asks the handler to trust a device as uid, from this process.
func trustRequest(t *testing.T, h *handler, uid uint32, id discovery.DeviceID) (int, string) {
	t.Helper()
	return trustRequestFrom(t, h, int32(os.Getpid()), uid, id)
}

// trustRequestFrom asks as uid from process pid.
func trustRequestFrom(t *testing.T, h *handler, pid int32, uid uint32, id discovery.DeviceID) (int, string) {
	t.Helper()
	return serveTrustRequest(h, trustRequestCtx(t, pid, uid, id))
}

// trustRequestCtx is a trust request carrying what the local API learns of
// a connection when it is made: the caller's credentials and start time.
func trustRequestCtx(t *testing.T, pid int32, uid uint32, id discovery.DeviceID) *http.Request {
	t.Helper()
	r := httptest.NewRequest("POST", "http://handoff/v0/peers/"+id.String()+"/trust", strings.NewReader(`{}`))
	ctx := context.WithValue(r.Context(), credKey{}, unix.Ucred{Pid: pid, Uid: uid, Gid: uid})
	ctx = withPeerStart(ctx, pid)
	r = r.WithContext(ctx)
	r.SetPathValue("id", id.String())
	return r
}

func serveTrustRequest(h *handler, r *http.Request) (int, string) {
	w := httptest.NewRecorder()
	h.serveTrust(w, r)
	var e apiError
	json.Unmarshal(w.Body.Bytes(), &e)
	return w.Code, e.Error
}

func peersTestHandler(t *testing.T) *handler {
	t.Helper()
	h := newTestHandler(t)
	ts, err := discovery.OpenTrustStore(filepath.Join(t.TempDir(), "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	h.d.peers = &peers{d: h.d, trust: ts, id: &discovery.Identity{Name: "ws-b"}}
	return h
}

func TestTrustNeedsAnAdministrator(t *testing.T) {
	h := peersTestHandler(t)
	id := discovery.IDFromCert([]byte("ws-b"))
	start, err := processStart(int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		uid     uint32
		exit    int // of pkcheck; -1: not installed
		want    int
		wantMsg string
	}{
		{"root", 0, -1, 200, ""},
		{"no polkit", 1000, -1, 403, "not installed"},
		{"polkit says yes", 1000, 0, 200, ""},
		{"polkit says no", 1000, 1, 403, "did not authorize"},
		{"no agent to ask", 1000, 2, 403, "no authentication agent"},
		{"dialog dismissed", 1000, 3, 403, "dismissed"},
		{"polkit not running", 1000, 127, 403, "polkit is not running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func(old string) { pkcheck = old }(pkcheck)
			pkcheck = filepath.Join(t.TempDir(), "no-pkcheck")
			var args string
			if tt.exit >= 0 {
				pkcheck, args = fakePkcheck(t, tt.exit)
			}
			h.d.peers.trust.Untrust(id)
			code, msg := trustRequest(t, h, tt.uid, id)
			if code != tt.want || !strings.Contains(msg, tt.wantMsg) {
				t.Fatalf("%d %q, want %d mentioning %q", code, msg, tt.want, tt.wantMsg)
			}
			if code == 403 {
				if want := "trusting a device needs an administrator: run `sudo handoff trust " + id.String() + "`"; !strings.Contains(msg, want) {
					t.Fatalf("the refusal %q does not say %q", msg, want)
				}
				if h.d.peers.trust.IsTrusted(id) {
					t.Fatal("refused, but trusted anyway")
				}
			} else if !h.d.peers.trust.IsTrusted(id) {
				t.Fatal("allowed, but not trusted")
			}
			if args != "" {
				got, _ := os.ReadFile(args)
				want := fmt.Sprintf("--action-id dev.handoff.trust --process %d,%d,1000 --allow-user-interaction", os.Getpid(), start)
				if strings.TrimSpace(string(got)) != want {
					t.Fatalf("pkcheck got %q, want %q", got, want)
				}
			}
		})
	}
}

func TestProcessStart(t *testing.T) {
	a, err := processStart(int32(os.Getpid()))
	if err != nil || a == 0 {
		t.Fatalf("%d %v", a, err)
	}
	if b, _ := processStart(int32(os.Getpid())); b != a {
		t.Fatal("the start time of this process changed")
	}
	if init, _ := processStart(1); init >= a {
		t.Fatalf("init started at %d, after this test (%d)", init, a)
	}
	if _, err := processStart(-5); err == nil {
		t.Fatal("a start time for no process")
	}
}

// TestReceivedAppsPersist: which device handed which app here survives a
// restart, and only that device is let in.
func TestReceivedAppsPersist(t *testing.T) {
	h := peersTestHandler(t)
	dir := t.TempDir()
	h.d.cfg.StateDir = dir
	p := h.d.peers
	p.received, p.arriving = map[string]ReceivedApp{}, map[string]arrival{}
	a, c := discovery.IDFromCert([]byte("ws-a")), discovery.IDFromCert([]byte("ws-c"))
	if err := p.accepting("notes", a, "ws-a", true); err != nil {
		t.Fatal(err)
	}
	// While notes arrives from ws-a, ws-c cannot slip in one of that name.
	if err := p.accepting("notes", c, "ws-c", false); err == nil || !strings.Contains(err.Error(), "another device") {
		t.Fatalf("a second device offering the same name: %v", err)
	}
	p.arrived("notes")
	if err := p.handedBy("notes", a); err != nil {
		t.Fatal(err)
	}
	if err := p.handedBy("notes", c); err == nil {
		t.Fatal("ws-c may touch ws-a's app")
	}
	var list []ReceivedApp
	if err := readJSONFile(filepath.Join(dir, "received.json"), &list); err != nil || len(list) != 1 || list[0].PeerID != a {
		t.Fatalf("on disk: %+v %v", list, err)
	}
	p.forgetReceived("notes")
	if err := readJSONFile(filepath.Join(dir, "received.json"), &list); err != nil || len(list) != 0 {
		t.Fatalf("on disk after it left: %+v %v", list, err)
	}
}

func TestRequestIDsAreRandom(t *testing.T) {
	p := &peers{requests: map[string]*pendingRequest{}}
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := p.newRequestIDLocked("notes")
		if seen[id] || !strings.HasPrefix(id, "notes-") {
			t.Fatalf("request ID %q (seen: %v)", id, seen[id])
		}
		seen[id] = true
		p.requests[id] = &pendingRequest{}
	}
}
