//go:build integration

package stream

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/tone"
)

// soundServer is a PulseAudio server with the null sink an app's
// container has (see engine/sound.go), on a socket of its own.
type soundServer struct{ socket string }

// startSoundServer starts one, and stops it by PID when the test ends.
func startSoundServer(t testing.TB) soundServer {
	t.Helper()
	dir := t.TempDir()
	socket := filepath.Join(dir, "native")
	cmd := exec.Command("pulseaudio", "-n", "--daemonize=no", "--system=no", "--use-pid-file=no",
		"--exit-idle-time=-1", "--disallow-exit", "--disallow-module-loading", "--realtime=no", "--high-priority=no",
		"--log-target=stderr", "--log-level=error",
		"-L", "module-null-sink sink_name="+soundSink+" rate=48000 channels=2",
		"-L", "module-native-protocol-unix socket="+socket+" auth-anonymous=1 auth-cookie-enabled=0",
		"-L", "module-suspend-on-idle timeout=1")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pulseaudio (make deps installs it): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	s := soundServer{socket: socket}
	deadline := time.Now().Add(10 * time.Second)
	for s.pactl("info") != nil {
		if time.Now().After(deadline) {
			t.Fatal("pulseaudio did not answer within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s soundServer) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", s.socket)
}

func (s soundServer) pactl(args ...string) error {
	return exec.Command("pactl", append([]string{"--server", "unix:" + s.socket}, args...)...).Run()
}

// recordingStreams counts the server's record streams that record (the
// host's monitor, when uncorked).
func (s soundServer) recordingStreams(t testing.TB) int {
	out, err := exec.Command("pactl", "--server", "unix:"+s.socket, "list", "source-outputs").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "Corked: no")
}

// sinkState is the state of the app's sink: SUSPENDED when nothing plays.
func (s soundServer) sinkState(t testing.TB) string {
	out, err := exec.Command("pactl", "--server", "unix:"+s.socket, "list", "short", "sinks").Output()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) > 0 {
		return f[len(f)-1]
	}
	return ""
}

// play plays the output of a shell command (raw 48 kHz stereo s16le) into
// the server until stopped; the process group is killed by PID.
func (s soundServer) play(t testing.TB, source string) (stop func()) {
	t.Helper()
	cmd := exec.Command("sh", "-c", source+" | pacat --raw --rate=48000 --channels=2 --format=s16le --latency-msec=200 --server unix:"+s.socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

// sineSource is a shell command writing a sine of hz at amplitude (of full
// scale) for an hour.
func sineSource(hz, amplitude float64) string {
	return fmt.Sprintf("sox -n -t raw -r 48000 -c 2 -e signed -b 16 - synth 3600 sine %g vol %g", hz, amplitude)
}

// heard collects what a viewer decodes of the app's sound.
type heard struct {
	mu  sync.Mutex
	pcm []int16
}

func listenTo(v *Viewer) *heard {
	h := &heard{}
	v.OnAudio(func(pcm []int16) {
		h.mu.Lock()
		h.pcm = append(h.pcm, pcm...)
		h.mu.Unlock()
	})
	return h
}

// take returns what was heard since the last take.
func (h *heard) take() []int16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pcm
	h.pcm = nil
	return p
}

// checkTone fails unless pcm, in both channels, is a pure tone of hz at
// dbfs: in most of its 100 ms windows, so that the stutter of a loaded
// machine (an app's player that underruns) or the blip of a restore does
// not fail it, while anything else than the tone does.
func checkTone(t testing.TB, what string, pcm []int16, hz, dbfs float64) {
	t.Helper()
	if len(pcm) < 48000*2 {
		t.Fatalf("%s: %d ms of sound, want at least 1 s", what, len(pcm)/96)
	}
	for ch := 0; ch < 2; ch++ {
		ms := tone.Windows(pcm, 2, ch, 48000, 4800)
		good := 0
		var bad tone.Measure
		for _, m := range ms {
			if math.Abs(m.Hz-hz) < 2 && math.Abs(m.DBFS-dbfs) < 1.5 && m.Purity > 0.95 {
				good++
			} else {
				bad = m
			}
		}
		if good*4 < len(ms)*3 {
			t.Fatalf("%s, channel %d: %d of %d windows of 100 ms hold %g Hz at %.1f dBFS (one that does not: %.1f Hz at %.1f dBFS, purity %.3f)",
				what, ch, good, len(ms), hz, dbfs, bad.Hz, bad.DBFS, bad.Purity)
		}
		t.Logf("%s, channel %d: %d of %d windows of 100 ms hold %g Hz at %.1f dBFS", what, ch, good, len(ms), hz, dbfs)
	}
}

// TestSoundStream: a tone played into the app's sound server reaches the
// viewer at its frequency and level; nothing is recorded, encoded or sent
// while nothing plays or what plays is silence.
func TestSoundStream(t *testing.T) {
	d := startDisplay(t, "320x240x24")
	snd := startSoundServer(t)
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket), Sound: snd.dial})
	t.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	got := newFrames(v)
	ears := listenTo(v)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	defer v.Close()
	waitFor(t, "a first frame", 15*time.Second, func() bool { _, n := got.snapshot(); return n > 0 })

	// Silent: nothing recorded, the sink asleep, nothing sent.
	time.Sleep(2 * time.Second)
	if n := snd.recordingStreams(t); n != 0 {
		t.Errorf("%d record streams record on a silent app's sound server, want 0", n)
	}
	if st := snd.sinkState(t); st != "SUSPENDED" {
		t.Errorf("the silent app's sink is %s, want SUSPENDED", st)
	}
	if n := host.AudioPackets.Load(); n != 0 {
		t.Errorf("%d sound packets sent while the app played nothing, want 0", n)
	}

	// A tone at a quarter of full scale: -15 dBFS RMS. The viewer hears
	// all of it: nothing is lost while the recording starts.
	start := time.Now()
	stop := snd.play(t, sineSource(440, 0.25))
	var tonePCM []int16
	waitFor(t, "3 s of the tone", 15*time.Second, func() bool {
		tonePCM = append(tonePCM, ears.take()...)
		return len(tonePCM) >= 48000*2*3
	})
	stop()
	played := time.Since(start)
	checkTone(t, "the tone", tonePCM, 440, -15.05)
	time.Sleep(time.Second)
	tonePCM = append(tonePCM, ears.take()...)
	if heard := time.Duration(len(tonePCM)/2) * time.Second / 48000; heard < played-time.Second {
		t.Errorf("heard %v of a tone that played for %v: its start was lost", heard, played)
	}

	// Stopped: recording ends after its linger, and nothing more is sent.
	stop()
	waitFor(t, "the record stream to end", 5*time.Second, func() bool { return snd.recordingStreams(t) == 0 })
	before := host.AudioPackets.Load()
	time.Sleep(2 * time.Second)
	if n := host.AudioPackets.Load() - before; n != 0 {
		t.Errorf("%d sound packets sent in 2 s after the app stopped playing, want 0", n)
	}

	// A stream of digital silence is recorded but neither encoded nor sent.
	snd.play(t, "cat /dev/zero")
	waitFor(t, "the silent stream to be recorded", 5*time.Second, func() bool { return snd.recordingStreams(t) == 1 })
	before = host.AudioPackets.Load()
	time.Sleep(2 * time.Second)
	if n := host.AudioPackets.Load() - before; n != 0 {
		t.Errorf("%d sound packets sent in 2 s of digital silence, want 0", n)
	}
}

// TestSoundServerLate: a viewer that connected before the app's sound
// server listened (an app still starting, or a server that restarted)
// hears the app once it does.
func TestSoundServerLate(t *testing.T) {
	d := startDisplay(t, "320x240x24")
	var (
		mu  sync.Mutex
		snd soundServer
	)
	dial := func(ctx context.Context) (net.Conn, error) {
		mu.Lock()
		s := snd
		mu.Unlock()
		if s.socket == "" {
			return nil, fmt.Errorf("no sound server yet")
		}
		return s.dial(ctx)
	}
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket), Sound: dial})
	t.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	got := newFrames(v)
	ears := listenTo(v)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	defer v.Close()
	waitFor(t, "a first frame", 15*time.Second, func() bool { _, n := got.snapshot(); return n > 0 })
	time.Sleep(time.Second)
	s := startSoundServer(t)
	mu.Lock()
	snd = s
	mu.Unlock()
	s.play(t, sineSource(440, 0.25))
	var pcm []int16
	waitFor(t, "1 s of the tone", 20*time.Second, func() bool {
		pcm = append(pcm, ears.take()...)
		return len(pcm) >= 48000*2
	})
	checkTone(t, "the tone of a late server", pcm, 440, -15.05)
}

// processCPU is the user and system CPU time process pid used so far.
func processCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// BenchmarkSoundStream reports what an app's sound costs: the CPU share of
// this process (host and viewer: recording, Opus, WebRTC, decoding) and of
// the sound server, and the track's bytes a second, while a tone plays and
// while the app is silent.
func BenchmarkSoundStream(b *testing.B) {
	d := startDisplay(b, "320x240x24")
	snd := startSoundServer(b)
	server, err := exec.Command("pgrep", "-n", "-f", "socket="+snd.socket).Output()
	if err != nil {
		b.Fatal(err)
	}
	var serverPID int
	fmt.Sscan(string(server), &serverPID)
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, d.socket), Sound: snd.dial})
	b.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	got := newFrames(v)
	ears := listenTo(v)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	defer v.Close()
	deadline := time.Now().Add(15 * time.Second)
	for _, n := got.snapshot(); n == 0; _, n = got.snapshot() {
		if time.Now().After(deadline) {
			b.Fatal("no first frame")
		}
		time.Sleep(50 * time.Millisecond)
	}
	measure := func(span time.Duration) (self, srv float64, bytesPerSec float64) {
		s0, v0, by0, t0 := cpuTime(), processCPU(b, serverPID), host.AudioBytes.Load(), time.Now()
		time.Sleep(span)
		el := time.Since(t0)
		return float64(cpuTime()-s0) / float64(el), float64(processCPU(b, serverPID)-v0) / float64(el),
			float64(host.AudioBytes.Load()-by0) / el.Seconds()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		selfQuiet, srvQuiet, bytesQuiet := measure(3 * time.Second)
		stop := snd.play(b, sineSource(440, 0.25))
		time.Sleep(time.Second)
		ears.take()
		selfPlay, srvPlay, bytesPlay := measure(5 * time.Second)
		stop()
		time.Sleep(time.Second)
		if n := len(ears.take()); n < 48000*2*4 {
			b.Fatalf("the viewer heard %d ms of the 5 s tone, want ≥ 4 s (sent %d packets)", n/96, host.AudioPackets.Load())
		}
		b.ReportMetric(100*selfQuiet, "%cpu-host+viewer-silent")
		b.ReportMetric(100*srvQuiet, "%cpu-server-silent")
		b.ReportMetric(bytesQuiet, "B/s-silent")
		b.ReportMetric(100*selfPlay, "%cpu-host+viewer-playing")
		b.ReportMetric(100*srvPlay, "%cpu-server-playing")
		b.ReportMetric(bytesPlay, "B/s-playing")
	}
}
