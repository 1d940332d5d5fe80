package engine

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/xxh3"
)

// homeFixture is a user's home on "this" machine and files staged as if
// they came with an app from ws-a.
type homeFixture struct {
	e      *Engine
	u      User
	staged string
}

func newHomeFixture(t *testing.T) *homeFixture {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o755)
	return &homeFixture{
		e:      &Engine{sync: &syncRecords{dir: filepath.Join(dir, "sync")}},
		u:      User{Name: "alice", UID: os.Getuid(), GID: os.Getgid(), Home: home},
		staged: filepath.Join(dir, "staged"),
	}
}

// incoming stages a file and describes it.
func (h *homeFixture) incoming(t *testing.T, rel, content string) HomeFile {
	t.Helper()
	p := filepath.Join(h.staged, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := xxh3.HashString128(content).Bytes()
	return HomeFile{Path: rel, Size: int64(len(content)), Mode: 0o640, MTime: time.Unix(1700000000, 0).UTC(), Hash: hex.EncodeToString(sum[:])}
}

func (h *homeFixture) here(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(h.u.Home, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *homeFixture) read(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.u.Home, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return string(data)
}

func TestPlaceHomeFilesRule(t *testing.T) {
	t.Run("missing here: written", func(t *testing.T) {
		h := newHomeFixture(t)
		f := h.incoming(t, "docs/notes.txt", "from a")
		got, err := h.e.placeHomeFiles(h.u, "ws-a", []HomeFile{f}, h.staged)
		if err != nil || !slices.Equal(got.Written, []string{"docs/notes.txt"}) || got.Bytes != 6 {
			t.Fatalf("%+v %v", got, err)
		}
		if h.read(t, "docs/notes.txt") != "from a" {
			t.Fatal("content")
		}
		st, _ := os.Stat(filepath.Join(h.u.Home, "docs/notes.txt"))
		if st.Mode().Perm() != 0o640 || !st.ModTime().Equal(f.MTime) {
			t.Fatalf("mode %v mtime %v", st.Mode(), st.ModTime())
		}
	})
	t.Run("same bytes here: nothing written", func(t *testing.T) {
		h := newHomeFixture(t)
		f := h.incoming(t, "notes.txt", "same")
		h.here(t, "notes.txt", "same")
		got, err := h.e.placeHomeFiles(h.u, "ws-a", []HomeFile{f}, "")
		if err != nil || got.Unchanged != 1 || got.Bytes != 0 || len(got.Written) != 0 {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("differs, unchanged here since the last sync: replaced", func(t *testing.T) {
		h := newHomeFixture(t)
		h.here(t, "notes.txt", "v1")
		v1 := h.incoming(t, "notes.txt", "v1")
		if err := h.e.RecordHomeSync("alice", []HomeFile{v1}, nil); err != nil {
			t.Fatal(err)
		}
		v2 := h.incoming(t, "notes.txt", "v1 and more")
		got, err := h.e.placeHomeFiles(h.u, "ws-a", []HomeFile{v2}, h.staged)
		if err != nil || !slices.Equal(got.Written, []string{"notes.txt"}) || len(got.Kept) != 0 {
			t.Fatalf("%+v %v", got, err)
		}
		if h.read(t, "notes.txt") != "v1 and more" {
			t.Fatal("not replaced")
		}
	})
	t.Run("differs and never synced: both kept", func(t *testing.T) {
		h := newHomeFixture(t)
		h.here(t, "notes.txt", "written on b")
		f := h.incoming(t, "notes.txt", "written on a")
		got, err := h.e.placeHomeFiles(h.u, "ws-a", []HomeFile{f}, h.staged)
		want := []HomeConflict{{Path: "notes.txt", SavedAs: "notes (from ws-a).txt"}}
		if err != nil || !slices.Equal(got.Kept, want) || len(got.Written) != 0 {
			t.Fatalf("%+v %v", got, err)
		}
		if h.read(t, "notes.txt") != "written on b" || h.read(t, "notes (from ws-a).txt") != "written on a" {
			t.Fatal("a version was lost")
		}
	})
	t.Run("changed here since the last sync: both kept, names do not collide", func(t *testing.T) {
		h := newHomeFixture(t)
		v1 := h.incoming(t, "notes.txt", "v1")
		h.e.RecordHomeSync("alice", []HomeFile{v1}, nil)
		h.here(t, "notes.txt", "v1, edited on b")
		h.here(t, "notes (from ws-a).txt", "an older conflict")
		f := h.incoming(t, "notes.txt", "v1, edited on a")
		got, err := h.e.placeHomeFiles(h.u, "ws-a", []HomeFile{f}, h.staged)
		if err != nil || len(got.Kept) != 1 || got.Kept[0].SavedAs != "notes (from ws-a) 2.txt" {
			t.Fatalf("%+v %v", got, err)
		}
		for rel, want := range map[string]string{"notes.txt": "v1, edited on b", "notes (from ws-a).txt": "an older conflict", "notes (from ws-a) 2.txt": "v1, edited on a"} {
			if got := h.read(t, rel); got != want {
				t.Errorf("%s = %q, want %q", rel, got, want)
			}
		}
	})
	t.Run("a link in the home never takes a write outside", func(t *testing.T) {
		h := newHomeFixture(t)
		outside := t.TempDir()
		os.Symlink(outside, filepath.Join(h.u.Home, "docs"))
		os.Symlink(filepath.Join(outside, "x"), filepath.Join(h.u.Home, "x"))
		files := []HomeFile{h.incoming(t, "docs/owned", "no"), h.incoming(t, "x", "no")}
		h.e.placeHomeFiles(h.u, "ws-a", files[:1], h.staged)
		h.e.placeHomeFiles(h.u, "ws-a", files[1:], h.staged)
		ents, _ := os.ReadDir(outside)
		if len(ents) != 0 {
			t.Fatalf("wrote %s outside the home", ents[0].Name())
		}
	})
	t.Run("a path from a peer must stay in the home", func(t *testing.T) {
		h := newHomeFixture(t)
		for _, p := range []string{"../x", "/etc/passwd", "a/../../b", ""} {
			if _, err := h.e.placeHomeFiles(h.u, "ws-a", []HomeFile{{Path: p, Hash: "00"}}, h.staged); err == nil {
				t.Errorf("%q accepted", p)
			}
		}
	})
}

func TestConflictName(t *testing.T) {
	for in, want := range map[string]string{
		"notes.txt":          "notes (from ws-a).txt",
		"docs/report.v2.odt": "docs/report.v2 (from ws-a).odt",
		".bashrc":            ".bashrc (from ws-a)",
		"Makefile":           "Makefile (from ws-a)",
	} {
		if got := conflictName(in, "ws-a"); got != want {
			t.Errorf("%s → %s, want %s", in, got, want)
		}
	}
	if got := conflictName("a.txt", "evil/../x"); strings.Contains(got, "/") {
		t.Errorf("a device name made a path: %s", got)
	}
}
