//go:build integration

package app

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/internal/testutil"
	"github.com/handoff/handoff/stream/fb"
)

// TestBrowserBetweenWorkstations is one app of the matrix
// (engine/migration/apps_integration_test.go) through two whole daemons in
// network namespaces: Firefox with a local page scrolled down and text
// typed into a form field is sent from ws-a to ws-b over the peer channel,
// shows the same page there and takes typing where its cursor was, and
// comes back. Firefox holds locks on its profile in the user's home, which
// both workstations share here: ws-a's copy ends before ws-b restores.
func TestBrowserBetweenWorkstations(t *testing.T) {
	net := testnet.New(t, "a", "b")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	b := startWorkstation(t, net.Host("b"), "ws-b")
	defer a.stop(t)
	defer b.stop(t)
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

	user := testutil.AppUser(t)
	u, err := engine.LookupUser(user, 0)
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(u.Home, "handoff-workstations.html")
	var html strings.Builder
	html.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>Handoff workstations page</title>
<style>body{font:18px sans-serif;margin:0} textarea{position:fixed;top:10px;right:10px;width:320px;height:90px;font:18px monospace;caret-color:transparent}</style>
</head><body><textarea autofocus></textarea>`)
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&html, "<p>Line %d of a page long enough to scroll.</p>\n", i)
	}
	if err := os.WriteFile(page, []byte(html.String()+"</body></html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.Run(ctx, RunRequest{As: user, Name: "browser", Args: []string{"firefox-esr", "file://" + page}, Width: 1024, Height: 768}); err != nil {
		t.Fatal(err)
	}
	inApp(t, a, "browser", "timeout", "90", "xdotool", "search", "--sync", "--onlyvisible", "--name", "Handoff workstations page")
	settledShot(t, a, "browser")
	inApp(t, a, "browser", "xdotool", "mousemove", "200", "400", "click", "--repeat", "8", "--delay", "60", "5")
	inApp(t, a, "browser", "xdotool", "type", "--delay", "40", "Typed on ws-a")
	inApp(t, a, "browser", "xdotool", "key", "Home")

	before := settledShot(t, a, "browser")
	res, err := a.client.Send(ctx, "browser", "ws-b")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("firefox ws-a → ws-b: downtime %v, %d bytes, phases %v", res.Downtime, res.Bytes, res.Phases)
	sameShot(t, b, "browser", before)
	inApp(t, b, "browser", "xdotool", "mousemove", "200", "400", "type", "--delay", "40", "B>")
	fieldHolds(t, b, "browser", "B>Typed on ws-a")

	if _, err := a.client.BringBack(ctx, "browser"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.App(ctx, "browser"); !IsNotFound(err) {
		t.Fatalf("ws-b still has the app after bring-back: %v", err)
	}
	inApp(t, a, "browser", "xdotool", "mousemove", "200", "400", "key", "ctrl+End", "type", "--delay", "40", " and back")
	fieldHolds(t, a, "browser", "B>Typed on ws-a and back")
	if err := a.client.Stop(ctx, "browser"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*workstation{a, b} {
		if m := mountsIn(filepath.Join(w.dir, "state")); m != 0 {
			t.Errorf("%s keeps %d mounts", w.name, m)
		}
	}
}

// inApp runs a command in the app's container on w (its namespaces, with
// its display) and returns its output.
func inApp(t *testing.T, w *workstation, app string, args ...string) string {
	t.Helper()
	info, err := w.client.App(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(info.PID), "-m", "-n", "-p", "env", "DISPLAY=:1"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v in %s on %s: %v %s", args, app, w.name, err, out)
	}
	return string(out)
}

// fieldHolds selects all in the focused field, copies it and reads the
// clipboard until it says want.
func fieldHolds(t *testing.T, w *workstation, app, want string) {
	t.Helper()
	inApp(t, w, app, "xdotool", "key", "ctrl+a", "ctrl+c")
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = inApp(t, w, app, "xclip", "-o", "-selection", "clipboard"); got == want {
			return
		}
	}
	t.Fatalf("the field on %s holds %q, want %q", w.name, got, want)
}

// sameShot waits until w shows want again, exactly or but for a caret.
func sameShot(t *testing.T, w *workstation, app string, want []byte) {
	t.Helper()
	wantImg := decodePNG(t, want)
	var n int
	var where image.Rectangle
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var shot bytes.Buffer
		if err := w.client.Screenshot(context.Background(), app, &shot); err != nil {
			t.Fatal(err)
		}
		if n, where = fb.Diff(wantImg, decodePNG(t, shot.Bytes())); n == 0 || (where.Dx() <= 4 && where.Dy() <= 64) {
			return
		}
	}
	t.Fatalf("%s does not show the page as ws-a did: %d pixels differ in %v", w.name, n, where)
}

// mountsIn counts the host's mounts below dir.
func mountsIn(dir string) int {
	data, _ := os.ReadFile("/proc/1/mountinfo")
	return strings.Count(string(data), " "+dir+"/")
}
