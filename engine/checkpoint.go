package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// sumsFile records a CRC-32C of every image file, written after a dump and
// checked before a restore: restoring a silently damaged page image would
// bring the app back with wrong memory.
const sumsFile = "handoff-sums.json"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Suspend checkpoints the app to disk. Its processes are gone afterwards; on
// any failure the app keeps running and no partial image is left.
func (e *Engine) Suspend(ctx context.Context, name string) error {
	a, end, err := e.begin(name)
	if err != nil {
		return err
	}
	defer end()
	through, err := checkTransition(name, "suspend", a.info().State)
	if err != nil {
		return err
	}
	if _, err := e.Criu(ctx); err != nil {
		return fmt.Errorf("suspend %q: %w", name, err)
	}
	t0 := time.Now()
	m, err := e.checkHandles(ctx, name)
	if err != nil {
		return fmt.Errorf("suspend %q: %w; the app keeps running", name, err)
	}
	if err := e.checkSpace(a); err != nil {
		return fmt.Errorf("suspend %q: %w; the app keeps running", name, err)
	}
	t1 := time.Now()
	if err := e.to(a, through, nil); err != nil {
		return fmt.Errorf("suspend %q: %w", name, err)
	}
	size, err := e.dump(a, m.Summary.TCPEstablished > 0)
	if err != nil {
		e.to(a, StateRunning, func(r *record) { r.Error = err.Error() })
		return fmt.Errorf("suspend %q: %w; the app keeps running", name, err)
	}
	// The image is complete and checksummed: the app is suspended. Removing
	// the emptied container (cgroups, runc state, the overlay mount) takes
	// ~150 ms that the user need not wait for.
	e.to(a, StateSuspended, func(r *record) { r.InitPID, r.ImageBytes, r.Error = 0, size, "" })
	e.tidy(a, func() { e.destroyContainer(a) })
	e.log.Debug("suspend phases", "app", name, "handles+space", t1.Sub(t0), "dump+sums", time.Since(t1))
	e.log.Info("app suspended", "app", name, "image_bytes", size)
	return nil
}

// checkSpace refuses a dump that would not fit: the image is about as large
// as the container's memory (including its tmpfs).
func (e *Engine) checkSpace(a *app) error {
	need := a.info().MemoryBytes + 16<<20
	var st unix.Statfs_t
	if err := unix.Statfs(e.cfg.StateDir, &st); err != nil {
		return nil // cannot tell; the dump itself will say
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return fmt.Errorf("%w in %s: the checkpoint needs about %s, %s free; free some space and try again",
			ErrNoSpace, e.cfg.StateDir, humanBytes(need), humanBytes(free))
	}
	return nil
}

// criuOpts are the CRIU options every dump and restore starts from.
//
// CRIU leaves cgroups alone ("ignore"): before a restore, libcontainer puts
// CRIU into the container's cgroups and sets their limits, so the restored
// processes inherit both. Managing cgroups itself, CRIU mounts every cgroup
// hierarchy on each dump and restore, and a cgroup2 mount waits for an RCU
// grace period: 16 ms of the frozen dump and ~10 ms of the restore, measured
// with the scheduler's trace events.
func criuOpts(images, work string) *libcontainer.CriuOpts {
	return &libcontainer.CriuOpts{
		ImagesDirectory:   images,
		WorkDirectory:     work,
		FileLocks:         true,
		ManageCgroupsMode: "ignore",
	}
}

// dump checkpoints the container into a fresh image dir and moves it into
// place only when complete.
func (e *Engine) dump(a *app, tcpEstablished bool) (int64, error) {
	a.mu.Lock()
	ctr := a.ctr
	a.mu.Unlock()
	if ctr == nil {
		return 0, errors.New("the app's container is not loaded")
	}
	partial := a.dirs.checkpoint() + ".partial"
	_ = os.RemoveAll(partial)
	_ = os.RemoveAll(a.dirs.criuWork())
	if err := os.MkdirAll(a.dirs.criuWork(), 0o700); err != nil {
		return 0, err
	}
	start := time.Now()
	var err error
	var cause string
	for attempt := 1; ; attempt++ {
		err = withFrozen(ctr, func() error {
			return inNetns(a.dirs.netns(), func() error {
				opts := criuOpts(partial, a.dirs.criuWork())
				opts.TcpEstablished = tcpEstablished
				return ctr.Checkpoint(opts)
			})
		})
		if err == nil {
			break
		}
		cause = criuLogErrors(filepath.Join(a.dirs.criuWork(), "dump.log"))
		// A socket caught inside an SCM_RIGHTS message (X clients and
		// servers pass fds while starting up) fails the dump for that
		// instant only; CRIU has resumed the app, so try again shortly.
		if !isTransientDumpError(cause) || attempt == 3 {
			break
		}
		e.log.Debug("dump hit an in-flight socket, retrying", "app", a.rec.Spec.Name, "attempt", attempt)
		_ = os.RemoveAll(partial)
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	if err != nil {
		_ = os.RemoveAll(partial)
		if strings.Contains(cause, "No space left") || errors.Is(err, unix.ENOSPC) {
			return 0, fmt.Errorf("%w in %s while writing the checkpoint", ErrNoSpace, e.cfg.StateDir)
		}
		if h := blockingHandleFromLog(cause); h != "" {
			return 0, fmt.Errorf("%w: %s", ErrBlocked, h)
		}
		return 0, fmt.Errorf("checkpoint failed: %v%s", err, withCause(cause))
	}
	dumped := time.Now()
	size, err := writeSums(partial)
	e.log.Debug("dump", "app", a.rec.Spec.Name, "criu", dumped.Sub(start), "sums", time.Since(dumped))
	if err != nil {
		return 0, fmt.Errorf("checksum checkpoint: %w", err)
	}
	_ = os.RemoveAll(a.dirs.checkpoint())
	if err := os.Rename(partial, a.dirs.checkpoint()); err != nil {
		return 0, err
	}
	e.log.Debug("dump done", "app", a.rec.Spec.Name, "took", time.Since(start))
	return size, nil
}

// Resume restores a suspended app. A missing or damaged checkpoint is
// reported and kept; nothing is deleted on failure.
func (e *Engine) Resume(ctx context.Context, name string) error {
	return e.byName(name, func(a *app) error { return e.resume(ctx, a) })
}

func (e *Engine) resume(ctx context.Context, a *app) error {
	name := a.rec.Spec.Name
	through, err := checkTransition(name, "resume", a.info().State)
	if err != nil {
		return err
	}
	if _, err := e.Criu(ctx); err != nil {
		return fmt.Errorf("resume %q: %w", name, err)
	}
	defer e.ExpectRestore()() // gets ready while the images are checked
	t0 := time.Now()
	if err := verifySums(a.dirs.checkpoint()); err != nil {
		e.update(a, func(r *record) { r.Error = err.Error() })
		return fmt.Errorf("resume %q: %w; the checkpoint in %s was kept", name, err, a.dirs.checkpoint())
	}
	t1 := time.Now()
	if err := e.to(a, through, nil); err != nil {
		return fmt.Errorf("resume %q: %w", name, err)
	}
	target, err := e.createForRestore(a, e.startLazyPages(a))
	var pid int
	var lazy *exec.Cmd
	if err == nil {
		pid, lazy, err = e.restore(a, target)
	}
	if err != nil {
		e.destroyContainer(a)
		e.to(a, StateSuspended, func(r *record) { r.Error = err.Error() })
		return fmt.Errorf("resume %q: %w; the checkpoint was kept, the app stays suspended", name, err)
	}
	e.to(a, StateRunning, func(r *record) {
		r.InitPID, r.Started, r.ImageBytes, r.Error = pid, time.Now().UTC(), 0, ""
	})
	e.dropImages(a, lazy)
	e.log.Debug("resume phases", "app", name, "verify", t1.Sub(t0), "restore", time.Since(t1))
	e.log.Info("app resumed", "app", name, "pid", pid)
	return nil
}

// restore brings the app back from its checkpoint into the container
// createForRestore made, with its root filesystem in place. The images must
// stay until dropImages: a lazy restore reads pages from them after it
// returns; the lazy-pages daemon it returns (nil: the restore was eager)
// says when it is done.
func (e *Engine) restore(a *app, target *restoreTarget) (int, *exec.Cmd, error) {
	spec := a.rec.Spec
	lazy := target.lazy
	t0 := time.Now()
	if err := mountOverlay(a.dirs, e.cfg.Base); err != nil {
		target.abandon()
		return 0, nil, err
	}
	if lazy != nil && !e.lazyPagesReady(a, lazy) {
		lazy = nil
	}
	<-target.versionKnown
	opts := criuOpts(a.dirs.checkpoint(), a.dirs.criuWork())
	opts.TcpEstablished = true // harmless when the image has no such connection
	opts.LazyPages = lazy != nil
	t1 := time.Now()
	proc := &libcontainer.Process{Init: true, Args: []string{"/bin/sh", initPath}, Env: containerEnv(spec)}
	watchdog := watchRestore(target.ctr, restoreTimeout)
	err := inNetns(a.dirs.netns(), func() error { return target.ctr.Restore(proc, opts) })
	stuck := watchdog()
	e.log.Debug("restore timings", "app", spec.Name, "waits", t1.Sub(t0), "criu", time.Since(t1))
	if err != nil {
		stopLazyPages(lazy)
		if stuck != "" {
			return 0, nil, fmt.Errorf("restore failed: %s", stuck)
		}
		cause := criuLogErrors(filepath.Join(a.dirs.criuWork(), "restore.log"))
		return 0, nil, fmt.Errorf("restore failed: %v%s", err, withCause(cause))
	}
	pid, err := proc.Pid()
	if err != nil {
		return 0, nil, err
	}
	// libcontainer keeps a restored container in a "restored" state from
	// which it cannot be paused (no handoff after a resume); loading it
	// again gives the state it really is in.
	if loaded, err := libcontainer.Load(e.runcRoot, spec.Name); err == nil {
		a.mu.Lock()
		a.ctr = loaded
		a.mu.Unlock()
	}
	e.watch(a, pid, proc)
	e.watchHome(a, pid)
	return pid, lazy, nil
}

// restoreTimeout bounds a restore. One takes well under a second here
// (800 MB: ~0.1 s eager from a warm page cache); one that takes this long
// waits for something that may never come, such as a file lock another
// process holds, while a source may keep the app frozen for it.
var restoreTimeout = 30 * time.Second

// watchRestore ends a restore into ctr that takes longer than limit: CRIU
// and the tasks it restores are in the container's cgroups, and are
// killed there. The function it returns stops the watch and says why the
// restore was ended, in words, or "" if it was not.
func watchRestore(ctr *libcontainer.Container, limit time.Duration) (stop func() string) {
	done := make(chan struct{})
	why := make(chan string, 1)
	go func() {
		select {
		case <-done:
			why <- ""
			return
		case <-time.After(limit):
		}
		pids, _ := ctr.Processes()
		reason := fmt.Sprintf("it did not finish within %v", limit)
		for _, pid := range pids {
			if w, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid)); isLockWait(string(w)) {
				reason = fmt.Sprintf("it waited %v for a file lock the app held, which another process here holds now (is the app's home shared with the machine it came from, and the app still running there?)", limit)
				break
			}
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		why <- reason
	}()
	return func() string {
		close(done)
		return <-why
	}
}

// isLockWait reports whether a task's wchan is a wait for a file lock.
func isLockWait(wchan string) bool {
	return strings.Contains(wchan, "setlk") || strings.Contains(wchan, "flock") || strings.Contains(wchan, "locks_lock")
}

// dropImages removes the checkpoint a restore used, once the lazy-pages
// daemon (if any) has served every page; the app's next operation waits.
func (e *Engine) dropImages(a *app, lazy *exec.Cmd) {
	e.tidy(a, func() {
		if lazy != nil {
			_ = lazy.Wait()
		}
		_ = os.RemoveAll(a.dirs.checkpoint())
	})
}

// restoreTarget is a container made for a restore before the rest of the
// restore is ready. libcontainer asks CRIU for its version once per
// container, by starting CRIU (~9 ms), right before the restore's own CRIU;
// here it is asked in the background while the caller puts the root
// filesystem in place and the lazy-pages daemon comes up.
type restoreTarget struct {
	ctr          *libcontainer.Container
	lazy         *exec.Cmd     // the lazy-pages daemon; nil for an eager restore
	versionKnown chan struct{} // closed once libcontainer knows CRIU's version
}

// abandon stops what createForRestore started, for a restore that will not
// happen; the container itself goes with the app (destroyContainer).
func (t *restoreTarget) abandon() {
	<-t.versionKnown
	stopLazyPages(t.lazy)
}

// createForRestore puts in place what a restore needs besides the images
// (already in place) and the root filesystem: the network namespace, the
// framebuffer and the container. It takes over lazy, the lazy-pages
// daemon from startLazyPages (nil: an eager restore), and stops it on
// failure.
func (e *Engine) createForRestore(a *app, lazy *exec.Cmd) (*restoreTarget, error) {
	spec := a.rec.Spec
	ctr, err := func() (*libcontainer.Container, error) {
		if err := makeAppDirs(a.dirs, a.containerRoot()); err != nil {
			return nil, err
		}
		cfg, err := containerConfig(spec.Name, a.dirs, e.cgroupPath(spec.Name), spec, a.rec.Host)
		if err != nil {
			return nil, err
		}
		ctr, err := libcontainer.Create(e.runcRoot, spec.Name, cfg)
		if err != nil {
			return nil, fmt.Errorf("create container: %w", err)
		}
		return ctr, nil
	}()
	if err != nil {
		stopLazyPages(lazy)
		return nil, err
	}
	a.mu.Lock()
	a.ctr = ctr
	a.mu.Unlock()
	target := &restoreTarget{ctr: ctr, lazy: lazy, versionKnown: make(chan struct{})}
	go func() {
		defer close(target.versionKnown)
		// Restore asks CRIU for its version first and keeps the answer;
		// without images it then fails at once, having restored nothing.
		_ = ctr.Restore(&libcontainer.Process{}, &libcontainer.CriuOpts{})
	}()
	// The network namespace is not needed before the restore itself.
	if !e.warmup.takeSpareNetns(a.dirs.netns()) {
		err = createNetns(a.dirs.netns())
	}
	if err == nil {
		err = mountSysfs(a.dirs)
	}
	if err == nil {
		err = placeFramebuffer(a.dirs, a.dirs.checkpoint(), a.containerRoot())
	}
	if err == nil {
		err = e.prepareImages(a)
	}
	if err != nil {
		target.abandon()
		return nil, err
	}
	return target, nil
}

// startLazyPages makes a fresh CRIU work dir and starts CRIU's lazy-pages
// daemon there on the app's images, so that the restore returns once the
// process tree is back and memory pages stream in from the images while the
// app already runs (userfaultfd). The daemon needs ~15 ms to come up: it is
// started as soon as the images are in place, and reads them while the rest
// of the restore is prepared. It returns nil where the kernel or CRIU
// cannot, and the restore is eager.
func (e *Engine) startLazyPages(a *app) *exec.Cmd {
	_ = os.RemoveAll(a.dirs.criuWork())
	if err := os.MkdirAll(a.dirs.criuWork(), 0o700); err != nil {
		e.log.Warn("lazy restore unavailable", "err", err)
		return nil
	}
	info, err := e.Criu(context.Background())
	if err != nil || !info.LazyPages || e.cfg.EagerRestore {
		return nil
	}
	cmd := exec.Command(info.Path, "lazy-pages", "--images-dir", a.dirs.checkpoint(),
		"--work-dir", a.dirs.criuWork(), "-o", "lazy-pages.log", "-v4")
	if err := cmd.Start(); err != nil {
		e.log.Warn("lazy restore unavailable", "err", err)
		return nil
	}
	return cmd
}

// lazyPagesReady waits for the lazy-pages daemon's socket. When it does not
// come up, it stops the daemon and the restore is eager.
func (e *Engine) lazyPagesReady(a *app, lazy *exec.Cmd) bool {
	sock := filepath.Join(a.dirs.criuWork(), "lazy-pages.socket")
	for i := 0; i < 1000; i++ {
		if _, err := os.Stat(sock); err == nil {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	stopLazyPages(lazy)
	e.log.Warn("lazy-pages daemon did not come up; restoring eagerly")
	return false
}

// stopLazyPages ends a lazy-pages daemon a restore will not use.
func stopLazyPages(lazy *exec.Cmd) {
	if lazy != nil {
		_ = lazy.Process.Kill()
		_ = lazy.Wait()
	}
}

// isTransientDumpError recognises a dump that failed only because of the
// instant it ran at.
func isTransientDumpError(cause string) bool {
	return strings.Contains(cause, "in-flight socket") ||
		strings.Contains(cause, "Unseizable non-zombie") || // caught mid-vfork
		// Seen once in CI, right after xterm's shell started: a process
		// just forked in the terminal's session, caught while the shell
		// still set up its session and process groups. A state that
		// lasts fails all three attempts and is reported as it is.
		strings.Contains(cause, "ctty inheritance detected") ||
		// A message caught unread in a socket whose reader asked for its
		// sender's credentials (SO_PASSCRED: PulseAudio's server and its
		// clients do), which CRIU cannot dump; the reader takes it as soon
		// as it runs again (see thawToDrain).
		isQueuedMessageError(cause)
}

func isQueuedMessageError(cause string) bool {
	return strings.Contains(cause, "Control messages in queue")
}

// criuNoise are error lines CRIU logs on every run on these kernels without
// failing; they would only hide the real cause in a message.
var criuNoise = []string{"Can't setup RLIMIT_NOFILE"}

// criuLogErrors returns the error lines of a CRIU log, for messages.
func criuLogErrors(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var errs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "Error (") && !slices.ContainsFunc(criuNoise, func(n string) bool { return strings.Contains(l, n) }) {
			if i := strings.Index(l, "): "); i >= 0 {
				l = l[i+3:]
			}
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) > 3 {
		errs = errs[:3]
	}
	return strings.Join(errs, "; ")
}

func withCause(cause string) string {
	if cause == "" {
		return ""
	}
	return " (CRIU: " + cause + ")"
}

// blockingHandleFromLog recognises CRIU's complaints about handles whose
// other end is outside the container and names the handle.
func blockingHandleFromLog(cause string) string {
	for _, pat := range []string{"external socket", "External socket", "unix: Can't dump", "Can't lookup mount", "Can't dump half of stream unix", "not reachable", "ext_mount"} {
		if strings.Contains(cause, pat) {
			return cause
		}
	}
	return ""
}

type imageSums struct {
	Files map[string]uint32 `json:"files"` // name → CRC-32C
	Bytes int64             `json:"bytes"`
}

func writeSums(dir string) (int64, error) {
	sums := imageSums{Files: map[string]uint32{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, ent := range entries {
		if !ent.Type().IsRegular() || ent.Name() == sumsFile {
			continue
		}
		c, n, err := crcFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			return 0, err
		}
		sums.Files[ent.Name()] = c
		sums.Bytes += n
	}
	data, err := json.Marshal(sums)
	if err != nil {
		return 0, err
	}
	return sums.Bytes, os.WriteFile(filepath.Join(dir, sumsFile), data, 0o600)
}

func verifySums(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, sumsFile))
	if err != nil {
		return fmt.Errorf("%w: %s has no checksum list (%v)", ErrBadImage, dir, err)
	}
	var sums imageSums
	if err := json.Unmarshal(data, &sums); err != nil || len(sums.Files) == 0 {
		return fmt.Errorf("%w: checksum list in %s is unreadable", ErrBadImage, dir)
	}
	for name, want := range sums.Files {
		got, _, err := crcFile(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadImage, name, err)
		}
		if got != want {
			return fmt.Errorf("%w: %s is damaged (checksum mismatch)", ErrBadImage, name)
		}
	}
	return nil
}

func crcFile(path string) (uint32, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	return h.Sum32(), n, err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
