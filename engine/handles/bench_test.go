package handles

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// xTree starts Xvfb and an xterm (with its shell) on it, as an app
// container holds them, and returns their PIDs (Xvfb first). The processes
// are killed by PID at cleanup.
func xTree(tb testing.TB) []int {
	tb.Helper()
	for _, bin := range []string{"Xvfb", "xterm"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("needs %s", bin)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	x := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1024x768x24", "-nolisten", "tcp")
	x.ExtraFiles = []*os.File{w}
	if err := x.Start(); err != nil {
		tb.Fatal(err)
	}
	w.Close()
	tb.Cleanup(func() { _ = x.Process.Kill(); _ = x.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var display string
	select {
	case display = <-line:
	case <-time.After(10 * time.Second):
		tb.Fatal("Xvfb did not report its display")
	}
	if display == "" {
		tb.Fatal("Xvfb failed to start")
	}
	term := exec.Command("xterm", "-e", "sh", "-c", "sleep 1000")
	term.Env = append(os.Environ(), "DISPLAY=:"+display)
	if err := term.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = term.Process.Kill(); _ = term.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", term.Process.Pid, term.Process.Pid))
		if f := strings.Fields(string(kids)); len(f) > 0 {
			pids := []int{x.Process.Pid, term.Process.Pid}
			for _, k := range f {
				n, _ := strconv.Atoi(k)
				pids = append(pids, n)
				// The shell is killed with xterm's pty; kill it by PID too.
				tb.Cleanup(func() {
					if p, err := os.FindProcess(n); err == nil {
						_ = p.Kill()
					}
				})
			}
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("xterm did not start its shell")
	return nil
}

// BenchmarkBuild measures building the manifest of Xvfb + xterm + shell:
// "nocache" hashes every present file each time (what a first build costs
// with the files in the page cache), "cached" reuses a daemon-lifetime
// HashCache (what every later build costs).
func BenchmarkBuild(b *testing.B) {
	pids := xTree(b)
	scope := Scope{PIDs: pids, InitPID: pids[0], Display: Display{Width: 1024, Height: 768, Depth: 24}}
	b.Run("nocache", func(b *testing.B) {
		var bytes int64
		for b.Loop() {
			c := NewHashCache()
			m, err := Build(context.Background(), scope, c)
			if err != nil {
				b.Fatal(err)
			}
			_, _, bytes = c.Stats()
			_ = m
		}
		b.ReportMetric(float64(bytes)/1e6, "MB-hashed/op")
	})
	b.Run("cached", func(b *testing.B) {
		c := NewHashCache()
		m, err := Build(context.Background(), scope, c)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(m.Handles)), "handles")
		for b.Loop() {
			if _, err := Build(context.Background(), scope, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBuildXTree checks the manifest of a real X app tree: Xvfb's and
// xterm's libraries are present and hashed, the X connection between
// them is a unix socket inside, the pty moves.
func TestBuildXTree(t *testing.T) {
	pids := xTree(t)
	m, err := Build(context.Background(), Scope{PIDs: pids, InitPID: pids[0]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	xconn := 0
	for _, h := range m.Handles {
		if h.Kind == KindUnix && h.Peer != nil && h.Peer.Inside {
			xconn++
		}
		if h.Class == Present && h.Kind == KindMapped && len(h.Hash) != 32 {
			t.Errorf("%s not hashed", h.Path)
		}
	}
	if xconn < 2 {
		t.Errorf("found %d unix socket ends with the peer inside, want the X connection's 2", xconn)
	}
	if m.Summary.Present < 20 || m.Summary.PresentBytes < 1<<20 {
		t.Errorf("summary %+v", m.Summary)
	}
	ptys := 0
	for _, h := range m.Handles {
		if h.Kind == KindTTY && h.Class == Moves {
			ptys++
		}
	}
	if ptys == 0 {
		t.Error("no pty among xterm's handles")
	}
}
