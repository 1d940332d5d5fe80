package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
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
	User        User     `json:"user"` // whom it runs as
	Width       int      `json:"width"`
	Height      int      `json:"height"`
	Depth       int      `json:"depth"`
	MemoryLimit int64    `json:"memory_limit"`   // bytes
	Pids        int64    `json:"pids,omitempty"` // most processes and threads at once
	CPUs        float64  `json:"cpus,omitempty"` // CPU time, in CPUs; 0: no quota
	// NoSound leaves out the app's sound server (see sound.go).
	NoSound bool `json:"no_sound,omitempty"`
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
	if s.Pids == 0 {
		s.Pids = DefaultPids
	}
}

// reservedEnv are variables an app's spec may not set: the container's init
// reads them as root of the container, before it drops to the app's user.
var reservedEnv = []string{"HANDOFF_", "LD_"}

// validate checks a spec from anywhere (a local caller, or a peer's offer)
// against the limits every app has, with words that say what to change.
func (s *Spec) validate() error {
	if !ValidName(s.Name) {
		return fmt.Errorf("%w %q: use letters, digits, '.', '_' or '-' (at most 63)", ErrInvalidName, s.Name)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%q: %w: %s", s.Name, ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	if len(s.Args) == 0 {
		return bad("no command given")
	}
	if s.Width < 64 || s.Height < 64 || s.Width > 8192 || s.Height > 8192 || (s.Depth != 24 && s.Depth != 16) {
		return bad("display %dx%dx%d is out of range (64–8192 pixels, depth 16 or 24)", s.Width, s.Height, s.Depth)
	}
	if s.MemoryLimit < 64<<20 || s.MemoryLimit > 1<<40 {
		return bad("memory limit %d is out of range (64 MiB to 1 TiB)", s.MemoryLimit)
	}
	if s.Pids < 16 || s.Pids > 1<<20 {
		return bad("process limit %d is out of range (16 to 1048576)", s.Pids)
	}
	if s.CPUs < 0 || s.CPUs > 1024 {
		return bad("CPU limit %g is out of range (0: none, up to 1024)", s.CPUs)
	}
	for _, kv := range s.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return bad("environment entry %q is not NAME=VALUE", kv)
		}
		for _, r := range reservedEnv {
			if strings.HasPrefix(name, r) {
				return bad("the environment variable %s is reserved", name)
			}
		}
	}
	u := s.User
	if !validUserName(u.Name) {
		return bad("no valid user (%q)", u.Name)
	}
	if u.UID < 0 || u.GID < 0 || u.UID == overflowID || (u.UID == 0) != (u.Name == "root") {
		return bad("user %s has ids out of range (uid %d, gid %d)", u.Name, u.UID, u.GID)
	}
	if !filepath.IsAbs(u.Home) || filepath.Clean(u.Home) != u.Home || u.Home == "/" {
		return bad("user %s has no usable home (%q)", u.Name, u.Home)
	}
	if len(u.Groups) > idBlock-1 {
		return bad("user %s is in %d groups; an app may keep at most %d", u.Name, len(u.Groups), idBlock-1)
	}
	for _, g := range u.Groups {
		if g.GID < 0 || g.GID == overflowID || !validUserName(g.Name) {
			return bad("group %q (%d) of user %s is out of range", g.Name, g.GID, u.Name)
		}
	}
	return nil
}

var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}\$?$`)

func validUserName(n string) bool { return userNameRE.MatchString(n) }

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
	User        string    `json:"user"`            // whose app it is
	Error       string    `json:"error,omitempty"` // the last failure, in words
}

// record is what the engine persists per app.
type record struct {
	Spec       Spec      `json:"spec"`
	Host       hostIDs   `json:"host"` // the app's user on this machine
	Arrival    *Arrival  `json:"arrival,omitempty"`
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
	// homeWatch notes what the app writes in its user's home while it
	// runs here (see HomeFiles).
	homeWatch *homeWatch
	// handingTo names the device a handoff is moving the app to; while
	// it is set, only that handoff acts on the app (see Outgoing).
	handingTo string
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
	end = a.hold()
	a.mu.Lock()
	to := a.handingTo
	a.mu.Unlock()
	if to != "" {
		end()
		return nil, nil, fmt.Errorf("%q: %w: it is being handed to %s", name, ErrBusy, to)
	}
	return a, end, nil
}

// hold takes the app's operation lock once its background cleanup is done;
// the returned func lets go.
func (a *app) hold() (end func()) {
	a.op.Lock()
	a.settle()
	return a.op.Unlock
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
	idBase   int    // the first host id of this engine's apps' blocks (userns.go)

	mu   sync.Mutex
	apps map[string]*app

	hashes *handles.HashCache // content hashes of base-layer files, kept across manifests
	sync   *syncRecords       // when users' files were last synced with other machines

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
	if err := makeStateDirs(abs); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(abs))
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "engine"),
		runcRoot: filepath.Join(abs, "runc"),
		cgroup:   "/handoff/" + hex.EncodeToString(sum[:4]),
		idBase:   idBase + int(binary.BigEndian.Uint16(sum[4:6])%idEngines)*idApps*idBlock,
		apps:     map[string]*app{},
		hashes:   handles.NewHashCache(),
		sync:     &syncRecords{dir: filepath.Join(abs, "home-sync")},
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
	e.mu.Lock()
	apps := make([]*app, 0, len(e.apps))
	for _, a := range e.apps {
		apps = append(apps, a)
	}
	e.mu.Unlock()
	for _, a := range apps {
		a.mu.Lock()
		w := a.homeWatch
		a.homeWatch = nil
		a.mu.Unlock()
		if w != nil {
			w.stop()
		}
	}
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
		Width: r.Spec.Width, Height: r.Spec.Height, User: r.Spec.User.Name, Error: r.Error,
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

// to moves an app to state, and changes its record with f (may be nil), if
// the lifecycle allows the move; it persists and notifies as update does.
// A move the table does not allow is a bug: it is refused and logged.
func (e *Engine) to(a *app, state State, f func(r *record)) error {
	a.mu.Lock()
	from := a.rec.State
	a.mu.Unlock()
	if !mayMove(from, state) {
		err := fmt.Errorf("%q: %w: from %s to %s", a.rec.Spec.Name, ErrWrongState, from, state)
		e.log.Error("illegal lifecycle move", "err", err)
		return err
	}
	e.update(a, func(r *record) {
		r.State = state
		if f != nil {
			f(r)
		}
	})
	return nil
}

// update changes an app's record (never its state: see to) under its lock,
// persists it and notifies.
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
		e.cfg.OnChange(Info{Name: a.rec.Spec.Name, User: a.rec.Spec.User.Name})
	}
}

// Run starts an app in a new container and returns once its display is up.
// The spec names its user (see LookupUser), who must have an account here.
// The launch profile of its executable, if any, is applied (profiles.go).
func (e *Engine) Run(ctx context.Context, spec Spec) (Info, error) {
	spec.fillDefaults()
	if p := applyProfile(&spec); p != "" {
		e.log.Info("launch profile applied", "app", spec.Name, "profile", p, "args", spec.Args, "env", spec.Env)
	}
	if err := spec.validate(); err != nil {
		return Info{}, fmt.Errorf("run %w", err)
	}
	a, err := e.add(spec, StateStarting, false)
	if err != nil {
		return Info{}, fmt.Errorf("run %q: %w", spec.Name, err)
	}
	defer a.op.Unlock()
	e.update(a, func(*record) {})
	if err := e.start(ctx, a); err != nil {
		e.removeAll(a)
		e.forget(a)
		return Info{}, fmt.Errorf("run %q: %w", spec.Name, err)
	}
	e.warmHandles(spec.Name)
	return a.info(), nil
}

// add registers a new app in state with its user's account here and a
// block of ids of its own, and returns it with its operation lock held.
func (e *Engine) add(spec Spec, state State, arriving bool) (*app, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.apps[spec.Name]; ok {
		return nil, fmt.Errorf("%w; pick another name or `handoff stop %s` first", ErrExists, spec.Name)
	}
	used := map[int]bool{}
	for _, o := range e.apps {
		used[o.rec.Host.Root] = true
	}
	root := -1
	for i := 0; i < idApps; i++ {
		if id := e.idBase + i*idBlock; !used[id] {
			root = id
			break
		}
	}
	if root < 0 {
		return nil, fmt.Errorf("too many apps: at most %d", idApps)
	}
	host, err := resolveHost(spec.User, root)
	if err != nil {
		return nil, err
	}
	if spec.User.UID != host.UID && !arriving {
		return nil, fmt.Errorf("user %s has uid %d here, not %d", spec.User.Name, host.UID, spec.User.UID)
	}
	a := &app{dirs: e.dirsOf(spec.Name), rec: record{Spec: spec, Host: host, State: state, Created: time.Now().UTC()}}
	e.apps[spec.Name] = a
	a.op.Lock()
	if err := makeAppDirs(a.dirs, a.containerRoot()); err != nil {
		a.op.Unlock()
		delete(e.apps, spec.Name)
		_ = os.RemoveAll(a.dirs.root)
		return nil, err
	}
	return a, nil
}

// containerRoot is the host id of the container's root.
func (a *app) containerRoot() int {
	if a.rec.Spec.User.IsRoot() {
		return 0
	}
	return a.rec.Host.Root
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
// its display is up.
func (e *Engine) start(ctx context.Context, a *app) error {
	spec := a.rec.Spec
	if _, err := os.Stat(filepath.Join(e.cfg.Base, "usr/bin/Xvfb")); err != nil {
		return errors.New("the base system has no Xvfb (apt-get install xvfb)")
	}
	if err := e.prepareRoot(a); err != nil {
		return err
	}
	if err := createNetns(a.dirs.netns()); err != nil {
		return err
	}
	if err := mountSysfs(a.dirs); err != nil {
		return err
	}
	cfg, err := containerConfig(spec.Name, a.dirs, e.cgroupPath(spec.Name), spec, a.rec.Host)
	if err != nil {
		return err
	}
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
	if err := e.waitDisplay(ctx, a, pid); err != nil {
		return fmt.Errorf("%w%s", err, a.logTail())
	}
	e.to(a, StateRunning, func(r *record) {
		r.InitPID, r.Started, r.Error = pid, time.Now().UTC(), ""
	})
	e.watchHome(a, pid)
	e.log.Info("app running", "app", spec.Name, "user", spec.User.Name, "pid", pid, "cmd", spec.Args)
	return nil
}

// prepareRoot puts the app's root filesystem in place: the container's
// own files in its upper dir, then the overlay.
func (e *Engine) prepareRoot(a *app) error {
	if err := e.prepareUpper(a); err != nil {
		return err
	}
	return mountOverlay(a.dirs, e.cfg.Base)
}

// prepareUpper writes the container's own files into the app's upper dir.
func (e *Engine) prepareUpper(a *app) error {
	return prepareUpper(a.dirs.upper(), upperLayout{
		user: a.rec.Spec.User, host: a.rec.Host, base: e.cfg.Base,
		stateDir: stateDirInBase(e.cfg.Base, e.cfg.StateDir),
	})
}

// waitDisplay waits until the app's X server has made its framebuffer and
// its socket, looking at the host's side of both, not through the app's root.
func (e *Engine) waitDisplay(ctx context.Context, a *app, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if err := unix.Kill(pid, 0); err != nil {
			return errors.New("the app's container ended while starting")
		}
		if fbReady(a.dirs) && displayReady(a.dirs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the app's display did not come up: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop ends the app and removes its container, mounts, cgroup and files.
func (e *Engine) Stop(ctx context.Context, name string) error {
	return e.byName(name, func(a *app) error { return e.stop(ctx, a) })
}

func (e *Engine) stop(ctx context.Context, a *app) error {
	name := a.rec.Spec.Name
	cur := a.info().State
	if _, err := checkTransition(name, "stop", cur); err != nil {
		return err
	}
	e.to(a, StateStopping, nil)
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
	ctr, w := a.ctr, a.homeWatch
	a.ctr, a.homeWatch = nil, nil
	a.mu.Unlock()
	if w != nil {
		w.stop()
	}
	if ctr != nil {
		killFrozen(ctr)
		if err := ctr.Destroy(); err != nil {
			e.log.Warn("destroy container", "app", a.rec.Spec.Name, "err", err)
		}
	}
	if err := unmountAll(a.dirs); err != nil {
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
	e.to(a, StateExited, func(r *record) { r.InitPID = 0 })
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
