//go:build integration

package app

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/internal/testutil"
	"github.com/handoff/handoff/internal/tone"
)

// toneApp plays a 440 Hz sine at a quarter of full scale (-15 dBFS RMS)
// for an hour through the app's own sound server, found through the
// environment the container gives it, beside a window.
var toneApp = []string{"sh", "-c", "sox -n -t raw -r 48000 -c 2 -e signed -b 16 - synth 3600 sine 440 vol 0.25 | " +
	"pacat --raw --rate=48000 --channels=2 --format=s16le --latency-msec=60 & exec xclock -update 1"}

// hearFrom records three seconds of an app's sound with `handoff view
// --sound` run in workstation w's namespace, as the tray's viewer would,
// and returns it with what the command said.
func hearFrom(t *testing.T, w *workstation, app string) ([]int16, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sound.wav")
	cmd := w.host.Command(context.Background(), os.Args[0], "--socket", w.client.Socket, "view", app,
		"--sound", out, "--sound-length", "3s", "--timeout", "40s")
	cmd.Env = append(os.Environ(), "HANDOFF_TEST_MAIN=1")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hear %s from %s: %v\n%s", app, w.name, err, msg)
	}
	if d := os.Getenv("SOUND_DEBUG_DIR"); d != "" {
		data, _ := os.ReadFile(out)
		os.WriteFile(filepath.Join(d, w.name+"-"+time.Now().Format("150405.000")+".wav"), data, 0o644)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := readWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	return pcm, string(msg)
}

// checkTone fails unless the last second of pcm, in both channels, is a
// pure tone of hz at dbfs. The seconds before it may hold the blip of a
// player and its sound server catching up after a restore.
func checkTone(t *testing.T, what string, pcm []int16, hz, dbfs float64) {
	t.Helper()
	if len(pcm) < 48000*2 {
		t.Fatalf("%s: %d ms of sound, want at least 1 s", what, len(pcm)/96)
	}
	pcm = pcm[len(pcm)-48000*2:]
	for ch := 0; ch < 2; ch++ {
		m, err := tone.Analyze(pcm, 2, ch, 48000)
		if err != nil {
			t.Fatalf("%s, channel %d: %v", what, ch, err)
		}
		if math.Abs(m.Hz-hz) > 2 || math.Abs(m.DBFS-dbfs) > 1.5 || m.Purity < 0.95 {
			t.Fatalf("%s, channel %d: %.1f Hz at %.1f dBFS (purity %.3f), want %g Hz at %.1f dBFS", what, ch, m.Hz, m.DBFS, m.Purity, hz, dbfs)
		}
		t.Logf("%s, channel %d: %.1f Hz at %.1f dBFS, purity %.3f", what, ch, m.Hz, m.DBFS, m.Purity)
	}
}

// TestSoundAcrossHandoff: an app playing a tone as its user is heard from
// ws-a at the tone's frequency and level; handed to ws-b while it plays,
// the same player goes on playing there, and ws-a's viewer hears it from
// ws-b.
func TestSoundAcrossHandoff(t *testing.T) {
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
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "tone", Args: toneApp, Width: 320, Height: 240}); err != nil {
		t.Fatal(err)
	}
	pcm, msg := hearFrom(t, a, "tone")
	if !strings.Contains(msg, "from ws-a") {
		t.Errorf("the sound did not come from ws-a: %s", msg)
	}
	checkTone(t, "on ws-a", pcm, 440, -15.05)

	if _, err := a.client.Send(ctx, "tone", "ws-b"); err != nil {
		t.Fatalf("hand the playing app to ws-b: %v", err)
	}
	pcm, msg = hearFrom(t, a, "tone")
	if !strings.Contains(msg, "from ws-b") {
		t.Errorf("after the handoff the sound did not come from ws-b: %s", msg)
	}
	checkTone(t, "from ws-b, after the handoff", pcm, 440, -15.05)
}
