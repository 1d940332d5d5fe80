//go:build integration

package stream

import (
	"context"
	"image"
	"path/filepath"
	"testing"
	"time"
)

// TestStreamWithoutDamage: a host that cannot reach the display's DAMAGE
// extension (here: no display socket at all) falls back to polling the
// framebuffer: changes still reach the viewer, and a still screen still
// sends nothing.
func TestStreamWithoutDamage(t *testing.T) {
	d := startDisplay(t, "640x480x24")
	p := newPainter(t, d)
	p.fill(image.Rect(0, 0, 640, 480), 0x204060)
	host := NewHost(HostConfig{Display: DisplayAt(d.framebuffer, filepath.Join(t.TempDir(), "no-display"))})
	t.Cleanup(func() { host.Close() })
	v := NewViewer(host.Answer, nil)
	got := newFrames(v)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); v.Close(); <-done })

	probe := image.Pt(50, 50)
	shows := func(rgb uint32) func() bool {
		return func() bool { img, _ := got.snapshot(); return near(img, probe, rgb) }
	}
	waitFor(t, "the first picture", 15*time.Second, shows(0x204060))
	p.fill(image.Rect(0, 0, 100, 100), 0xe0c020)
	waitFor(t, "a change, found by polling", 10*time.Second, shows(0xe0c020))

	time.Sleep(time.Second) // refining frames, then nothing
	before := host.Frames.Load()
	time.Sleep(2 * time.Second)
	if n := host.Frames.Load() - before; n != 0 {
		t.Errorf("%d frames encoded in 2 s of a still screen, want 0", n)
	}
}
