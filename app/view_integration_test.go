//go:build integration

package app

import (
	"bytes"
	"context"
	"github.com/handoff/handoff/internal/testutil"
	"image"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/stream"
	"github.com/handoff/handoff/stream/fb"
)

// latestFrames keeps the newest frame a viewer decoded.
type latestFrames struct {
	mu  sync.Mutex
	img *image.RGBA
	n   int
}

func watch(v *stream.Viewer) *latestFrames {
	l := &latestFrames{}
	v.OnFrame(func(img *image.RGBA) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.img = image.NewRGBA(img.Rect)
		copy(l.img.Pix, img.Pix)
		l.n++
	})
	return l
}

func (l *latestFrames) get() (*image.RGBA, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.img, l.n
}

func decodePNG(t *testing.T, b []byte) *image.RGBA {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Rect, img, img.Bounds().Min, draw.Src)
	return rgba
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestViewLocal: a viewer of an app on this machine sees its display, types
// into it, survives a suspend (its X connection must not block the dump) and
// reconnects by itself after the resume.
func TestViewLocal(t *testing.T) {
	dir := testutil.StateDir(t)
	state, socket := filepath.Join(dir, "state"), filepath.Join(dir, "handoff.sock")
	d := startTestDaemon(t, state, socket)
	t.Cleanup(func() {
		d.Engine().Stop(context.Background(), "term")
		d.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := NewClient(socket)
	if _, err := c.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "term", Args: []string{"xterm", "-geometry", "80x24+0+0"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	var whereMu sync.Mutex
	where := ""
	v := c.Viewer("term", func(w string) { whereMu.Lock(); where = w; whereMu.Unlock() })
	frames := watch(v)
	go v.Run(ctx)
	defer v.Close()
	eventually(t, "a first frame", 20*time.Second, func() bool { _, n := frames.get(); return n > 0 })

	typeAndCheck := func(word string) {
		t.Helper()
		// Keys go to the window under the pointer (no window manager): put
		// it on xterm. Under load xterm may map late, so type again while
		// the command has not run.
		var lastTyped time.Time
		eventually(t, "the typed command to run in the container", 30*time.Second, func() bool {
			if time.Since(lastTyped) > 5*time.Second {
				if v.Send(stream.Input{Kind: stream.InputPointer, X: 50, Y: 50}) == nil &&
					v.Send(stream.Input{Kind: stream.InputText, Text: "echo " + word + " > /tmp/typed\n"}) == nil {
					lastTyped = time.Now()
				}
			}
			info, err := c.App(ctx, "term")
			if err != nil {
				return false
			}
			b, _ := os.ReadFile(filepath.Join("/proc", itoa(info.PID), "root/tmp/typed"))
			return strings.TrimSpace(string(b)) == word
		})
	}
	typeAndCheck("first")

	// The viewer's picture converges on the app's own screen.
	var shot bytes.Buffer
	time.Sleep(time.Second)
	if err := c.Screenshot(ctx, "term", &shot); err != nil {
		t.Fatal(err)
	}
	img, _ := frames.get()
	if p := fb.PSNR(decodePNG(t, shot.Bytes()), img); p < 35 {
		t.Errorf("viewer's frame PSNR %.1f dB against the screenshot, want ≥ 35", p)
	}

	// Suspend with a viewer that has typed (so holds an X connection).
	if _, err := c.Suspend(ctx, "term"); err != nil {
		t.Fatalf("suspend with a viewer connected: %v", err)
	}
	if _, err := c.Resume(ctx, "term"); err != nil {
		t.Fatal(err)
	}
	_, before := frames.get()
	typeAndCheck("second") // the viewer reconnected to the restored app
	eventually(t, "frames after the resume", 10*time.Second, func() bool { _, n := frames.get(); return n > before })
	whereMu.Lock()
	defer whereMu.Unlock()
	if where == "" {
		t.Error("the daemon did not say where the app runs")
	}
}

// TestViewAcrossWorkstations: an app handed from ws-a to ws-b is viewed from
// ws-a through ws-b's WebRTC stream, and text typed in ws-a's viewer reaches
// the app on ws-b.
func TestViewAcrossWorkstations(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	ctx := context.Background()
	waitPeer(t, a, "ws-b", true, 10*time.Second)
	waitPeer(t, b, "ws-a", true, 10*time.Second)
	idA, _ := a.client.ID(ctx)
	idB, _ := b.client.ID(ctx)
	if _, err := a.client.Trust(ctx, idB.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Trust(ctx, idA.ID.String(), TrustRequest{AutoAccept: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "notes", Args: []string{"xterm", "-geometry", "80x24+0+0"}, Width: 800, Height: 600}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := a.client.Send(ctx, "notes", "ws-b"); err != nil {
		t.Fatal(err)
	}

	// The viewer runs on ws-a, as the tray would: the CLI in ws-a's namespace.
	out := filepath.Join(t.TempDir(), "view.png")
	cmd := a.host.Command(ctx, os.Args[0], "--socket", a.client.Socket, "view", "notes",
		"--snapshot", out, "--type", "echo viewed-from-ws-a > /tmp/typed\n", "--timeout", "40s")
	cmd.Env = append(os.Environ(), "HANDOFF_TEST_MAIN=1")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("view from ws-a: %v\n%s", err, msg)
	}
	if !strings.Contains(string(msg), "from ws-b") {
		t.Errorf("view did not say the app runs on ws-b: %s", msg)
	}
	info, err := b.client.App(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the text typed on ws-a to run on ws-b", 10*time.Second, func() bool {
		got, _ := os.ReadFile(filepath.Join("/proc", itoa(info.PID), "root/tmp/typed"))
		return strings.TrimSpace(string(got)) == "viewed-from-ws-a"
	})
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if p := fb.PSNR(decodePNG(t, settledShot(t, b, "notes")), decodePNG(t, raw)); p < 35 {
		t.Errorf("ws-a's view of ws-b's app: PSNR %.1f dB, want ≥ 35", p)
	} else {
		t.Logf("ws-a's view of ws-b's app: PSNR %.1f dB", p)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
