//go:build integration

package stream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// xclipOut reads a selection of the display as xclip, a real X client,
// pastes it.
func xclipOut(d display, selection, target string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args := []string{"-o", "-selection", selection}
	if target != "" {
		args = append(args, "-t", target)
	}
	cmd := exec.CommandContext(ctx, "xclip", args...)
	cmd.Env = append(os.Environ(), "DISPLAY=:"+d.num)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: errb.Bytes()}
	}
	return out.String(), nil
}

// xclipCopy copies text on the display as an app would: xclip owns the
// CLIPBOARD in the foreground (-quiet) until another client takes it, which
// ends it. The returned channel closes when it exits; it is killed, by
// PID, when the test ends.
func xclipCopy(t *testing.T, d display, text string) <-chan struct{} {
	t.Helper()
	cmd := exec.Command("xclip", "-quiet", "-selection", "clipboard", "-i")
	cmd.Env = append(os.Environ(), "DISPLAY=:"+d.num)
	cmd.Stdin = strings.NewReader(text)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start xclip (make deps installs it): %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	return exited
}

func randomWord(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// connectedViewer streams a display to a viewer over loopback and waits
// until input can be sent.
func connectedViewer(t *testing.T, d display) (*Host, *Viewer) {
	t.Helper()
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket)})
	t.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); v.Close(); <-done })
	waitFor(t, "the input channel", 15*time.Second, func() bool {
		return v.Send(Input{Kind: InputPointer, X: 1, Y: 1}) == nil
	})
	return host, v
}

// TestClipboardViewerToApp: text the viewer sends is what X clients on the
// app's display paste, from CLIPBOARD and PRIMARY, in every text target,
// and also when it is larger than one X request can carry.
func TestClipboardViewerToApp(t *testing.T) {
	d := startDisplay(t, "640x480x24")
	host, v := connectedViewer(t, d)

	text := "héllo-" + randomWord(t)
	if err := v.Send(Input{Kind: InputClipboard, Text: text}); err != nil {
		t.Fatal(err)
	}
	var got string
	var err error
	waitFor(t, "xclip to paste the viewer's clipboard", 10*time.Second, func() bool {
		got, err = xclipOut(d, "clipboard", "")
		return err == nil && got == text
	})
	if got, err := xclipOut(d, "primary", ""); err != nil || got != text {
		t.Errorf("PRIMARY pastes %q, %v; want %q", got, err, text)
	}
	if got, err := xclipOut(d, "clipboard", "STRING"); err != nil || got != string(latin1(text)) {
		t.Errorf("as STRING: %q, %v; want Latin-1 %q", got, err, latin1(text))
	}
	targets, err := xclipOut(d, "clipboard", "TARGETS")
	if err != nil || !strings.Contains(targets, "UTF8_STRING") {
		t.Errorf("TARGETS = %q, %v; want UTF8_STRING among them", targets, err)
	}

	// 600 KB: more than one X request (256 KB on Xvfb), less than the limit.
	big := strings.Repeat("ligne é "+randomWord(t)+"\n", 600_000/22)
	if err := v.Send(Input{Kind: InputClipboard, Text: big}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "xclip to paste 600 KB", 15*time.Second, func() bool {
		got, err = xclipOut(d, "clipboard", "")
		return err == nil && got == big
	})

	// Closing the host (as before a checkpoint) closes its connection to
	// the display: the selections it owned go with it.
	// The server notices a closed connection on its own time: allow it one.
	host.Close()
	waitFor(t, "the host's selections to go with its connection", 3*time.Second, func() bool {
		return selectionOwner(t, d, "CLIPBOARD") == xproto.WindowNone
	})
}

// selectionOwner asks the display who owns a selection.
func selectionOwner(t *testing.T, d display, name string) xproto.Window {
	t.Helper()
	nc, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := xgb.NewConnNet(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	atom, err := xproto.InternAtom(conn, false, uint16(len(name)), name).Reply()
	if err != nil {
		t.Fatal(err)
	}
	r, err := xproto.GetSelectionOwner(conn, atom.Atom).Reply()
	if err != nil {
		t.Fatal(err)
	}
	return r.Owner
}

// TestClipboardAppToViewer: what an app on the display copies reaches the
// viewer; offering the same text back leaves the app owning its copy, and
// new text from the viewer takes the clipboard over.
func TestClipboardAppToViewer(t *testing.T) {
	d := startDisplay(t, "640x480x24")
	_, v := connectedViewer(t, d)
	copied := make(chan string, 8)
	v.OnClipboard(func(s string) { copied <- s })

	text := "cöpied-" + randomWord(t) + "\nsecond line"
	owner := xclipCopy(t, d, text)
	select {
	case got := <-copied:
		if got != text {
			t.Fatalf("viewer got %q, want %q", got, text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the viewer did not hear the app's copy within 10 s")
	}

	// The viewer's clipboard now holds the app's text; sending it back (as
	// the UI does when its window gets the focus) must not steal it.
	if err := v.Send(Input{Kind: InputClipboard, Text: text}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-owner:
		t.Fatal("the app lost its clipboard to its own text coming back")
	case <-time.After(time.Second):
	}

	mine := "from-viewer-" + randomWord(t)
	if err := v.Send(Input{Kind: InputClipboard, Text: mine}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-owner:
	case <-time.After(10 * time.Second):
		t.Fatal("the app kept the clipboard after the viewer sent new text")
	}
	if got, err := xclipOut(d, "clipboard", ""); err != nil || got != mine {
		t.Errorf("clipboard pastes %q, %v; want %q", got, err, mine)
	}
	select {
	case got := <-copied:
		t.Errorf("the viewer's own text came back to it as the app's copy: %q", got)
	default:
	}

	// A large copy (700 KB) arrives whole.
	big := strings.Repeat("grand é "+randomWord(t)+"\n", 700_000/22)
	xclipCopy(t, d, big)
	select {
	case got := <-copied:
		if got != big {
			t.Fatalf("viewer got %d bytes, want the %d copied", len(got), len(big))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the viewer did not hear the app's 700 KB copy within 15 s")
	}

	// Exactly the limit, 1 MiB: xclip's pieces are 1 byte smaller on Xvfb,
	// so this one comes incrementally (INCR), in two pieces and an end.
	word := randomWord(t)
	limit := word + strings.Repeat("y", maxClipboard-len(word))
	xclipCopy(t, d, limit)
	select {
	case got := <-copied:
		if got != limit {
			t.Fatalf("viewer got %d bytes, want the %d copied incrementally", len(got), len(limit))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the viewer did not hear the app's 1 MiB (INCR) copy within 15 s")
	}

	// A copy over the limit (5 MB, which xclip sends incrementally, INCR)
	// is not sent, and does not stop the next copy from being sent.
	xclipCopy(t, d, strings.Repeat("x", 5<<20))
	time.Sleep(2 * time.Second) // the host asks for it and gives up
	small := "after-" + randomWord(t)
	xclipCopy(t, d, small)
	select {
	case got := <-copied:
		if got != small {
			t.Fatalf("viewer got %.40q (%d bytes), want %q: a copy over the limit was sent", got, len(got), small)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the viewer did not hear the copy that followed one over the limit")
	}
}
