package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/handoff/handoff/engine/handles"
)

// Config tells the engine where things live. Every place is a field so that
// tests can run several engines side by side.
type Config struct {
	StateDir string // app records, upper dirs, checkpoints (e.g. /var/lib/handoff)
	Base     string // read-only lower layer of every app's root; "/" by default
	// OnChange, when set, is called (without locks held) after an app changes
	// state or is removed (then Info.State is empty).
	OnChange func(Info)
	Logger   *slog.Logger
	// EagerRestore turns lazy restores (userfaultfd) off.
	EagerRestore bool
	// BeforeCheckpoint, when set, is called before the engine looks at an
	// app's handles to checkpoint it: the caller closes its own connections
	// into the app (a viewer's X connection), which would block the dump,
	// and reports whether it closed any.
	BeforeCheckpoint func(name string) (closed bool)
	// WarmHandles makes the engine build each new app's handles manifest in
	// the background soon after it starts (or arrives), so that the content
	// hashes of its files are cached by the time it is sent: the daemon's
	// first send of an xterm running python spent ~0.35 s hashing them.
	WarmHandles bool
}

func (e *Engine) beforeCheckpoint(name string) {
	if e.cfg.BeforeCheckpoint != nil && e.cfg.BeforeCheckpoint(name) {
		e.awaitHangUps(name)
	}
}

// hangUpWait bounds how long a checkpoint waits for the app to close its
// ends of the host connections that were just closed.
const hangUpWait = time.Second

// awaitHangUps waits until the app's processes hold no socket of the
// host's network namespace. A host client's connection into the app (a
// viewer's X connection) is accepted into the client's namespace; after the
// client closed it, the X server holds its end until it reads the hangup,
// and CRIU, which runs in the app's namespace, cannot find that socket: the
// dump fails. The X server needs a few milliseconds, unless it is frozen.
func (e *Engine) awaitHangUps(name string) {
	a, err := e.lookup(name)
	if err != nil {
		return
	}
	a.mu.Lock()
	ctr := a.ctr
	a.mu.Unlock()
	if ctr == nil {
		return
	}
	start := time.Now()
	for {
		pids, err := ctr.Processes()
		if err != nil {
			return
		}
		n, err := handles.HostUnixSockets(pids)
		if err != nil || n == 0 {
			e.log.Debug("host connections hung up", "app", name, "waited", time.Since(start), "err", err)
			return
		}
		if time.Since(start) > hangUpWait {
			e.log.Warn("the app still holds connections from this machine; its checkpoint may fail", "app", name, "sockets", n)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Spec is what an app is started with.
type Spec struct {
	Name        string   `json:"name"`
	Args        []string `json:"args"`
	Env         []string `json:"env,omitempty"`
	Width       int      `json:"width"`
	Height      int      `json:"height"`
	Depth       int      `json:"depth"`
	MemoryLimit int64    `json:"memory_limit"` // bytes
}

// Defaults for a Spec's zero fields.
const (
	DefaultWidth       = 1280
	DefaultHeight      = 800
	DefaultDepth       = 24
	DefaultMemoryLimit = 4 << 30
)

func (s *Spec) fillDefaults() {
	if s.Width == 0 {
		s.Width = DefaultWidth
	}
	if s.Height == 0 {
		s.Height = DefaultHeight
	}
	if s.Depth == 0 {
		s.Depth = DefaultDepth
	}
	if s.MemoryLimit == 0 {
		s.MemoryLimit = DefaultMemoryLimit
	}
}

// Info is the public view of an app.
type Info struct {
	Name        string    `json:"name"`
	State       State     `json:"state"`
	PID         int       `json:"pid,omitempty"` // host PID of the container's init
	Command     []string  `json:"command"`
	Created     time.Time `json:"created"`
	Started     time.Time `json:"started,omitzero"` // last time it started running (run or resume)
	MemoryBytes int64     `json:"memory_bytes,omitempty"`
	ImageBytes  int64     `json:"image_bytes,omitempty"` // size of the checkpoint while suspended
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	Error       string    `json:"error,omitempty"` // the last failure, in words
}

// record is what the engine persists per app.
type record struct {
	Spec       Spec      `json:"spec"`
	State      State     `json:"state"`
	Created    time.Time `json:"created"`
	Started    time.Time `json:"started,omitzero"`
	InitPID    int       `json:"init_pid,omitempty"`
	ImageBytes int64     `json:"image_bytes,omitempty"`
	Error      string    `json:"error,omitempty"`
}

type app struct {
	op   sync.Mutex // serialises lifecycle operations
	mu   sync.Mutex // guards rec, ctr and tidying
	dirs appDirs
	rec  record
	ctr  *libcontainer.Container
	// tidying is closed when background cleanup after the last operation
	// (removing a dumped container, a used checkpoint) is done; the next
	// operation waits for it.
	tidying chan struct{}
}

// tidy runs cleanup that the user need not wait for, after an operation
// whose result is already final. The app's next operation waits for it.
func (e *Engine) tidy(a *app, f func()) {
	done := make(chan struct{})
	a.mu.Lock()
	prev := a.tidying
	a.tidying = done
	a.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(done)
		if prev != nil {
			<-prev
		}
		f()
	}()
}

// begin starts a lifecycle operation on the named app: it takes the app's
// operation lock and waits for its background cleanup. Call end when done.
func (e *Engine) begin(name string) (a *app, end func(), err error) {
	a, err = e.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	a.op.Lock()
	a.settle()
	return a, a.op.Unlock, nil
}

// beginIn is begin for operations allowed in one state only.
func (e *Engine) beginIn(name, op string, want State) (*app, func(), error) {
	a, end, err := e.begin(name)
	if err != nil {
		return nil, nil, err
	}
	if st := a.info().State; st != want {
		end()
		return nil, nil, &StateError{App: name, Op: op, State: st}
	}
	return a, end, nil
}

// settle waits for an app's background cleanup.
func (a *app) settle() {
	a.mu.Lock()
	t := a.tidying
	a.mu.Unlock()
	if t != nil {
		<-t
	}
}

// Engine owns the app containers of one daemon.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	runcRoot string
	cgroup   string // parent cgroup path of this engine's apps

	mu   sync.Mutex
	apps map[string]*app

	hashes *handles.HashCache // content hashes of base-layer files, kept across manifests

	criuOnce sync.Once
	criu     CriuInfo
	criuErr  error

	warmup kernelWarmup

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// ValidName reports whether name can name an app.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// New opens the state dir, re-adopts apps whose containers still run and lists
// suspended ones.
func New(cfg Config) (*Engine, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("engine: no state dir")
	}
	if cfg.Base == "" {
		cfg.Base = "/"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	abs, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	cfg.StateDir = abs
	for _, d := range []string{filepath.Join(abs, "apps"), filepath.Join(abs, "runc")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("engine: create %s: %w", d, err)
		}
	}
	sum := sha256.Sum256([]byte(abs))
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "engine"),
		runcRoot: filepath.Join(abs, "runc"),
		cgroup:   "/handoff/" + hex.EncodeToString(sum[:4]),
		apps:     map[string]*app{},
		hashes:   handles.NewHashCache(),
		ctx:      ctx,
		cancel:   cancel,
	}
	if err := e.adoptAll(); err != nil {
		cancel()
		return nil, err
	}
	e.prepareCriu()
	return e, nil
}

// Close stops watching the apps. Running apps keep running: a restarted
// daemon re-adopts them.
func (e *Engine) Close() error {
	e.cancel()
	e.wg.Wait()
	return nil
}

// Criu probes CRIU once and returns what it found.
func (e *Engine) Criu(ctx context.Context) (CriuInfo, error) {
	e.criuOnce.Do(func() { e.criu, e.criuErr = ProbeCriu(ctx) })
	return e.criu, e.criuErr
}

// StateDir is where the engine keeps its state.
func (e *Engine) StateDir() string { return e.cfg.StateDir }

func (e *Engine) dirsOf(name string) appDirs {
	return appDirs{root: filepath.Join(e.cfg.StateDir, "apps", name)}
}

func (e *Engine) lookup(name string) (*app, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.apps[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (see `handoff ls`)", ErrNotFound, name)
	}
	return a, nil
}

// List returns every app, sorted by name.
func (e *Engine) List() []Info {
	e.mu.Lock()
	apps := make([]*app, 0, len(e.apps))
	for _, a := range e.apps {
		apps = append(apps, a)
	}
	e.mu.Unlock()
	out := make([]Info, 0, len(apps))
	for _, a := range apps {
		out = append(out, a.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one app.
func (e *Engine) Get(name string) (Info, error) {
	a, err := e.lookup(name)
	if err != nil {
		return Info{}, err
	}
	return a.info(), nil
}

func (a *app) info() Info {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rec
	in := Info{
		Name: r.Spec.Name, State: r.State, Command: r.Spec.Args, Created: r.Created,
		Width: r.Spec.Width, Height: r.Spec.Height, Error: r.Error,
	}
	if r.State == StateRunning || r.State == StateFrozen {
		in.PID = r.InitPID
		in.Started = r.Started
		if a.ctr != nil {
			if st, err := a.ctr.Stats(); err == nil && st.CgroupStats != nil {
				in.MemoryBytes = int64(st.CgroupStats.MemoryStats.Usage.Usage)
			}
		}
	}
	if r.State == StateSuspended {
		in.ImageBytes = r.ImageBytes
	}
	return in
}

// update changes an app's record under its lock, persists it and notifies.
func (e *Engine) update(a *app, f func(r *record)) {
	a.mu.Lock()
	f(&a.rec)
	rec := a.rec
	a.mu.Unlock()
	if err := writeJSONAtomic(a.dirs.record(), rec); err != nil {
		e.log.Error("persist app state", "app", rec.Spec.Name, "err", err)
	}
	if e.cfg.OnChange != nil {
		e.cfg.OnChange(a.info())
	}
}

func (e *Engine) forget(a *app) {
	e.mu.Lock()
	delete(e.apps, a.rec.Spec.Name)
	last := len(e.apps) == 0
	e.mu.Unlock()
	if last {
		e.removeCgroupParents()
	}
	if e.cfg.OnChange != nil {
		e.cfg.OnChange(Info{Name: a.rec.Spec.Name})
	}
}

// Run starts an app in a new container and returns once its display is up.
func (e *Engine) Run(ctx context.Context, spec Spec) (Info, error) {
	spec.fillDefaults()
	if !ValidName(spec.Name) {
		return Info{}, fmt.Errorf("%w %q: use letters, digits, '.', '_' or '-' (at most 63)", ErrInvalidName, spec.Name)
	}
	if len(spec.Args) == 0 {
		return Info{}, fmt.Errorf("run %q: %w: no command given", spec.Name, ErrInvalidSpec)
	}
	if spec.Width < 64 || spec.Height < 64 || spec.Width > 8192 || spec.Height > 8192 || (spec.Depth != 24 && spec.Depth != 16) {
		return Info{}, fmt.Errorf("run %q: %w: display %dx%dx%d is out of range (64–8192 pixels, depth 16 or 24)", spec.Name, ErrInvalidSpec, spec.Width, spec.Height, spec.Depth)
	}
	if spec.MemoryLimit < 64<<20 {
		return Info{}, fmt.Errorf("run %q: %w: memory limit %d is below 64 MiB", spec.Name, ErrInvalidSpec, spec.MemoryLimit)
	}
	a := &app{dirs: e.dirsOf(spec.Name), rec: record{Spec: spec, State: StateStarting, Created: time.Now().UTC()}}
	e.mu.Lock()
	if _, ok := e.apps[spec.Name]; ok {
		e.mu.Unlock()
		return Info{}, fmt.Errorf("run %q: %w; pick another name or `handoff stop %s` first", spec.Name, ErrExists, spec.Name)
	}
	e.apps[spec.Name] = a
	e.mu.Unlock()
	a.op.Lock()
	defer a.op.Unlock()

	if err := os.MkdirAll(a.dirs.root, 0o700); err != nil {
		e.forget(a)
		return Info{}, fmt.Errorf("run %q: %w", spec.Name, err)
	}
	e.update(a, func(*record) {})
	if err := e.start(ctx, a); err != nil {
		e.removeAll(a)
		e.forget(a)
		return Info{}, fmt.Errorf("run %q: %w", spec.Name, err)
	}
	e.warmHandles(spec.Name)
	return a.info(), nil
}

// warmDelay lets an app finish starting (open its files, connect to its
// display) before its handles are looked at for WarmHandles.
const warmDelay = time.Second

func (e *Engine) warmHandles(name string) {
	if !e.cfg.WarmHandles {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(warmDelay):
		}
		if _, err := e.Handles(e.ctx, name); err != nil {
			e.log.Debug("warming the handles cache", "app", name, "err", err)
		}
	}()
}

func (e *Engine) cgroupPath(name string) string { return e.cgroup + "/" + name }

// start creates the container and runs the init; the app is running when
// its framebuffer exists.
func (e *Engine) start(ctx context.Context, a *app) error {
	spec := a.rec.Spec
	if _, err := os.Stat(filepath.Join(e.cfg.Base, "usr/bin/Xvfb")); err != nil {
		return errors.New("Xvfb is not installed in the base system (apt-get install xvfb)")
	}
	if err := prepareRootfs(a.dirs, e.cfg.Base); err != nil {
		return err
	}
	if err := createNetns(a.dirs.netns()); err != nil {
		return err
	}
	cfg := containerConfig(spec.Name, a.dirs, e.cgroupPath(spec.Name), spec)
	ctr, err := libcontainer.Create(e.runcRoot, spec.Name, cfg)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	a.mu.Lock()
	a.ctr = ctr
	a.mu.Unlock()
	proc := &libcontainer.Process{
		Args: append([]string{"/bin/sh", initPath}, spec.Args...),
		Env:  containerEnv(spec),
		Cwd:  "/",
		Init: true,
	}
	if err := ctr.Run(proc); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	pid, err := proc.Pid()
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	e.watch(a, pid, proc)
	if err := waitDisplay(ctx, pid); err != nil {
		return fmt.Errorf("%w%s", err, a.logTail())
	}
	e.update(a, func(r *record) {
		r.State, r.InitPID, r.Started, r.Error = StateRunning, pid, time.Now().UTC(), ""
	})
	e.log.Info("app running", "app", spec.Name, "pid", pid, "cmd", spec.Args)
	return nil
}

// FramebufferPath is the host path of the app's framebuffer (an XWD file kept
// current by the app's Xvfb). It exists while the app runs.
func (e *Engine) FramebufferPath(name string) (string, error) {
	a, err := e.lookup(name)
	if err != nil {
		return "", err
	}
	in := a.info()
	if in.State != StateRunning && in.State != StateFrozen {
		return "", &StateError{App: name, Op: "show", State: in.State}
	}
	return framebufferPath(in.PID), nil
}

// DisplaySocket is the host path of the app's X server socket.
func (e *Engine) DisplaySocket(name string) (string, error) {
	fb, err := e.FramebufferPath(name)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(fb, fbFile) + "/tmp/.X11-unix/X1", nil
}

func framebufferPath(pid int) string {
	return fmt.Sprintf("/proc/%d/root%s", pid, fbFile)
}

func waitDisplay(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	fb := framebufferPath(pid)
	sock := fmt.Sprintf("/proc/%d/root/tmp/.X11-unix/X1", pid)
	for {
		if err := unix.Kill(pid, 0); err != nil {
			return errors.New("the app's container ended while starting")
		}
		if _, err := os.Stat(fb); err == nil {
			if _, err := os.Stat(sock); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the app's display did not come up: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// logTail returns the end of the container's init log, for error messages.
func (a *app) logTail() string {
	a.mu.Lock()
	pid := a.rec.InitPID
	a.mu.Unlock()
	if pid == 0 {
		return ""
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s/init.log", pid, handoffDir))
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > 400 {
		data = data[len(data)-400:]
	}
	return "; container log: " + strings.TrimSpace(string(data))
}

// Stop ends the app and removes its container, mounts, cgroup and files.
func (e *Engine) Stop(ctx context.Context, name string) error {
	a, end, err := e.begin(name)
	if err != nil {
		return err
	}
	defer end()
	cur := a.info().State
	if _, err := checkTransition(name, "stop", cur); err != nil {
		return err
	}
	e.update(a, func(r *record) { r.State = StateStopping })
	if cur == StateRunning || cur == StateStarting {
		e.terminate(ctx, a)
	}
	e.removeAll(a)
	e.forget(a)
	e.log.Info("app stopped", "app", name)
	return nil
}

// terminate asks the container's init to end the app, and kills it if it
// does not within a few seconds. It signals the init through a pidfd: the
// PID cannot be reused under us, and it works the same for a container this
// daemon started, restored or re-adopted.
func (e *Engine) terminate(ctx context.Context, a *app) {
	a.mu.Lock()
	pid := a.rec.InitPID
	a.mu.Unlock()
	if pid == 0 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // already gone
	}
	defer unix.Close(fd)
	_ = unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && pidAlive(pid) {
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if pidAlive(pid) {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		for i := 0; i < 100 && pidAlive(pid); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func pidAlive(pid int) bool {
	if unix.Kill(pid, 0) != nil {
		return false
	}
	// A zombie still answers kill(0); it is gone for our purposes.
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// destroyContainer removes the container's cgroup and runc state, killing what
// is left, and unmounts its root.
func (e *Engine) destroyContainer(a *app) {
	a.mu.Lock()
	ctr := a.ctr
	a.ctr = nil
	a.mu.Unlock()
	if ctr != nil {
		killFrozen(ctr)
		if err := ctr.Destroy(); err != nil {
			e.log.Warn("destroy container", "app", a.rec.Spec.Name, "err", err)
		}
	}
	if err := unmountRootfs(a.dirs); err != nil {
		e.log.Warn("unmount root", "app", a.rec.Spec.Name, "err", err)
	}
	if err := removeNetns(a.dirs.netns()); err != nil {
		e.log.Warn("remove network namespace", "app", a.rec.Spec.Name, "err", err)
	}
}

// removeCgroupParents removes this engine's parent cgroup (and the shared
// "handoff" one when empty) in every hierarchy, by the names the engine gave
// them. A busy or missing directory is left alone.
func (e *Engine) removeCgroupParents() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + e.cgroup)
	if v2 := "/sys/fs/cgroup" + e.cgroup; dirExists(v2) {
		dirs = append(dirs, v2)
	}
	for _, d := range dirs {
		if unix.Rmdir(d) == nil {
			_ = unix.Rmdir(filepath.Dir(d)) // "handoff", if no other engine uses it
		}
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// killFrozen ends a frozen container's processes: libcontainer refuses to
// destroy a paused container whose init lives, and a frozen process cannot
// act on SIGKILL. Killing first and thawing second means the kill lands
// before any app code runs again (a released app must not run twice).
func killFrozen(ctr *libcontainer.Container) {
	if st, err := ctr.Status(); err != nil || st != libcontainer.Paused {
		return
	}
	pids, _ := ctr.Processes()
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	_ = ctr.Resume()
	for _, pid := range pids {
		for i := 0; i < 200 && pidAlive(pid); i++ {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// removeAll destroys the container and deletes the app's directory.
func (e *Engine) removeAll(a *app) {
	e.destroyContainer(a)
	if err := os.RemoveAll(a.dirs.root); err != nil {
		e.log.Warn("remove app dir", "app", a.rec.Spec.Name, "err", err)
	}
}

// watch notices when a container's init ends by itself.
func (e *Engine) watch(a *app, pid int, proc *libcontainer.Process) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if proc != nil {
			done := make(chan struct{})
			go func() { _, _ = proc.Wait(); close(done) }()
			select {
			case <-done:
			case <-e.ctx.Done():
				return
			}
		} else if !waitPidfd(e.ctx, pid) {
			return
		}
		e.initExited(a, pid)
	}()
}

func (e *Engine) initExited(a *app, pid int) {
	// A lifecycle operation in progress (suspend, stop) owns the exit.
	a.op.Lock()
	defer a.op.Unlock()
	a.mu.Lock()
	current := a.rec.InitPID == pid && (a.rec.State == StateRunning || a.rec.State == StateStarting)
	a.mu.Unlock()
	if !current {
		return
	}
	e.log.Info("app exited", "app", a.rec.Spec.Name, "pid", pid)
	e.destroyContainer(a)
	e.update(a, func(r *record) { r.State, r.InitPID = StateExited, 0 })
}

// waitPidfd waits for a process that is not our child to end; it returns
// false when ctx ends first.
func waitPidfd(ctx context.Context, pid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true // already gone
	}
	defer unix.Close(fd)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 200)
		if n > 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
