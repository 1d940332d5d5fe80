//go:build integration

package engine

import (
	"context"
	"testing"
	"time"
)

// TestMemorySampleEstimatesChanges: an app that holds 64 MB still, then
// rewrites 16 MB of it; the sample, read while it runs, sees about nothing
// change, then about 16 MB.
func TestMemorySampleEstimatesChanges(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	script := `import os, time
x = bytearray(os.urandom(64 << 20))
open("/tmp/ready", "w").close()
while not os.path.exists("/tmp/go"):
    time.sleep(0.05)
x[:16 << 20] = os.urandom(16 << 20)
open("/tmp/done", "w").close()
while True:
    time.sleep(1)
`
	if _, err := e.Run(ctx, Spec{User: appUser(t), Name: "mem", Args: []string{"xterm", "-e", "python3", "-c", script}, Width: 320, Height: 200}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(ctx, "mem") })
	waitFor := func(file string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := e.Exec(ctx, "mem", "test", "-e", file); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the app never made %s", file)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("/tmp/ready")
	s, err := e.SampleMemory(ctx, "mem", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if s.Bytes() < 64<<20 {
		t.Fatalf("the sample was drawn from %d MB of writable memory; the app holds 64 MB", s.Bytes()>>20)
	}
	if still := s.Changed(ctx); still > 2<<20 {
		t.Errorf("nothing was rewritten, yet %.1f MB are estimated to have changed", float64(still)/(1<<20))
	}
	if _, err := e.Exec(ctx, "mem", "touch", "/tmp/go"); err != nil {
		t.Fatal(err)
	}
	waitFor("/tmp/done")
	got := s.Changed(ctx)
	t.Logf("sampled %d MB; estimated change after rewriting 16 MB: %.1f MB", s.Bytes()>>20, float64(got)/(1<<20))
	if got < 8<<20 || got > 32<<20 {
		t.Errorf("16 MB were rewritten; the estimate is %.1f MB (of %d MB sampled)", float64(got)/(1<<20), s.Bytes()>>20)
	}
}
