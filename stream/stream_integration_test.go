//go:build integration

package stream

import (
	"bufio"
	"context"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff/handoff/stream/fb"
)

// display is a private Xvfb with its framebuffer in a file, as an app's
// container has.
type display struct {
	num         string
	framebuffer string
	socket      string
}

// startDisplay starts Xvfb on a free display number, with any extra
// arguments, and stops it, by PID, when the test ends.
func startDisplay(t testing.TB, size string, extra ...string) display {
	t.Helper()
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("Xvfb", append([]string{"-displayfd", "3", "-screen", "0", size, "-fbdir", dir, "-nolisten", "tcp", "-noreset"}, extra...)...)
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Xvfb (make deps installs it): %v", err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if err != nil {
		t.Fatalf("Xvfb did not say its display: %v", err)
	}
	num := strings.TrimSpace(line)
	return display{num: num, framebuffer: filepath.Join(dir, "Xvfb_screen0"), socket: "/tmp/.X11-unix/X" + num}
}

// startApp runs an X client on the display and ends it, by PID, when the test ends.
func startApp(t *testing.T, d display, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "DISPLAY=:"+d.num)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
}

// waitXterm waits until an xterm's window is mapped on d and the shell it
// runs (started with `sh -c 'touch shell-started; exec sh'` in dir) is up.
func waitXterm(t *testing.T, d display, dir string) {
	t.Helper()
	waitFor(t, "xterm's window to be mapped", 30*time.Second, func() bool {
		cmd := exec.Command("xdotool", "search", "--onlyvisible", "--class", "XTerm")
		cmd.Env = append(os.Environ(), "DISPLAY=:"+d.num)
		out, err := cmd.Output()
		return err == nil && len(strings.TrimSpace(string(out))) > 0
	})
	waitFor(t, "the shell in xterm to start", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "shell-started"))
		return err == nil
	})
}

// frames collects what a viewer decodes.
type frames struct {
	mu   sync.Mutex
	last *image.RGBA
	n    int
	got  chan struct{}
}

func newFrames(v *Viewer) *frames {
	f := &frames{got: make(chan struct{}, 1)}
	v.OnFrame(func(img *image.RGBA) {
		f.mu.Lock()
		if f.last == nil || f.last.Rect != img.Rect {
			f.last = image.NewRGBA(img.Rect)
		}
		copy(f.last.Pix, img.Pix)
		f.n++
		f.mu.Unlock()
		select {
		case f.got <- struct{}{}:
		default:
		}
	})
	return f
}

func (f *frames) snapshot() (*image.RGBA, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil {
		return nil, f.n
	}
	c := image.NewRGBA(f.last.Rect)
	copy(c.Pix, f.last.Pix)
	return c, f.n
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLoopbackStream streams a real xterm over WebRTC on this machine:
// the decoded picture matches the framebuffer, typed text reaches the
// shell, and a still screen sends no frames.
func TestLoopbackStream(t *testing.T) {
	d := startDisplay(t, "1024x768x24")
	work := t.TempDir()
	startApp(t, d, work, "xterm", "-geometry", "80x24+0+0", "-e", "sh", "-c", "touch shell-started; exec sh")
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket)})
	t.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	got := newFrames(v)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	defer v.Close()

	waitFor(t, "a first frame", 15*time.Second, func() bool { _, n := got.snapshot(); return n > 0 })
	// A first frame may be the bare root window: keys typed before xterm's
	// window is mapped, or before its shell runs, are lost.
	waitXterm(t, d, work)
	// Typing goes through XTEST into the shell in xterm.
	waitFor(t, "the input channel", 5*time.Second, func() bool {
		return v.Send(Input{Kind: InputPointer, X: 100, Y: 100}) == nil
	})
	if err := v.Send(Input{Kind: InputText, Text: "echo Typed-Through-WebRTC > proof.txt\n"}); err != nil {
		t.Fatal(err)
	}
	proof := filepath.Join(work, "proof.txt")
	waitFor(t, "the typed command to run", 10*time.Second, func() bool {
		b, _ := os.ReadFile(proof)
		return strings.TrimSpace(string(b)) == "Typed-Through-WebRTC"
	})

	// A still screen: the picture converges on the framebuffer and then
	// nothing more is sent.
	time.Sleep(time.Second)
	want, err := fb.SnapshotFile(d.framebuffer)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := got.snapshot()
	if img.Rect != want.Rect {
		t.Fatalf("decoded %v, framebuffer %v", img.Rect, want.Rect)
	}
	if p := fb.PSNR(want, img); p < 35 {
		t.Errorf("decoded frame PSNR %.1f dB against the framebuffer, want ≥ 35", p)
	} else {
		t.Logf("PSNR %.1f dB", p)
	}
	before := host.Frames.Load()
	time.Sleep(5 * time.Second)
	if n := host.Frames.Load() - before; n != 0 {
		t.Errorf("%d frames encoded in 5 s of a still screen, want 0", n)
	}
}
