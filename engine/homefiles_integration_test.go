//go:build integration

package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHomeFilesOfAnApp: the files of the home an app holds open and those
// it wrote are listed, with their hashes; a resume keeps what it wrote.
func TestHomeFilesOfAnApp(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	u := appUser(t)
	os.WriteFile(filepath.Join(u.Home, "held.txt"), []byte("held open\n"), 0o644)
	os.Chown(filepath.Join(u.Home, "held.txt"), u.UID, u.GID)
	t.Cleanup(func() { os.Remove(filepath.Join(u.Home, "held.txt")); os.RemoveAll(filepath.Join(u.Home, "docs")) })
	script := "exec 3<$HOME/held.txt && exec xclock -update 1"
	if _, err := e.Run(ctx, Spec{User: u, Name: "homes", Args: []string{"sh", "-c", script}, Width: 200, Height: 200}); err != nil {
		t.Fatal(err)
	}
	if out, err := e.Exec(ctx, "homes", "sh", "-c", "mkdir -p ~/docs && echo saved > ~/docs/notes.txt && echo scratch > /tmp/not-home"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// The file is the user's, in the user's real home.
	st, err := os.Stat(filepath.Join(u.Home, "docs/notes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if owner := statOwner(st); owner != u.UID {
		t.Fatalf("a file the app saved belongs to uid %d, not the user's %d", owner, u.UID)
	}
	list := func() []HomeFile {
		t.Helper()
		m, err := e.Handles(ctx, "homes")
		if err != nil {
			t.Fatal(err)
		}
		files, err := e.HomeFiles(ctx, "homes", m)
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		files := list()
		paths := make([]string, 0, len(files))
		for _, f := range files {
			paths = append(paths, f.Path)
		}
		if slices.Equal(paths, []string{"docs/notes.txt", "held.txt"}) {
			if !files[1].Open || files[0].Open || files[0].Size != 6 || len(files[0].Hash) != 32 {
				t.Fatalf("%+v", files)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("home files %v, want docs/notes.txt and held.txt", paths)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := e.Suspend(ctx, "homes"); err != nil {
		t.Fatal(err)
	}
	if err := e.Resume(ctx, "homes"); err != nil {
		t.Fatal(err)
	}
	files := list()
	if len(files) != 2 || !strings.HasPrefix(files[0].Path, "docs/") {
		t.Fatalf("after a resume: %+v", files)
	}
}
