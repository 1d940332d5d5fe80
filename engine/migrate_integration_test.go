//go:build integration

package engine

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/testutil"

	"github.com/handoff/handoff/engine/delta"
	"github.com/handoff/handoff/stream/fb"
)

func newTestEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(Config{StateDir: testutil.StateDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, a := range e.List() {
			e.Stop(context.Background(), a.Name)
		}
		e.Close()
	})
	return e
}

// stableShot waits until three snapshots in a row, 200 ms apart, are
// identical: on a loaded machine a screen can hold still for a moment while
// the X server still has drawing queued.
func stableShot(t *testing.T, e *Engine, name string) []byte {
	t.Helper()
	var last []byte
	same := 0
	for i := 0; i < 60; i++ {
		img, err := snapshot(e, name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(img.Pix, last) {
			if same++; same == 2 {
				return last
			}
		} else {
			same = 0
		}
		last = img.Pix
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the screen never settled")
	return nil
}

// TestHandoffBetweenEngines moves an xterm with unsaved typed text from one
// engine to another on this machine through the handoff primitives: a
// pre-copy snapshot while it runs, freeze, final dump, only the changed pages
// transferred (engine/delta), instantiate, release. The screen on the
// destination equals the source's last screen and typing still works.
func TestHandoffBetweenEngines(t *testing.T) {
	ctx := context.Background()
	src, dst := newTestEngine(t), newTestEngine(t)
	if _, err := src.Run(ctx, Spec{User: appUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	typeText(t, src, "notes", "unsaved words")
	spool := t.TempDir()
	pre := filepath.Join(spool, "pre")
	if err := src.Snapshot(ctx, "notes", pre); err != nil {
		t.Fatal(err)
	}
	if st, _ := src.Get("notes"); st.State != StateRunning {
		t.Fatalf("after the pre-copy snapshot the app is %s", st.State)
	}
	preIx, err := delta.IndexDir(pre)
	if err != nil {
		t.Fatal(err)
	}
	pool := delta.NewPool()
	pool.Add(pre, preIx) // as if the pre-copy round had been sent

	// Let xterm and the X server finish drawing before the freeze: requests
	// still queued in the X socket would be drawn on the destination, which
	// is right, but would make the screens differ.
	stableShot(t, src, "notes")
	if err := src.Freeze(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	before := stableShot(t, src, "notes") // frozen: the source's last screen
	final := filepath.Join(spool, "final")
	if err := src.DumpFrozen(ctx, "notes", final); err != nil {
		t.Fatal(err)
	}
	if st, _ := src.Get("notes"); st.State != StateFrozen {
		t.Fatalf("after the final dump the app is %s, want frozen", st.State)
	}
	ix, err := delta.IndexDir(final)
	if err != nil {
		t.Fatal(err)
	}
	missing := pool.Missing(ix)
	var wire bytes.Buffer
	sent, err := delta.WritePieces(&wire, final, ix, missing)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("final round: %d of %d bytes sent (%.1f%%)", sent, ix.Bytes(), 100*float64(sent)/float64(ix.Bytes()))
	if sent >= ix.Bytes()/2 {
		t.Errorf("final round sent %d of %d bytes; pre-copy should have saved most of it", sent, ix.Bytes())
	}
	if err := pool.ReadPieces(&wire, t.TempDir(), ix, missing); err != nil {
		t.Fatal(err)
	}
	received := filepath.Join(t.TempDir(), "image")
	if err := pool.Assemble(received, ix); err != nil {
		t.Fatal(err)
	}
	var upper bytes.Buffer
	if err := src.ExportUpper(ctx, "notes", &upper, nil); err != nil {
		t.Fatal(err)
	}
	spec, _ := src.Spec("notes")
	info, err := dst.Instantiate(ctx, spec, &upper, received)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != StateRunning {
		t.Fatalf("instantiated app is %s", info.State)
	}
	after := stableShot(t, dst, "notes")
	if !bytes.Equal(before, after) {
		img := func(pix []byte) *image.RGBA {
			return &image.RGBA{Pix: pix, Stride: spec.Width * 4, Rect: image.Rect(0, 0, spec.Width, spec.Height)}
		}
		n, where := fb.Diff(img(before), img(after))
		dir, _ := os.MkdirTemp("", "handoff-screens-")
		for name, pix := range map[string][]byte{"source.png": before, "destination.png": after} {
			if f, err := os.Create(filepath.Join(dir, name)); err == nil {
				png.Encode(f, img(pix))
				f.Close()
			}
		}
		t.Fatalf("the destination's screen differs from the source's last screen: %d pixels in %v (both kept in %s)", n, where, dir)
	}
	if err := src.Release(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	if len(src.List()) != 0 {
		t.Fatalf("source still lists %v", src.List())
	}
	if out, err := dst.Exec(ctx, "notes", "xdotool", "mousemove", "20", "20", "type", "--delay", "10", " more"); err != nil {
		t.Fatalf("type on destination: %v %s", err, out)
	}
	if bytes.Equal(after, stableShot(t, dst, "notes")) {
		t.Fatal("typing on the destination changed nothing")
	}
}

// TestHandoffRollback: a frozen app thaws and carries on when the handoff fails.
func TestHandoffRollback(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "clock", Args: []string{"xclock", "-update", "1"}, Width: 400, Height: 300}); err != nil {
		t.Fatal(err)
	}
	// A handoff freezes an app that has been running (it was pre-copied
	// first); right after start the init is still forking its start-up
	// loop, and CRIU can find a task it cannot seize.
	time.Sleep(1500 * time.Millisecond)
	if err := e.Freeze(ctx, "clock"); err != nil {
		t.Fatal(err)
	}
	if err := e.DumpFrozen(ctx, "clock", filepath.Join(t.TempDir(), "img")); err != nil {
		t.Fatal(err)
	}
	frozen := stableShot(t, e, "clock")
	time.Sleep(1200 * time.Millisecond)
	if _, err := snapshot(e, "clock"); err != nil {
		t.Fatal("no framebuffer while frozen")
	}
	if err := e.Suspend(ctx, "clock"); err == nil {
		t.Fatal("suspend of a frozen app was accepted")
	}
	if err := e.Thaw(ctx, "clock"); err != nil {
		t.Fatal(err)
	}
	// The clock ticks every second; on a loaded machine give it time.
	shot := func() (*image.RGBA, error) { return snapshot(e, "clock") }
	for deadline := time.Now().Add(15 * time.Second); ; {
		img, err := shot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(img.Pix, frozen) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the clock did not move after thawing")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
