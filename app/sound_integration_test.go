//go:build integration

package app

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/testnet"
	"github.com/handoff/handoff/internal/testutil"
	"github.com/handoff/handoff/internal/tone"
	"golang.org/x/net/websocket"
)

// toneApp plays a 440 Hz sine at a quarter of full scale (-15 dBFS RMS)
// for an hour through the app's own sound server, found through the
// environment the container gives it, beside a window.
var toneApp = []string{"sh", "-c", "sox -n -t raw -r 48000 -c 2 -e signed -b 16 - synth 3600 sine 440 vol 0.25 | " +
	"pacat --raw --rate=48000 --channels=2 --format=s16le --latency-msec=200 & exec xclock -update 1"}

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

// checkTone fails unless pcm, in both channels, is a pure tone of hz at
// dbfs: in most of its 100 ms windows, so that the stutter of a loaded
// machine (an app's player that underruns) or the blip of a restore does
// not fail it, while anything else than the tone does.
func checkTone(t *testing.T, what string, pcm []int16, hz, dbfs float64) {
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

// browserSound is what the viewer page's handoffSound() reports: WebRTC's
// inbound-rtp statistics of the sound.
type browserSound struct {
	BytesReceived        int64   `json:"bytesReceived"`
	PacketsReceived      int64   `json:"packetsReceived"`
	PacketsLost          int64   `json:"packetsLost"`
	TotalSamplesReceived int64   `json:"totalSamplesReceived"`
	ConcealedSamples     int64   `json:"concealedSamples"`
	AudioLevel           float64 `json:"audioLevel"`
	TotalAudioEnergy     float64 `json:"totalAudioEnergy"`
	TotalSamplesDuration float64 `json:"totalSamplesDuration"`
	CodecID              string  `json:"codecId"`
}

// TestBrowserHearsTheApp: headless Chromium's viewer page receives the
// app's sound as a standard WebRTC audio track and decodes it: bytes and
// samples arrive, few are concealed, and their energy is the tone's.
func TestBrowserHearsTheApp(t *testing.T) {
	net := testnet.New(t, "a")
	a := startWorkstation(t, net.Host("a"), "ws-a")
	ctx := context.Background()
	if _, err := a.client.Run(ctx, RunRequest{As: testutil.AppUser(t), Name: "tone", Args: toneApp, Width: 320, Height: 240}); err != nil {
		t.Fatal(err)
	}
	web, err := a.client.Web(ctx, "tone")
	if err != nil {
		t.Fatal(err)
	}
	pageWS := openInChromium(t, a, web.URL, "tone")
	var first, last browserSound
	err = a.host.Do(func() error {
		ws, err := websocket.Dial(pageWS, "", "http://127.0.0.1/")
		if err != nil {
			return err
		}
		defer ws.Close()
		c := &cdp{ws: ws}
		// The person's click that lets the page play sound.
		if _, err := c.eval("document.getElementById('sound').click(), document.getElementById('sound').textContent"); err != nil {
			return err
		}
		stats := func() (browserSound, error) {
			var s browserSound
			js, err := c.eval("window.handoffSound()")
			if err != nil || js == "" {
				return s, err
			}
			return s, json.Unmarshal([]byte(js), &s)
		}
		deadline := time.Now().Add(40 * time.Second)
		for first.TotalSamplesReceived < 48000 {
			if time.Now().After(deadline) {
				return fmt.Errorf("no second of sound decoded within 40 s: %+v", first)
			}
			time.Sleep(200 * time.Millisecond)
			if first, err = stats(); err != nil {
				return err
			}
		}
		time.Sleep(2 * time.Second)
		last, err = stats()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("browser's sound statistics after 2 s more: %+v", last)
	samples := last.TotalSamplesReceived - first.TotalSamplesReceived
	concealed := last.ConcealedSamples - first.ConcealedSamples
	seconds := last.TotalSamplesDuration - first.TotalSamplesDuration
	switch {
	case last.BytesReceived <= first.BytesReceived || last.PacketsReceived-first.PacketsReceived < 80:
		t.Errorf("the browser received %d packets (%d bytes) of sound in 2 s, want ~100", last.PacketsReceived-first.PacketsReceived, last.BytesReceived-first.BytesReceived)
	case samples < 48000*3/2:
		t.Errorf("the browser decoded %d samples in 2 s, want ~96000", samples)
	case concealed > samples/20:
		t.Errorf("the browser concealed %d of %d samples in 2 s: decoding failed or packets were lost", concealed, samples)
	case last.PacketsLost != 0:
		t.Errorf("%d packets of sound lost on loopback", last.PacketsLost)
	}
	// Chromium's energy is the square of each 10 ms's peak level, in
	// [-1, 1]: the tone's peak, a quarter of full scale, -12 dBFS. It
	// reports none at all when its sound output does not run (seen on a
	// loaded machine): the checks above still hold then.
	if last.TotalAudioEnergy == 0 {
		t.Log("Chromium reported no audio energy: its output did not run")
	} else if seconds > 0 {
		energy := (last.TotalAudioEnergy - first.TotalAudioEnergy) / seconds
		if db := 10 * math.Log10(energy); math.Abs(db-(-12.04)) > 1.5 {
			t.Errorf("the browser's sound peaks at %.1f dBFS, want the tone's -12.0", db)
		} else {
			t.Logf("the browser's sound peaks at %.1f dBFS", db)
		}
	}
	if !strings.Contains(last.CodecID, "stereo=1") {
		t.Errorf("the browser decodes the sound as %q, want Opus in stereo", last.CodecID)
	}
}
