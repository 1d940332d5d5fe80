//go:build integration

package migration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/handoff/handoff/discovery"
	"github.com/handoff/handoff/engine/handles"
)

// TestHostileDestinationGetsNoHostFiles: a trusted destination answers the
// handles manifest with files the app never opened — /etc/shadow, the
// daemon's identity key, root's SSH key, a listed path with another hash, a
// path that climbs out of a listed one. The sender refuses the answer before
// anything is frozen: none of those files leaves, the handoff rolls back,
// and the app keeps running here.
func TestHostileDestinationGetsNoHostFiles(t *testing.T) {
	a, b := newSide(t), newSide(t)
	runXterm(t, a)
	identDir := t.TempDir()
	if _, err := discovery.LoadOrCreateIdentity(identDir, "workstation-a"); err != nil {
		t.Fatal(err)
	}
	identityKey := filepath.Join(identDir, "identity.key")
	secret, err := os.ReadFile(identityKey)
	if err != nil {
		t.Fatal(err)
	}
	shadow, _ := os.ReadFile("/etc/shadow")

	var (
		mu       sync.Mutex
		uploaded [][]byte // bodies of every upper-dir upload
		listed   []handles.Requirement
	)
	rv := &Receiver{Engine: b.eng, WorkDir: b.work}
	peer := serve(t, rv, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifest"):
			// The real receiver answers; the destination then lies.
			rec := httptest.NewRecorder()
			rv.ServeHTTP(rec, r)
			var honest MissingFiles
			json.Unmarshal(rec.Body.Bytes(), &honest)
			hostile := []handles.Requirement{
				{Path: "/etc/shadow", Kind: handles.KindRegular},
				{Path: identityKey, Kind: handles.KindRegular},
				{Path: "/root/.ssh/id_ed25519", Kind: handles.KindRegular},
			}
			// A path the manifest lists, but another content, and a path
			// that climbs out of it.
			mu.Lock()
			for _, req := range listed {
				if req.Hash != "" {
					hostile = append(hostile,
						handles.Requirement{Path: req.Path, Kind: req.Kind, Hash: strings.Repeat("0", len(req.Hash))},
						handles.Requirement{Path: req.Path + "/../../../../etc/shadow", Kind: req.Kind, Hash: req.Hash})
					break
				}
			}
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(MissingFiles{Files: append(honest.Files, hostile...)})
			return true
		case strings.HasSuffix(r.URL.Path, "/upper"):
			data, _ := io.ReadAll(r.Body)
			mu.Lock()
			uploaded = append(uploaded, data)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(data))
		}
		return false
	})
	// The manifest the sender will send, to build lies from its entries.
	m, err := a.eng.SettledHandles(context.Background(), "notes")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	listed = m.Required()
	mu.Unlock()

	s := &Sender{Engine: a.eng, From: "workstation-a", WorkDir: a.work}
	var phases []string
	_, err = s.Send(context.Background(), "notes", peer, func(p Progress) { phases = append(phases, p.Phase) })
	if !errors.Is(err, ErrUnlistedFile) || !strings.Contains(err.Error(), "/etc/shadow") || !strings.Contains(err.Error(), "keeps running here") {
		t.Fatalf("err = %v, want ErrUnlistedFile naming /etc/shadow and saying the app stays", err)
	}
	t.Logf("the sender said: %v", err)
	for _, p := range phases {
		if p == PhaseFreeze || p == PhaseFinal {
			t.Errorf("the app was frozen although the answer was refused: phases %v", phases)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, body := range uploaded {
		tr := tar.NewReader(bytes.NewReader(body))
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			for _, bad := range []string{"etc/shadow", strings.TrimPrefix(identityKey, "/"), "root/.ssh/id_ed25519"} {
				if strings.TrimPrefix(hdr.Name, "/") == bad {
					t.Errorf("the sender shipped %s to a hostile destination", hdr.Name)
				}
			}
		}
		if bytes.Contains(body, secret) || len(shadow) > 0 && bytes.Contains(body, shadow) {
			t.Error("a secret of the sender's host reached the destination")
		}
	}
	assertStillHere(t, a, b, rv)
}
