//go:build integration

package ui

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/tone"
)

// startDesktopSound starts a PulseAudio server with a null sink, as a
// desktop's sound server, points this process's clients at it and stops it
// by PID when the test ends. It returns the server string.
func startDesktopSound(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	server := "unix:" + filepath.Join(dir, "native")
	cmd := exec.Command("pulseaudio", "-n", "--daemonize=no", "--system=no", "--use-pid-file=no",
		"--exit-idle-time=-1", "--realtime=no", "--high-priority=no", "--log-target=stderr", "--log-level=error",
		"-L", "module-null-sink sink_name=desk rate=48000 channels=2",
		"-L", "module-native-protocol-unix socket="+filepath.Join(dir, "native")+" auth-anonymous=1 auth-cookie-enabled=0")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pulseaudio (make deps installs it): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("pactl", "--server", server, "info").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("pulseaudio did not answer within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Setenv("PULSE_SERVER", server)
	return server
}

// record records what the desktop's sink plays for d.
func record(t *testing.T, server string, d time.Duration) []int16 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, "parec", "--server", server, "-d", "desk.monitor", "--raw",
		"--rate=48000", "--channels=2", "--format=s16le", "--latency-msec=20")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(out)
	cmd.Wait()
	pcm := make([]int16, len(data)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
	}
	return pcm
}

// feed gives the speaker a 1 kHz tone at half scale from viewer from, in
// real time, 20 ms at a time, until ctx ends.
func feed(ctx context.Context, s *speaker, from string) {
	frame := make([]int16, 960*2)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		for i := 0; i < 960; i++ {
			v := int16(0.5 * 32767 * math.Sin(2*math.Pi*1000*float64(n*960+i)/48000))
			frame[2*i], frame[2*i+1] = v, v
		}
		s.play(from, frame)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// TestSpeakerPlaysOneViewer: the viewer whose turn it is is heard through
// the desktop's sound server at its frequency and level, another is not,
// and once the sound stops the stream pauses on the desktop's server.
func TestSpeakerPlaysOneViewer(t *testing.T) {
	server := startDesktopSound(t)
	s := newSpeaker(slog.Default())
	defer s.Close()
	s.turn("a")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feed(ctx, s, "b") // not its turn
	if pcm := record(t, server, 1500*time.Millisecond); len(pcm) > 0 {
		if m, err := tone.Analyze(pcm, 2, 0, 48000); err == nil {
			t.Fatalf("a viewer whose turn it is not was heard: %+v", m)
		}
	}

	go feed(ctx, s, "a")
	time.Sleep(500 * time.Millisecond)
	pcm := record(t, server, 1500*time.Millisecond)
	if len(pcm) < 48000*2 {
		t.Fatalf("recorded %d ms from the desktop's sink, want 1.5 s", len(pcm)/96)
	}
	m, err := tone.Analyze(pcm[len(pcm)-48000*2:], 2, 0, 48000)
	if err != nil || math.Abs(m.Hz-1000) > 2 || math.Abs(m.DBFS-(-9.03)) > 1 || m.Purity < 0.95 {
		t.Fatalf("the desktop played %+v (%v), want 1 kHz at -9 dBFS", m, err)
	}
	t.Logf("the desktop played %.1f Hz at %.1f dBFS", m.Hz, m.DBFS)

	// Silent: after soundIdle the stream is corked and the sink may sleep.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("pactl", "--server", server, "list", "sink-inputs").Output()
		if strings.Contains(string(out), "Corked: yes") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the playback stream still runs 5 s after the sound stopped:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
