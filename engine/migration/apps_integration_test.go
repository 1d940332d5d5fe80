//go:build integration

package migration

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/engine"
	"github.com/handoff/handoff/stream/fb"
)

// The app matrix: real desktop apps from Debian, each driven the way a
// person uses it (xdotool typing and clicking, as the app's user, inside its
// container), with state that exists only in the app's memory. Each app is
// run, given its state, suspended and resumed, handed from one engine to
// another and brought back, and stopped; at every step its screen must be
// the one it had, typing must land where the cursor was, and nothing may be
// left behind. The apps run one after the other in one test, each timed.

// matrixApp is one app of the matrix and how a person uses it.
type matrixApp struct {
	name    string // the app's name in the engine, and the subtest's
	toolkit string
	args    []string
	width   int
	height  int
	// window is a regular expression for the title or the class of the
	// window that is ready for typing once it is mapped (xdotool search).
	window string
	// prepare, when set, runs once the window is up and settled: what a
	// person does before typing (close a dialog, scroll the page).
	prepare func(t *testing.T, e *engine.Engine, name string)
	// vim: the app is vim in a terminal, typed into with vim's commands.
	vim bool
	// quiet is how long its screen must hold still to count as settled,
	// when the default is too short for the app's own timers.
	quiet time.Duration
}

// matrixPage is the local page the browsers open: a form field fixed at
// the top right, so that it stays in view wherever the page is scrolled,
// and a long page to scroll.
func matrixPage() string {
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>Handoff matrix page</title>
<style>body{font:18px sans-serif;margin:0;background:#fff;color:#000}
textarea{position:fixed;top:10px;right:10px;width:320px;height:90px;font:18px monospace;caret-color:transparent}
p{margin:6px 12px}</style></head><body>
<textarea id="field" autofocus></textarea>
`)
	for i := 1; i <= 400; i++ {
		fmt.Fprintf(&b, "<p>Line %d of a page long enough to scroll.</p>\n", i)
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

// writePage puts the browsers' page in the app user's home and returns its
// file: URL.
func writePage(t *testing.T) string {
	t.Helper()
	u := appUser(t)
	path := filepath.Join(u.Home, "handoff-matrix.html")
	if err := os.WriteFile(path, []byte(matrixPage()), 0o644); err != nil {
		t.Fatal(err)
	}
	return "file://" + path
}

// scrollPage scrolls the page under the pointer down by wheel clicks.
func scrollPage(t *testing.T, e *engine.Engine, name string) {
	t.Helper()
	xdo(t, e, name, "mousemove", "200", "400", "click", "--repeat", "8", "--delay", "60", "5")
	settled(t, e, name)
}

// closeTipOfTheDay closes the dialog LibreOffice opens over a new
// user's first document, as its user would.
func closeTipOfTheDay(t *testing.T, e *engine.Engine, name string) {
	t.Helper()
	ctx := context.Background()
	const title = "Tip of the Day"
	xdo(t, e, name, "search", "--sync", "--onlyvisible", "--name", title)
	// LibreOffice may replace the dialog's window while it lays it out:
	// press Escape in it until it is gone.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		if _, err := e.Exec(ctx, name, "xdotool", "search", "--onlyvisible", "--name", title); err != nil {
			break // no such window any more
		}
		if time.Now().After(deadline) {
			t.Fatalf("LibreOffice's %q dialog does not close", title)
		}
		_, _ = e.Exec(ctx, name, "xdotool", "search", "--onlyvisible", "--name", title, "windowfocus", "--sync", "%1", "key", "--window", "%1", "Escape")
	}
	settled(t, e, name)
}

func matrixApps(t *testing.T) []matrixApp {
	page := writePage(t)
	return []matrixApp{
		{name: "mousepad", toolkit: "GTK 3", args: []string{"mousepad"}, window: "Mousepad"},
		{name: "geany", toolkit: "GTK 3", args: []string{"geany"}, window: "Geany"},
		{name: "gnome-text-editor", toolkit: "GTK 4", args: []string{"gnome-text-editor"}, window: "Text Editor|New Document|Untitled"},
		{name: "featherpad", toolkit: "Qt 5", args: []string{"featherpad"}, window: "FeatherPad|featherpad"},
		// FocusWriter hides the mouse pointer a while after the last
		// move: its screen is still before that.
		{name: "focuswriter", toolkit: "Qt 6", args: []string{"focuswriter"}, window: "FocusWriter|focuswriter", quiet: 5 * time.Second},
		{name: "firefox-esr", toolkit: "Gecko", args: []string{"firefox-esr", page}, window: "Handoff matrix page", prepare: scrollPage},
		{name: "chromium", toolkit: "Blink", args: []string{"chromium", page}, window: "Handoff matrix page", prepare: scrollPage},
		{name: "libreoffice", toolkit: "VCL", args: []string{"libreoffice", "--writer"}, window: "LibreOffice Writer", prepare: closeTipOfTheDay},
		{name: "vim", toolkit: "Xt (xterm)", args: []string{"xterm", "-e", "vim"}, window: "vim|VIM", vim: true},
	}
}

// TestAppMatrix runs every app of the matrix through its whole life.
func TestAppMatrix(t *testing.T) {
	var report []string
	for _, app := range matrixApps(t) {
		t.Run(app.name, func(t *testing.T) {
			start := time.Now()
			line := runMatrixApp(t, app)
			report = append(report, fmt.Sprintf("%-18s %-10s %s total %.1fs", app.name, app.toolkit, line, time.Since(start).Seconds()))
			t.Logf("%s: %s, %.1fs in all", app.name, line, time.Since(start).Seconds())
		})
	}
	t.Logf("app matrix:\n%s", strings.Join(report, "\n"))
}

// runMatrixApp is one app's life; it returns its measurements in a line.
func runMatrixApp(t *testing.T, app matrixApp) string {
	ctx := context.Background()
	a, b := newSide(t), newSide(t)
	settle := func(e *engine.Engine) *image.RGBA { return settledFor(t, e, app.name, app.quiet) }
	width, height := app.width, app.height
	if width == 0 {
		width, height = 1024, 768
	}
	if _, err := a.eng.Run(ctx, engine.Spec{User: appUser(t), Name: app.name, Args: app.args, Width: width, Height: height}); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	waitWindow(t, a.eng, app.name, app.window)
	settle(a.eng)
	ready := time.Since(started)
	if app.prepare != nil {
		app.prepare(t, a.eng, app.name)
	}

	// The state: text typed on A, then the cursor put back to its start,
	// so that what B types shows whether the cursor came along.
	// Capitalised, so that no app corrects it as a sentence's start.
	const typedOnA = "Typed on ws-a 12+34"
	blank := settle(a.eng)
	if app.vim {
		typeKeys(t, a.eng, app.name, "i"+typedOnA)
		xdo(t, a.eng, app.name, "key", "Escape", "0")
	} else {
		typeKeys(t, a.eng, app.name, typedOnA)
		xdo(t, a.eng, app.name, "key", "Home")
	}
	if bytes.Equal(blank.Pix, settle(a.eng).Pix) {
		t.Fatalf("typing into %s changed nothing on its screen", app.name)
	}

	// The manifest's verdict against CRIU's: no blocker predicted, and a
	// real dump succeeds (CRIU runs whatever the manifest said).
	m, err := a.eng.SettledHandles(ctx, app.name)
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(a.work, "verdict")
	dumpErr := a.eng.Snapshot(ctx, app.name, image)
	os.RemoveAll(image)
	if blocked := len(m.Blocking()) > 0; blocked != (dumpErr != nil) || blocked {
		t.Fatalf("the manifest predicted %v; CRIU's dump said %v", engine.BlockingError(m), dumpErr)
	}
	handlesLine := fmt.Sprintf("%d handles (%d move, %d present), %d locked shared files", len(m.Handles), m.Summary.Moves, m.Summary.Present, len(m.SharedLocks()))

	// Suspend and resume on A: the same screen.
	before := settle(a.eng)
	t0 := time.Now()
	if err := a.eng.Suspend(ctx, app.name); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	suspended := time.Since(t0)
	t0 = time.Now()
	if err := a.eng.Resume(ctx, app.name); err != nil {
		t.Fatalf("resume: %v", err)
	}
	resumed := time.Since(t0)
	sameScreen(t, a.eng, app.name, before, "after suspend and resume")

	// Hand off A → B: B shows what A showed last, and takes typing where
	// A's cursor was.
	settle(a.eng)
	there := handOff(t, a, b, app.name)
	typedOnB := "B>"
	if app.vim {
		typeKeys(t, b.eng, app.name, "i"+typedOnB)
		xdo(t, b.eng, app.name, "key", "Escape")
	} else {
		typeKeys(t, b.eng, app.name, typedOnB)
	}
	wantText(t, b.eng, app, typedOnB+typedOnA)

	// Bring it back B → A, and type at the end.
	settle(b.eng)
	back := handOff(t, b, a, app.name)
	if app.vim {
		typeKeys(t, a.eng, app.name, "A and back")
		xdo(t, a.eng, app.name, "key", "Escape")
	} else {
		xdo(t, a.eng, app.name, "key", "ctrl+End")
		typeKeys(t, a.eng, app.name, " and back")
	}
	wantText(t, a.eng, app, typedOnB+typedOnA+" and back")

	if err := a.eng.Stop(ctx, app.name); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, a, b, app.name)
	return fmt.Sprintf("ready %.1fs, suspend %.2fs, resume %.2fs, A→B downtime %.2fs %s, B→A downtime %.2fs %s; %s",
		ready.Seconds(), suspended.Seconds(), resumed.Seconds(),
		there.Downtime.Seconds(), mib(there.Bytes), back.Downtime.Seconds(), mib(back.Bytes), handlesLine)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// handOff sends the app from one side to the other and checks that the
// destination shows the source's last screen.
func handOff(t *testing.T, from, to side, name string) Result {
	t.Helper()
	rv := &Receiver{Engine: to.eng, WorkDir: to.work}
	s := &Sender{Engine: from.eng, From: "from", WorkDir: from.work}
	// The source's screen while it is frozen, its X server too: taken
	// once, it is final, and taking it adds to the downtime measured.
	var last *image.RGBA
	var lastErr error
	res, err := s.Send(context.Background(), name, serve(t, rv, nil), func(p Progress) {
		if p.Phase == PhaseFinal && last == nil && lastErr == nil {
			last, lastErr = screenshotOf(from.eng, name)
		}
	})
	if err != nil {
		t.Fatalf("hand off %s: %v", name, err)
	}
	if last == nil {
		t.Fatalf("no screen of the frozen source: %v", lastErr)
	}
	sameScreen(t, to.eng, name, last, "after the handoff")
	return res
}

// xdo runs xdotool in the app's container, as its user.
func xdo(t *testing.T, e *engine.Engine, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := e.Exec(ctx, name, append([]string{"xdotool"}, args...)...); err != nil {
		t.Fatalf("xdotool %v in %s: %v %s", args, name, err, out)
	}
}

// typeKeys types text with the pointer over the app's window (with no window
// manager, the keyboard goes to the window under the pointer).
func typeKeys(t *testing.T, e *engine.Engine, name, text string) {
	t.Helper()
	xdo(t, e, name, "mousemove", "200", "300", "type", "--delay", "40", text)
}

// waitWindow waits until a window whose title or class matches re is
// mapped.
func waitWindow(t *testing.T, e *engine.Engine, name, re string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if out, err := e.Exec(ctx, name, "xdotool", "search", "--sync", "--onlyvisible", "--name", "--class", re); err != nil {
		shot := saveShot(t, e, name, "no-window")
		t.Fatalf("%s showed no window titled %q: %v %s (screen in %s)%s", name, re, err, out, shot, appLog(e, name))
	}
}

// settled returns the app's screen once it stopped changing: nothing but
// a blinking caret changed for quietFor. Apps finish some drawing a while
// after the input that caused it (a word count updated when idle, an
// overlay scrollbar that fades out): a screen taken before that is not
// the app's state.
func settled(t *testing.T, e *engine.Engine, name string) *image.RGBA {
	t.Helper()
	return settledFor(t, e, name, 0)
}

// settledFor is settled with a quiet time of the app's own (0: the default).
func settledFor(t *testing.T, e *engine.Engine, name string, quietFor time.Duration) *image.RGBA {
	t.Helper()
	if quietFor == 0 {
		quietFor = 1500 * time.Millisecond
	}
	var last *image.RGBA
	quietSince := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		img, err := screenshotOf(e, name)
		if err != nil {
			t.Fatal(err)
		}
		if last != nil {
			if n, where := fb.Diff(last, img); n > 0 && !caretSized(where) {
				quietSince = time.Now()
			}
		}
		last = img
		if time.Since(quietSince) >= quietFor {
			return img
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the screen of %s never settled", name)
	return nil
}

// caretSized reports whether a change fits in a text caret: a few pixels
// wide, at most a tall line high.
func caretSized(r image.Rectangle) bool { return r.Dx() <= 4 && r.Dy() <= 64 }

// sameScreen waits until the app shows want again. A caret that blinks is
// not state: its phase on the destination drifts from the source's (GTK 4
// even fades it, so a frame can catch it half drawn), so the screen must
// match exactly at some moment within a few blinks, or differ only in one
// caret-sized spot.
func sameScreen(t *testing.T, e *engine.Engine, name string, want *image.RGBA, when string) {
	t.Helper()
	var n int
	var where image.Rectangle
	caretOnly := false
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		img, err := screenshotOf(e, name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(img.Pix, want.Pix) {
			return
		}
		n, where = fb.Diff(want, img)
		caretOnly = caretOnly || caretSized(where)
		time.Sleep(50 * time.Millisecond)
	}
	if caretOnly {
		t.Logf("%s: the screen %s differs from the one before only in a caret (%d pixels in %v at last)", name, when, n, where)
		return
	}
	dir := saveShot(t, e, name, "got")
	writePNG(filepath.Join(dir, "want.png"), want)
	t.Fatalf("%s: the screen %s differs from the one before in %d pixels in %v (both in %s)", name, when, n, where, dir)
}

// wantText checks what the app holds: for vim, its buffer written to a
// file; for the others, the clipboard after select-all and copy.
func wantText(t *testing.T, e *engine.Engine, app matrixApp, want string) {
	t.Helper()
	ctx := context.Background()
	read := func() (string, error) {
		out, err := e.Exec(ctx, app.name, "xclip", "-o", "-selection", "clipboard")
		return string(out), err
	}
	if app.vim {
		typeKeys(t, e, app.name, ":w! /tmp/buffer.txt\n")
		read = func() (string, error) {
			out, err := e.Exec(ctx, app.name, "cat", "/tmp/buffer.txt")
			return strings.TrimSuffix(string(out), "\n"), err
		}
	} else {
		xdo(t, e, app.name, "key", "ctrl+a", "ctrl+c")
	}
	var got string
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got, err = read()
		if err == nil && got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s holds %q (%v), want %q (screen in %s)", app.name, got, err, want, saveShot(t, e, app.name, "text"))
}

// appLog is the end of what the app wrote to its stdout and stderr.
func appLog(e *engine.Engine, name string) string {
	data, _ := os.ReadFile(filepath.Join(e.StateDir(), "apps", name, "upper", "tmp", ".handoff", "app.log"))
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return "\napp log:\n" + string(data)
}

// saveShot keeps the app's screen in a directory that outlives the test,
// for looking at a failure, and returns the directory.
func saveShot(t *testing.T, e *engine.Engine, name, what string) string {
	dir, err := os.MkdirTemp("", "handoff-matrix-"+name+"-")
	if err != nil {
		return ""
	}
	if img, err := screenshotOf(e, name); err == nil {
		writePNG(filepath.Join(dir, what+".png"), img)
	}
	return dir
}

func writePNG(path string, img image.Image) {
	var buf bytes.Buffer
	if png.Encode(&buf, img) == nil {
		_ = os.WriteFile(path, buf.Bytes(), 0o644)
	}
}

// assertNothingLeft checks that neither side keeps anything of the app:
// mounts (its root, its network namespace, its sysfs), cgroups, processes
// of its user, staging files.
func assertNothingLeft(t *testing.T, a, b side, name string) {
	t.Helper()
	for _, s := range []side{a, b} {
		state := filepath.Join(filepath.Dir(s.work), "state")
		if m := mountsUnder(state); m != 0 {
			t.Errorf("%d mounts left under %s", m, state)
		}
		if ents, _ := os.ReadDir(s.work); len(ents) != 0 {
			t.Errorf("%s keeps %d staging entries", s.work, len(ents))
		}
		if apps, _ := os.ReadDir(filepath.Join(state, "apps")); len(apps) != 0 {
			t.Errorf("%s keeps %d app directories", state, len(apps))
		}
	}
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*/handoff/*/" + name); len(cg) != 0 {
		t.Errorf("cgroups left: %v", cg)
	}
	if cg, _ := filepath.Glob("/sys/fs/cgroup/handoff/*/" + name); len(cg) != 0 {
		t.Errorf("cgroups left: %v", cg)
	}
	if pids := processesOf(appUser(t).UID); len(pids) != 0 {
		t.Errorf("processes of the app's user left: %v", pids)
	}
}

// processesOf lists the host PIDs of processes running as uid.
func processesOf(uid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == strconv.Itoa(uid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
