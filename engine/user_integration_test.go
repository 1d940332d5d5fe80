//go:build integration

package engine

import (
	"image"
	"os"
	"syscall"
	"testing"

	"github.com/handoff/handoff/internal/testutil"
	"github.com/handoff/handoff/stream/fb"
)

// appUser is the account the tests' apps run as: a real user, made for
// this test binary (see testutil.AppUser).
func appUser(t testing.TB) User {
	t.Helper()
	u, err := LookupUser(testutil.AppUser(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// snapshot is the app's screen now.
func snapshot(e *Engine, name string) (*image.RGBA, error) {
	f, err := e.OpenFramebuffer(name)
	if err != nil {
		return nil, err
	}
	return fb.SnapshotOf(f)
}

func statOwner(st os.FileInfo) int { return int(st.Sys().(*syscall.Stat_t).Uid) }
