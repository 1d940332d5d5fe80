//go:build integration

package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/handoff/handoff/internal/testutil"
)

// tonePlayer plays a 440 Hz tone for an hour through the app's sound server.
const tonePlayer = "sox -n -t raw -r 48000 -c 2 -e signed -b 16 - synth 3600 sine 440 | pacat --raw --rate=48000 --channels=2 --format=s16le --latency-msec=100"

// TestSoundServerAcrossResume: every app has a sound server of its own,
// which its user's players find without configuration, which runs as the
// container's root where the app can neither end nor replace it, and which
// CRIU suspends and resumes while a player plays through it.
func TestSoundServerAcrossResume(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "tone", Args: []string{"sh", "-c", tonePlayer + " & exec xclock -update 1"},
		Width: 300, Height: 200}); err != nil {
		t.Fatal(err)
	}
	// What a player sees: its stream on the app's null sink. And what the
	// app's user can do to the server: neither end it nor take its place.
	check := func(when string) {
		t.Helper()
		var out []byte
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err = e.Exec(ctx, "tone", "sh", "-c", `pactl list short sinks | cut -f2; pactl list short sink-inputs | wc -l; `+
				`ps -o user= -C pulseaudio; kill -TERM $(pidof pulseaudio) 2>/dev/null && echo killed || echo not-killed; `+
				`pactl exit 2>/dev/null && echo exited || echo not-exited; `+
				`rm -f `+soundSocket+` 2>/dev/null && echo replaced || echo not-replaced`)
			if err == nil && strings.Contains(string(out), "\n1\n") || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		want := []string{SoundSink, "1", "root", "not-killed", "not-exited", "not-replaced"}
		if got := strings.Fields(string(out)); err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("%s: the sink, the count of playing streams, the server's user, ending it, exiting it, replacing its socket: %q (err %v), want %q", when, out, err, want)
		}
	}
	check("before the suspend")
	for i := 0; i < 3; i++ {
		if err := e.Suspend(ctx, "tone"); err != nil {
			t.Fatal(err)
		}
		if err := e.Resume(ctx, "tone"); err != nil {
			t.Fatal(err)
		}
	}
	check("after three suspends")
	// The host reaches it through the engine only.
	conn, err := e.DialSound(ctx, "tone")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// TestNoSound: an app may run without a sound server.
func TestNoSound(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "quiet", Args: []string{"xclock"}, Width: 300, Height: 200, NoSound: true}); err != nil {
		t.Fatal(err)
	}
	out, err := e.Exec(ctx, "quiet", "sh", "-c", `pidof pulseaudio || echo none; echo "${PULSE_SERVER:-unset}"`)
	if got := strings.Fields(string(out)); err != nil || strings.Join(got, " ") != "none unset" {
		t.Fatalf("an app without sound: pulseaudio's pid and PULSE_SERVER are %q (err %v), want none and unset", out, err)
	}
	if conn, err := e.DialSound(ctx, "quiet"); err == nil {
		conn.Close()
		t.Fatal("DialSound reached a sound server of an app without sound")
	}
}

// BenchmarkSoundServerCheckpoint reports what the sound server adds to a
// suspend and a resume: xclock without a sound server, with one that is
// silent, and with one a tone plays through, one after the other in the
// same run.
func BenchmarkSoundServerCheckpoint(b *testing.B) {
	ctx := context.Background()
	variants := []struct {
		name    string
		args    []string
		noSound bool
	}{
		{"none", []string{"xclock", "-update", "1"}, true},
		{"silent", []string{"xclock", "-update", "1"}, false},
		{"playing", []string{"sh", "-c", tonePlayer + " & exec xclock -update 1"}, false},
	}
	suspend := map[string]time.Duration{}
	resume := map[string]time.Duration{}
	image := map[string]int64{}
	for _, v := range variants {
		e, err := New(Config{StateDir: testutil.StateDir(b)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Criu(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := e.Run(ctx, Spec{User: appUser(b), Name: v.name, Args: v.args, Width: 1024, Height: 768, NoSound: v.noSound}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := e.Suspend(ctx, v.name); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			in, _ := e.Get(v.name)
			image[v.name] += in.ImageBytes
			if err := e.Resume(ctx, v.name); err != nil {
				b.Fatal(err)
			}
			suspend[v.name] += t1.Sub(t0)
			resume[v.name] += time.Since(t1)
			time.Sleep(300 * time.Millisecond)
		}
		e.Stop(ctx, v.name)
		e.Close()
	}
	for _, v := range variants {
		b.ReportMetric(ms(suspend[v.name])/float64(b.N), "ms/suspend-"+v.name)
		b.ReportMetric(ms(resume[v.name])/float64(b.N), "ms/resume-"+v.name)
		b.ReportMetric(float64(image[v.name])/float64(b.N)/(1<<20), "MB-image-"+v.name)
	}
	for _, v := range variants[1:] {
		b.ReportMetric(float64(suspend[v.name])/float64(suspend["none"]), "ratio-suspend-"+v.name)
		b.ReportMetric(float64(resume[v.name])/float64(resume["none"]), "ratio-resume-"+v.name)
	}
}
