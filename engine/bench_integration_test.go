//go:build integration

package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/handoff/handoff/internal/testutil"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// benchApps are the apps the suspend/resume benchmark measures.
var benchApps = []struct {
	name string
	args []string
}{
	{"xterm", []string{"xterm"}},
	{"xclock", []string{"xclock", "-update", "1"}},
	// 200 MB of dirty memory: every page written.
	{"mem200", []string{"python3", "-c", "import time\nx = bytearray(200 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(1e6)"}},
}

// BenchmarkSuspendResume measures suspend and resume through the engine
// beside the same container checkpointed and restored with the runc CLI
// (same overlay root, init, Xvfb and app, same CRIU and disk) in the same
// run, and reports the ratios. Target: ratio ≤ 1.0.
func BenchmarkSuspendResume(b *testing.B) {
	for _, app := range benchApps {
		b.Run(app.name, func(b *testing.B) {
			ourS, ourR, ourImg := benchEngine(b, app.args)
			runcS, runcR, runcImg := benchRunc(b, app.args)
			b.ReportMetric(ms(ourS), "ms/suspend")
			b.ReportMetric(ms(ourR), "ms/resume")
			b.ReportMetric(float64(ourImg)/(1<<20), "MB-image")
			b.ReportMetric(ms(runcS), "runc-ms/checkpoint")
			b.ReportMetric(ms(runcR), "runc-ms/restore")
			b.ReportMetric(float64(runcImg)/(1<<20), "runc-MB-image")
			b.ReportMetric(float64(ourS)/float64(runcS), "ratio-suspend")
			b.ReportMetric(float64(ourR)/float64(runcR), "ratio-resume")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchEngine(b *testing.B, args []string) (suspend, resume time.Duration, image int64) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("HANDOFF_BENCH_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := New(Config{StateDir: testutil.StateDir(b), Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	// The daemon probes CRIU when it starts, not on the first suspend.
	if _, err := e.Criu(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := e.Run(ctx, Spec{User: appUser(b), Name: "bench", Args: args, Width: 1024, Height: 768}); err != nil {
		b.Fatal(err)
	}
	defer e.Stop(ctx, "bench")
	time.Sleep(2 * time.Second) // let the app settle and fill its memory
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := e.Suspend(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		suspend += time.Since(t0)
		info, _ := e.Get("bench")
		image = info.ImageBytes
		t0 = time.Now()
		if err := e.Resume(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		resume += time.Since(t0)
	}
	return suspend / time.Duration(b.N), resume / time.Duration(b.N), image
}

// RuncApp is the benchmarks' baseline: the same container as the engine's
// (overlay root, init, Xvfb and app, same capabilities) run by the runc CLI.
// It is exported for the handoff benchmark in package engine_test.
type RuncApp struct {
	Dir, Bundle, ID string
	root            string
}

// StartRunc runs args in a runc container and removes it when tb ends.
func StartRunc(tb testing.TB, args []string) *RuncApp { return startRunc(tb, args, false) }

// StartRuncConfined is StartRunc with the seccomp filter the engine's
// containers have (Docker's default): an app that makes namespaces of its
// own where it may (Firefox's content sandbox) does not, and CRIU can dump
// it.
func StartRuncConfined(tb testing.TB, args []string) *RuncApp { return startRunc(tb, args, true) }

func startRunc(tb testing.TB, args []string, confined bool) *RuncApp {
	dir := tb.TempDir()
	d := appDirs{root: filepath.Join(dir, "app")}
	root := User{Name: "root", Home: "/root", Shell: "/bin/sh"}
	if err := makeAppDirs(d, 0); err != nil {
		tb.Fatal(err)
	}
	if err := prepareUpper(d.upper(), upperLayout{user: root, host: hostIDs{Home: "/root"}, base: "/"}); err != nil {
		tb.Fatal(err)
	}
	// The engine bind-mounts the framebuffer's dir; here it is a plain
	// dir of the upper dir.
	if err := os.MkdirAll(filepath.Join(d.upper(), strings.TrimPrefix(fbDir, "/")), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := mountOverlay(d, "/"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unmountAll(d) })
	r := &RuncApp{Dir: dir, Bundle: filepath.Join(dir, "bundle"), ID: "bench-" + strconv.Itoa(os.Getpid()), root: filepath.Join(dir, "runc-state")}
	os.MkdirAll(r.Bundle, 0o700)
	if out, err := exec.Command("runc", "spec", "--bundle", r.Bundle).CombinedOutput(); err != nil {
		tb.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	data, _ := os.ReadFile(filepath.Join(r.Bundle, "config.json"))
	json.Unmarshal(data, &spec)
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	// The same capabilities as the engine's containers: runc spec's minimal
	// set has no CAP_CHOWN, and xterm cannot set up its pty without it.
	caps := toAny(rootAppCaps)
	proc["capabilities"] = map[string]any{"bounding": caps, "effective": caps, "permitted": caps}
	proc["args"] = append([]any{"/bin/sh", initPath}, toAny(args)...)
	proc["env"] = toAny(containerEnv(Spec{Name: "bench", User: root, Width: 1024, Height: 768, Depth: 24}))
	if confined {
		profile, err := seccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
			Bounding: rootAppCaps, Effective: rootAppCaps, Permitted: rootAppCaps}}})
		if err != nil {
			tb.Fatal(err)
		}
		linux := spec["linux"].(map[string]any)
		linux["seccomp"] = profile
	}
	spec["root"] = map[string]any{"path": d.rootfs(), "readonly": false}
	// /tmp is the upper dir's, as in the engine's containers: the init
	// logs and Xvfb keeps its framebuffer there (a tmpfs over it hid
	// them, and the init ended at once).
	data, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(r.Bundle, "config.json"), data, 0o600)
	if err := r.CLI("run", "-d", "--bundle", r.Bundle, r.ID); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.CLI("delete", "-f", r.ID) })
	return r
}

// CLI runs a runc command on the container's state root.
func (r *RuncApp) CLI(a ...string) error {
	cmd := exec.Command("runc", append([]string{"--root", r.root}, a...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("runc %s: %v: %s", strings.Join(a, " "), err, out)
	}
	return nil
}

// Checkpoint stops the container into an image dir.
func (r *RuncApp) Checkpoint(img string) error {
	// --file-locks as the engine's dumps: browsers lock their profiles.
	err := r.CLI("checkpoint", "--file-locks", "--image-path", img, "--work-path", img+".work", r.ID)
	if err != nil {
		err = fmt.Errorf("%w%s", err, withCause(criuLogErrors(filepath.Join(img+".work", "dump.log"))))
	}
	return err
}

// Restore starts the container again from an image dir.
func (r *RuncApp) Restore(img string) error {
	return r.CLI("restore", "-d", "--file-locks", "--image-path", img, "--work-path", img+".work", "--bundle", r.Bundle, r.ID)
}

// benchRunc checkpoints and restores the same container with the runc CLI.
func benchRunc(b *testing.B, args []string) (checkpoint, restore time.Duration, image int64) {
	r := StartRunc(b, args)
	time.Sleep(2 * time.Second)
	for i := 0; i < b.N; i++ {
		img := filepath.Join(r.Dir, fmt.Sprintf("img-%d", i))
		t0 := time.Now()
		if err := r.Checkpoint(img); err != nil {
			b.Fatal(err)
		}
		checkpoint += time.Since(t0)
		image = dirSize(img)
		t0 = time.Now()
		if err := r.Restore(img); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(t0)
		os.RemoveAll(img)
		os.RemoveAll(img + ".work")
	}
	return checkpoint / time.Duration(b.N), restore / time.Duration(b.N), image
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}
