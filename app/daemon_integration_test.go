//go:build integration

package app

import (
	"bytes"
	"context"
	"github.com/handoff/handoff/internal/testutil"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/moby/sys/mountinfo"
)

func startTestDaemon(t *testing.T, stateDir, socket string) *Daemon {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	d, err := StartDaemon(context.Background(), DaemonConfig{StateDir: stateDir, Socket: socket, Logger: log,
		PeerListen: "127.0.0.1:0", NoDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDaemonLifecycle drives a real daemon through the client the CLI and the
// tray use: run, events, handles, screenshot, suspend, resume, restart, stop.
func TestDaemonLifecycle(t *testing.T) {
	dir := testutil.StateDir(t)
	state, socket := filepath.Join(dir, "state"), filepath.Join(dir, "handoff.sock")
	d := startTestDaemon(t, state, socket)
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Engine().Stop(context.Background(), "notes")
			d.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := NewClient(socket)

	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Type != EventHello {
		t.Fatalf("first event %+v, want hello", ev)
	}

	info, err := c.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}, Width: 800, Height: 600})
	if err != nil {
		t.Fatal(err)
	}
	if info.State != engine.StateRunning || info.PID == 0 || info.Width != 800 {
		t.Fatalf("run returned %+v", info)
	}
	if _, err := c.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm"}}); err == nil {
		t.Fatal("a second app with the same name was accepted")
	}

	m, err := c.Handles(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Handles) == 0 || len(m.Blocking()) != 0 {
		t.Fatalf("manifest has %d handles, %d blocking: %v", len(m.Handles), len(m.Blocking()), m.Blocking())
	}

	var shot bytes.Buffer
	if err := c.Screenshot(ctx, "notes", &shot); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&shot)
	if err != nil || img.Bounds().Dx() != 800 || img.Bounds().Dy() != 600 {
		t.Fatalf("screenshot: %v, bounds %v", err, img.Bounds())
	}

	if info, err = c.Suspend(ctx, "notes"); err != nil || info.State != engine.StateSuspended || info.ImageBytes == 0 {
		t.Fatalf("suspend: %+v, %v", info, err)
	}
	if err := c.Screenshot(ctx, "notes", io.Discard); err == nil {
		t.Fatal("screenshot of a suspended app succeeded")
	}
	if info, err = c.Resume(ctx, "notes"); err != nil || info.State != engine.StateRunning {
		t.Fatalf("resume: %+v, %v", info, err)
	}

	// The event stream saw every state the app went through, in order.
	want := []engine.State{engine.StateStarting, engine.StateRunning, engine.StateSuspending, engine.StateSuspended, engine.StateResuming, engine.StateRunning}
	var got []engine.State
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.Type == EventApp && ev.App.Name == "notes" && (len(got) == 0 || got[len(got)-1] != ev.App.State) {
				got = append(got, ev.App.State)
			}
		case <-ctx.Done():
			t.Fatalf("events so far %v, want %v", got, want)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}

	// A restarted daemon re-adopts the running app.
	pid := info.PID
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = startTestDaemon(t, state, socket)
	if info, err = c.App(ctx, "notes"); err != nil || info.State != engine.StateRunning || info.PID != pid {
		t.Fatalf("after restart: %+v, %v (pid was %d)", info, err, pid)
	}
	if err := c.Screenshot(ctx, "notes", io.Discard); err != nil {
		t.Fatalf("screenshot after restart: %v", err)
	}

	if err := c.Stop(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.App(ctx, "notes"); !IsNotFound(err) {
		t.Fatalf("after stop: %v, want not found", err)
	}
	if mounted, _ := mountinfo.Mounted(filepath.Join(state, "apps", "notes", "rootfs")); mounted {
		t.Fatal("the app's root is still mounted after stop")
	}
	if _, err := os.Stat(filepath.Join(state, "apps", "notes")); !os.IsNotExist(err) {
		t.Fatalf("the app's directory is left after stop: %v", err)
	}
	closed = true
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Fatal("socket left behind after the daemon closed")
	}
}

func TestDaemonRefusesSecondInstance(t *testing.T) {
	dir := testutil.StateDir(t)
	socket := filepath.Join(dir, "handoff.sock")
	d := startTestDaemon(t, filepath.Join(dir, "a"), socket)
	defer d.Close()
	if _, err := StartDaemon(context.Background(), DaemonConfig{StateDir: filepath.Join(dir, "b"), Socket: socket, PeerListen: "127.0.0.1:0", NoDiscovery: true}); err == nil {
		t.Fatal("a second daemon started on the same socket")
	}
}
