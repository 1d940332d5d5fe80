package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// The source side of a handoff: pre-copy snapshots while the app runs, then
// freeze, a final dump that leaves the app frozen (until the destination
// confirms, this frozen copy is the app), and thaw on any failure or release
// after success. The destination side is Instantiate.

// Snapshot writes a full image of a running app into dir and leaves it
// running: a pre-copy round. The app is paused only while CRIU copies it.
func (e *Engine) Snapshot(ctx context.Context, name, dir string) error {
	return e.byName(name, func(a *app) error { return e.checkpointIn(a, "snapshot", StateRunning, dir) })
}

// Freeze stops every process of the app with the cgroup freezer.
func (e *Engine) Freeze(ctx context.Context, name string) error {
	return e.byName(name, e.freeze)
}

// Thaw lets a frozen app run again: the rollback of a handoff.
func (e *Engine) Thaw(ctx context.Context, name string) error {
	return e.byName(name, e.thaw)
}

// DumpFrozen writes the image of a frozen app into dir; the app stays frozen.
func (e *Engine) DumpFrozen(ctx context.Context, name, dir string) error {
	return e.byName(name, func(a *app) error { return e.checkpointIn(a, "dump", StateFrozen, dir) })
}

// Release removes an app that now runs elsewhere: its frozen processes are
// killed and its container, mounts and files removed.
func (e *Engine) Release(ctx context.Context, name string) error {
	return e.byName(name, e.release)
}

// byName runs op on the named app under its operation lock, unless a
// handoff holds the app (see Outgoing).
func (e *Engine) byName(name string, op func(*app) error) error {
	a, end, err := e.begin(name)
	if err != nil {
		return err
	}
	defer end()
	return op(a)
}

func (e *Engine) freeze(a *app) error {
	name := a.rec.Spec.Name
	e.beforeCheckpoint(name)
	through, err := checkTransition(name, "freeze", a.info().State)
	if err != nil {
		return err
	}
	a.mu.Lock()
	ctr := a.ctr
	a.mu.Unlock()
	if err := pause(ctr); err != nil {
		// libcontainer may have frozen the cgroup before failing: never
		// leave an app frozen behind an error.
		_ = ctr.Resume()
		if st, serr := ctr.Status(); serr == nil && st == libcontainer.Paused {
			return fmt.Errorf("freeze %q: %w; and it could not be thawed: the app is stuck frozen", name, err)
		}
		return fmt.Errorf("freeze %q: %w; the app keeps running", name, err)
	}
	return e.to(a, through, nil)
}

func (e *Engine) thaw(a *app) error {
	name := a.rec.Spec.Name
	if _, err := checkTransition(name, "thaw", a.info().State); err != nil {
		return err
	}
	a.mu.Lock()
	ctr := a.ctr
	a.mu.Unlock()
	if err := ctr.Resume(); err != nil {
		return fmt.Errorf("thaw %q: %w", name, err)
	}
	return e.to(a, StateRunning, nil)
}

func (e *Engine) release(a *app) error {
	name := a.rec.Spec.Name
	through, err := checkTransition(name, "release", a.info().State)
	if err != nil {
		return err
	}
	e.to(a, through, nil)
	// Unmounting the overlay makes the kernel sync the disk under it,
	// which took seconds after a large handoff while the disk was busy.
	// A reference held across the unmount moves that wait to the
	// background: the mount is gone at once, its last reference later.
	hold, herr := os.OpenFile(a.dirs.rootfs(), unix.O_PATH|unix.O_DIRECTORY, 0)
	e.removeAll(a)
	if herr == nil {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			hold.Close()
		}()
	}
	e.forget(a)
	e.log.Info("app released to its new machine", "app", name)
	return nil
}

// checkpointIn dumps an app that is in state want into dir and leaves it
// as it was (running, or frozen).
func (e *Engine) checkpointIn(a *app, op string, want State, dir string) error {
	e.beforeCheckpoint(a.rec.Spec.Name)
	if st := a.info().State; st != want {
		return &StateError{App: a.rec.Spec.Name, Op: op, State: st}
	}
	return e.checkpointTo(a, dir, true)
}

func (e *Engine) checkpointTo(a *app, dir string, leaveRunning bool) error {
	a.mu.Lock()
	ctr := a.ctr
	a.mu.Unlock()
	work, err := os.MkdirTemp(a.dirs.root, "criu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	for attempt := 1; ; attempt++ {
		err = withFrozen(ctr, func() error {
			return inNetns(a.dirs.netns(), func() error {
				opts := criuOpts(dir, work)
				opts.LeaveRunning, opts.TcpEstablished = leaveRunning, true
				return ctr.Checkpoint(opts)
			})
		})
		if err == nil {
			return copyFramebuffer(a.dirs, dir, a.rec.Spec)
		}
		cause := criuLogErrors(filepath.Join(work, "dump.log"))
		if !isTransientDumpError(cause) || attempt == 3 {
			return fmt.Errorf("checkpoint %q: %v%s", a.rec.Spec.Name, err, withCause(cause))
		}
		if isQueuedMessageError(cause) {
			if err := thawToDrain(ctr); err != nil {
				return fmt.Errorf("checkpoint %q: %w", a.rec.Spec.Name, err)
			}
			continue
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
}

// thawToDrain lets a frozen app run for a moment, so that its processes
// read the messages waiting in their sockets, and freezes it again. A
// running app (a snapshot) just gets the moment. The handoff's frozen time
// grows by it, only when a dump caught such a message.
func thawToDrain(ctr *libcontainer.Container) error {
	st, err := ctr.Status()
	if err != nil || st != libcontainer.Paused {
		time.Sleep(50 * time.Millisecond)
		return nil
	}
	if err := ctr.Resume(); err != nil {
		return fmt.Errorf("thaw to let the app read its messages: %w", err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := pause(ctr); err != nil {
		return fmt.Errorf("freeze again after letting the app read its messages: %w; the app keeps running", err)
	}
	return nil
}

// SuspendFrozen turns a frozen app into a suspended one whose checkpoint
// is dir, a complete image DumpFrozen wrote (it is moved into the app's
// place). Its processes end, and with them whatever they held: a handoff
// does this before the destination restores when the app holds locks on
// files the destination may see too (a home on a file server, or the same
// machine), which the restore must take and the frozen copy would hold
// forever. Resume brings the app back here from the image if the handoff
// fails; Stop removes it once the destination runs it.
func (e *Engine) SuspendFrozen(ctx context.Context, name, dir string) error {
	return e.byName(name, func(a *app) error { return e.suspendFrozen(a, dir) })
}

func (e *Engine) suspendFrozen(a *app, dir string) error {
	name := a.rec.Spec.Name
	through, err := checkTransition(name, "suspend frozen", a.info().State)
	if err != nil {
		return err
	}
	size, err := writeSums(dir)
	if err != nil {
		return fmt.Errorf("suspend %q from its final image: %w; it stays frozen", name, err)
	}
	_ = os.RemoveAll(a.dirs.checkpoint())
	if err := moveDir(dir, a.dirs.checkpoint()); err != nil {
		return fmt.Errorf("suspend %q from its final image: %w; it stays frozen", name, err)
	}
	if err := e.to(a, through, nil); err != nil {
		return err
	}
	a.mu.Lock()
	ctr := a.ctr
	a.mu.Unlock()
	if ctr != nil {
		killFrozen(ctr) // returns once every process is gone
	}
	e.to(a, StateSuspended, func(r *record) { r.InitPID, r.ImageBytes, r.Error = 0, size, "" })
	e.tidy(a, func() { e.destroyContainer(a) })
	e.log.Info("app suspended from its final image", "app", name, "image_bytes", size)
	return nil
}

// moveDir renames a directory, or copies it where it cannot be renamed (to
// another file system) and removes the original.
func moveDir(from, to string) error {
	err := os.Rename(from, to)
	if !errors.Is(err, unix.EXDEV) {
		return err
	}
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		_ = os.RemoveAll(to)
		return err
	}
	return os.RemoveAll(from)
}

// ExportUpper writes the app's upper dir (the files it changed or created)
// as a tar stream, plus the base files named in extra (container paths) that
// the destination lacks. The app should be frozen so that files hold still.
func (e *Engine) ExportUpper(ctx context.Context, name string, w io.Writer, extra []string) error {
	a, err := e.lookup(name)
	if err != nil {
		return err
	}
	a.mu.Lock()
	uids, gids := idMaps(a.rec.Spec.User, a.rec.Host)
	a.mu.Unlock()
	return writeUpperTar(a.dirs.upper(), w, e.cfg.Base, extra, func(uid, gid int) (int, int) {
		return toInside(uids, uid), toInside(gids, gid)
	})
}

// Instantiate creates an app from a received image: its spec, its upper dir
// (a tar stream from ExportUpper) and a CRIU image dir. The spec is checked
// like a local one, and its user must have an account here (see
// CanReceive); the app runs as that account. The image dir is moved into
// the app's place; on failure everything received is removed and the error
// says why.
func (e *Engine) Instantiate(ctx context.Context, spec Spec, upper io.Reader, imageDir string) (Info, error) {
	return e.InstantiateFrom(ctx, spec, upper, imageDir, Arrival{})
}

// Arrival says how an app came to this machine: by which handoff, from
// which device. The engine keeps it with the app, so that the answer to
// "does the app of handoff H run here?" survives a restart (see Arrived).
type Arrival struct {
	Handoff string `json:"handoff"`
	From    string `json:"from"`
}

// Arrived returns the app that came by handoff, if it is still here.
func (e *Engine) Arrived(handoff string) (Info, bool) {
	if handoff == "" {
		return Info{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.apps {
		a.mu.Lock()
		arr := a.rec.Arrival
		a.mu.Unlock()
		if arr != nil && arr.Handoff == handoff {
			return a.info(), true
		}
	}
	return Info{}, false
}

// InstantiateFrom is Instantiate for an app that arrived by a handoff.
func (e *Engine) InstantiateFrom(ctx context.Context, spec Spec, upper io.Reader, imageDir string, arrival Arrival) (Info, error) {
	spec.fillDefaults()
	if err := spec.validate(); err != nil {
		return Info{}, fmt.Errorf("receive %w", err)
	}
	if spec.User.IsRoot() {
		return Info{}, fmt.Errorf("receive %q: %w", spec.Name, ErrRootApp)
	}
	if _, err := e.Criu(ctx); err != nil {
		return Info{}, err
	}
	a, err := e.add(spec, StateResuming, true)
	if err != nil {
		return Info{}, fmt.Errorf("receive %q: %w", spec.Name, err)
	}
	if arrival.Handoff != "" {
		a.mu.Lock()
		a.rec.Arrival = &arrival
		a.mu.Unlock()
	}
	defer a.op.Unlock()
	fail := func(err error) (Info, error) {
		e.removeAll(a)
		e.forget(a)
		return Info{}, fmt.Errorf("receive %q: %w", spec.Name, err)
	}
	t0 := time.Now()
	if err := os.Rename(imageDir, a.dirs.checkpoint()); err != nil {
		return fail(fmt.Errorf("take the image: %w", err))
	}
	target, err := e.createForRestore(a, e.startLazyPages(a))
	if err != nil {
		return fail(err)
	}
	uids, gids := idMaps(spec.User, a.rec.Host)
	if err := extractUpperTar(upper, a.dirs.upper(), func(uid, gid int) (int, int) {
		return toHost(uids, uid), toHost(gids, gid)
	}); err != nil {
		target.abandon()
		return fail(err)
	}
	if err := e.prepareUpper(a); err != nil {
		target.abandon()
		return fail(err)
	}
	e.update(a, func(*record) {})
	t1 := time.Now()
	pid, lazy, err := e.restore(a, target)
	if err != nil {
		return fail(err)
	}
	e.dropImages(a, lazy)
	e.log.Debug("instantiate timings", "app", spec.Name, "prepare", t1.Sub(t0), "restore", time.Since(t1))
	e.to(a, StateRunning, func(r *record) { r.InitPID, r.Started = pid, time.Now().UTC() })
	e.log.Info("app received and running", "app", spec.Name, "user", spec.User.Name, "pid", pid)
	e.warmHandles(spec.Name)
	return a.info(), nil
}

// CanReceive says, before anything is sent, whether an app with spec could
// run here: its spec within limits, its user with an account here, not
// root. The error says why not, in words for the sending user.
func (e *Engine) CanReceive(spec Spec) error {
	spec.fillDefaults()
	if err := spec.validate(); err != nil {
		return err
	}
	if spec.User.IsRoot() {
		return ErrRootApp
	}
	if _, err := LookupUser(spec.User.Name, 0); err != nil {
		return err
	}
	if _, err := e.lookup(spec.Name); err == nil {
		return fmt.Errorf("%w: %q", ErrExists, spec.Name)
	}
	return nil
}

// ErrRootApp refuses to move an app that runs as root: it would run as
// root on the other machine too, with whatever a peer put in its image.
var ErrRootApp = errors.New("apps run as root stay on the machine that started them")

// Spec returns the spec an app was started with (the destination needs it).
func (e *Engine) Spec(name string) (Spec, error) {
	a, err := e.lookup(name)
	if err != nil {
		return Spec{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rec.Spec, nil
}

// copyFramebuffer puts a copy of the app's framebuffer into an image dir:
// the display's memory travels with the process memory (see appDirs.fb).
// A copy, not a link: the display keeps drawing into its file while a
// pre-copy image is hashed and sent. The file is the X server's, in a place
// the container can write: it is opened without following links, and no
// more is copied than a framebuffer of the app's display can hold.
func copyFramebuffer(d appDirs, imageDir string, spec Spec) error {
	src, err := openRegularIn(d.fb(), fbName)
	if err != nil {
		return fmt.Errorf("copy the display's framebuffer: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(imageDir, fbImage), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("copy the display's framebuffer: %w", err)
	}
	if _, err := io.Copy(dst, io.LimitReader(src, maxFramebufferBytes(spec))); err != nil {
		dst.Close()
		return fmt.Errorf("copy the display's framebuffer: %w", err)
	}
	return dst.Close()
}

// maxFramebufferBytes bounds an XWD framebuffer of spec's display: 32 bits a
// pixel, plus a header and colour map far larger than Xvfb writes.
func maxFramebufferBytes(spec Spec) int64 {
	return int64(spec.Width)*int64(spec.Height)*4 + 1<<20
}

// placeFramebuffer moves a framebuffer that came in an image dir to where
// the display expects it, owned by the container's root as the X server
// made it. An image without one (a local suspend, where the file never
// left) is fine.
func placeFramebuffer(d appDirs, imageDir string, owner int) error {
	if err := os.MkdirAll(d.fb(), 0o755); err != nil {
		return err
	}
	dst := filepath.Join(d.fb(), fbName)
	err := os.Rename(filepath.Join(imageDir, fbImage), dst)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		// The mode Xvfb gave it (umask 022), which CRIU checks on restore;
		// received image files are made owner-only.
		err = os.Chmod(dst, 0o644)
	}
	if err == nil {
		err = os.Chown(dst, owner, owner)
	}
	if err != nil {
		return fmt.Errorf("put the display's framebuffer in place: %w", err)
	}
	return nil
}

// withFrozen runs dump with the app's cgroup frozen, and thaws it after
// unless it was frozen before. CRIU freezes a running app itself, but it
// checks whether the freeze is done only every 100 ms, and the kernel needs
// microseconds: each dump of a running app (a pre-copy round, a suspend) was
// 100 ms longer, all of it with the app stopped. libcontainer's Pause checks
// at once. CRIU leaves a cgroup it found frozen frozen.
func withFrozen(ctr *libcontainer.Container, dump func() error) error {
	if st, err := ctr.Status(); err != nil || st != libcontainer.Running {
		return dump()
	}
	if err := pause(ctr); err != nil {
		_ = ctr.Resume()
		return dump() // CRIU freezes it then
	}
	err := dump()
	// After a dump that ends the app (a suspend), the container is not
	// paused any more and there is nothing to thaw.
	if st, serr := ctr.Status(); serr == nil && st == libcontainer.Paused {
		if rerr := ctr.Resume(); rerr != nil && err == nil {
			err = fmt.Errorf("thaw after the dump: %w", rerr)
		}
	}
	return err
}

// pause freezes a container, trying again a few times: the cgroup v1
// freezer gives up when the app's threads do not all stop within about
// 200 ms, which happens on a loaded machine (seen here at a load average
// of 6). Each failed try leaves the app thawed.
func pause(ctr *libcontainer.Container) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(25<<attempt) * time.Millisecond)
		}
		if err = ctr.Pause(); err == nil || !strings.Contains(err.Error(), "unable to freeze") {
			return err
		}
	}
	return err
}
