package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	libseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	_ "github.com/opencontainers/cgroups/devices" // device rules for the cgroup manager
)

// Paths inside every app container.
const (
	containerDisplay = ":1"
	handoffDir       = "/tmp/.handoff"    // in the upper dir: travels with it
	fbDir            = handoffDir + "/fb" // Xvfb -fbdir, bind-mounted from appDirs.fb
	fbName           = "Xvfb_screen0"     // XWD image Xvfb keeps up to date
	fbFile           = fbDir + "/" + fbName
	initPath         = "/.handoff/init" // in the upper dir: travels with it
	initLogPath      = handoffDir + "/init.log"
	appLogPath       = handoffDir + "/app.log"
	displaySocket    = "/tmp/.X11-unix/X1"
)

// initScript is the container's PID 1. It runs as the container's root (an
// unprivileged id of its own outside, see userns.go), keeps every stdio
// handle inside the container (a handle to a host file would make the dump
// fail), starts the app's sound server (see sound.go) and the private X
// server, waits for the X server's socket and runs the app
// as its user, with no capabilities and no way to gain any; it ends
// everything when the app ends. The TERM trap matters: a PID-namespace init
// ignores signals it has no handler for, and `handoff stop` asks politely
// first. /dev/shm is a directory of /dev's tmpfs, not a tmpfs of its own:
// CRIU archives and unpacks every tmpfs on each dump and restore (~7 ms
// each). It waits with the wait builtin, never by polling with sleep: dash
// vforks commands, and a dump that lands while the shell waits for a
// vforked child finds it in state D, which CRIU cannot seize (it failed 1
// in ~40 suspends).
const initScript = `#!/bin/sh
exec </dev/null >>` + initLogPath + ` 2>&1
mkdir -p -m 1777 /dev/shm
trap 'kill -TERM $app $xvfb $sound 2>/dev/null' TERM INT
` + soundServer + `
Xvfb ` + containerDisplay + ` -screen 0 "$HANDOFF_SCREEN" -fbdir ` + fbDir + ` -nolisten tcp -noreset &
xvfb=$!
i=0
while [ ! -S ` + displaySocket + ` ] && [ $i -lt 200 ]; do sleep 0.025; i=$((i+1)); done
` + soundWait + `
cd "$HOME" 2>/dev/null || cd /
if [ -n "$HANDOFF_UID" ]; then
	if [ -n "$HANDOFF_GROUPS" ]; then groups="--groups=$HANDOFF_GROUPS"; else groups=--clear-groups; fi
	DISPLAY=` + containerDisplay + ` setpriv --reuid="$HANDOFF_UID" --regid="$HANDOFF_GID" $groups \
		--inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs "$@" >>` + appLogPath + ` 2>&1 &
else
	DISPLAY=` + containerDisplay + ` "$@" >>` + appLogPath + ` 2>&1 &
fi
app=$!
while kill -0 $app 2>/dev/null; do wait $app; done
kill -TERM $xvfb $sound 2>/dev/null
exit 0
`

// rootCaps is what the container's root keeps, inside its own user
// namespace only: enough to set up /dev/shm, run the X server and start the
// app as its user. The app itself keeps none.
var rootCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETPCAP",
	// The X server attaches the app's MIT-SHM segments, which belong to
	// the app's user.
	"CAP_IPC_OWNER",
}

// rootAppCaps is runc's default set, for an app root started as root.
var rootAppCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// maskedFiles are runc's masked files, hidden behind /dev/null. runc also
// masks /proc/acpi, /proc/asound and /proc/scsi with tmpfs mounts, which
// CRIU would archive and unpack on every dump and restore; in the app's own
// user namespace nothing there is writable, and what is readable is the
// kind of machine the app runs on.
var maskedFiles = []string{
	"/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug",
}

// maskedDirs are hidden behind an empty directory (a bind mount CRIU only
// records): the host's firmware tables and power counters.
var maskedDirs = []string{"/sys/firmware", "/sys/devices/virtual/powercap"}

// appDirs are an app's places in the state dir.
type appDirs struct{ root string }

func (d appDirs) record() string     { return filepath.Join(d.root, "app.json") }
func (d appDirs) upper() string      { return filepath.Join(d.root, "upper") }
func (d appDirs) work() string       { return filepath.Join(d.root, "work") }
func (d appDirs) rootfs() string     { return filepath.Join(d.root, "rootfs") }
func (d appDirs) checkpoint() string { return filepath.Join(d.root, "checkpoint") }
func (d appDirs) criuWork() string   { return filepath.Join(d.root, "criu") }
func (d appDirs) criuConf() string   { return filepath.Join(d.root, "criu.conf") }
func (d appDirs) netns() string      { return filepath.Join(d.root, "netns") }
func (d appDirs) empty() string      { return filepath.Join(d.root, "empty") }

// sys holds a sysfs of the app's network namespace, bind-mounted at /sys.
// A sysfs can only be mounted by the owner of the network namespace it
// shows, which is this daemon (see netns.go), not the app's user namespace.
func (d appDirs) sys() string { return filepath.Join(d.root, "sys") }

// fb holds the display's framebuffer, bind-mounted at fbDir. On the
// container's tmpfs CRIU would gzip it into every dump and unpack it on every
// restore (at 1024×768, 40 ms of the frozen dump and 27 ms of the restore,
// more at larger sizes); outside, it travels in the image dir as
// fbImage, page by page like memory, so only what changed is sent.
func (d appDirs) fb() string { return filepath.Join(d.root, "fb") }

// fbImage is the framebuffer's name in an image dir. Named like CRIU's page
// images so that engine/delta cuts it into pages; CRIU only opens the
// pages-<id>.img its pagemaps name, so it ignores it.
const fbImage = "pages-handoff-framebuffer.img"

// criuConfig holds CRIU options libcontainer has no field for; it reaches
// CRIU through the container's org.criu.config label. Files deleted while
// open travel in the image as "ghosts", limited to 1 MiB each by default.
const criuConfig = "ghost-limit 256M\nnetwork-lock skip\n"

// makeAppDirs makes the directories of an app's place in the state dir. The
// container's root must be able to pass through the app's dir to reach its
// root filesystem and images (CRIU restores from inside the app's user
// namespace): the dir is searchable by the app's root group only.
func makeAppDirs(d appDirs, containerRoot int) error {
	if err := os.MkdirAll(d.root, 0o710); err != nil {
		return err
	}
	if err := os.Chown(d.root, 0, containerRoot); err != nil {
		return err
	}
	if err := os.Chmod(d.root, 0o710); err != nil {
		return err
	}
	for _, dir := range []string{d.upper(), d.work(), d.rootfs(), d.sys()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	// What a masked dir shows: nothing, to anyone.
	if err := os.MkdirAll(d.empty(), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(d.empty(), 0o755); err != nil {
		return err
	}
	// Xvfb, the container's root, writes the framebuffer here.
	if err := os.MkdirAll(d.fb(), 0o755); err != nil {
		return err
	}
	if err := os.Chown(d.fb(), containerRoot, containerRoot); err != nil {
		return err
	}
	return os.WriteFile(d.criuConf(), []byte(criuConfig), 0o600)
}

// mountOverlay mounts the app's root. index=on,nfs_export=on make the
// overlay's file handles openable: an inotify watch on a directory of the
// base (a D-Bus daemon's service dirs, GIO's file monitors: every GTK app
// has some) carries an overlay file handle, and CRIU dumps the watch by
// opening that handle to learn the path. Without it CRIU falls back to
// scanning a few well-known directories for the inode, which missed
// /usr/share/dbus-1/accessibility-services (so no GTK app could be
// dumped) and costs up to half a second of frozen time when it works.
func mountOverlay(d appDirs, base string) error {
	if mounted, _ := isMountpoint(d.rootfs()); mounted {
		return nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=on,nfs_export=on", base, d.upper(), d.work())
	// With index=on an overlay holds its upper and work dirs exclusively,
	// and the last one (before a suspend, detached) lets go of them only
	// once the kernel has dropped its last reference, a moment later.
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err = unix.Mount("overlay", d.rootfs(), "overlay", 0, opts)
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("mount overlay root at %s: %w", d.rootfs(), err)
	}
	return nil
}

// unmountAll detaches everything the engine mounted in an app's dir: its
// root, its sysfs; a missing mount is not an error.
func unmountAll(d appDirs) error {
	for _, p := range []string{d.rootfs(), d.sys()} {
		for {
			mounted, err := isMountpoint(p)
			if err != nil || !mounted {
				break
			}
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		}
	}
	return nil
}

// isMountpoint reports whether path is a mount point in this daemon's mount
// namespace. It must not read /proc/self: libcontainer's mount-source helper
// can leave the main thread (whose view /proc/self shows) inside a container's
// mount namespace; mountinfo uses /proc/thread-self.
func isMountpoint(path string) (bool, error) {
	return mountinfo.Mounted(path)
}

// Resource limits every app gets unless its spec says otherwise.
const (
	DefaultPids = 4096 // a fork bomb ends here; a browser uses a few hundred
	// cpuShares halves an app's weight against the desktop's own work: a
	// busy app cannot starve the session, and gets all CPUs when idle
	// elsewhere.
	cpuShares = 512
)

// containerConfig builds the libcontainer configuration of an app.
func containerConfig(id string, d appDirs, cgroupPath string, spec Spec, host hostIDs) (*configs.Config, error) {
	const defaultMountFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	caps := rootCaps
	if spec.User.IsRoot() {
		caps = rootAppCaps
	}
	devs := make([]*devices.Device, 0, len(specconv.AllowedDevices))
	devs = append(devs, specconv.AllowedDevices...)
	var rules []*devices.Rule
	for _, d := range devs {
		rules = append(rules, &d.Rule)
	}
	filter, err := seccompFilter(caps)
	if err != nil {
		return nil, err
	}
	uids, gids := idMaps(spec.User, host)
	devpts := "newinstance,ptmxmode=0666,mode=0620"
	if spec.User.IsRoot() {
		devpts += ",gid=5" // tty; a user's own namespace has no such group
	}
	res := &cgroups.Resources{
		Memory:    spec.MemoryLimit,
		PidsLimit: &spec.Pids,
		CpuShares: cpuShares,
		Devices:   rules,
	}
	if spec.CPUs > 0 {
		res.CpuPeriod = 100000
		res.CpuQuota = int64(spec.CPUs * float64(res.CpuPeriod))
	}
	cfg := &configs.Config{
		Rootfs:          d.rootfs(),
		Labels:          []string{"org.criu.config=" + d.criuConf()},
		RootPropagation: unix.MS_PRIVATE | unix.MS_REC,
		Capabilities:    &configs.Capabilities{Bounding: caps, Effective: caps, Permitted: caps},
		NoNewPrivileges: true,
		Seccomp:         filter,
		Hostname:        id,
		Namespaces: configs.Namespaces([]configs.Namespace{
			{Type: configs.NEWUSER}, {Type: configs.NEWNS}, {Type: configs.NEWUTS}, {Type: configs.NEWIPC},
			{Type: configs.NEWPID}, {Type: configs.NEWNET, Path: d.netns()},
		}),
		UIDMappings: uids,
		GIDMappings: gids,
		Cgroups:     &cgroups.Cgroup{Path: cgroupPath, Resources: res},
		Devices:     devs,
		MaskPaths:   maskedFiles,
		ReadonlyPaths: []string{
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
		},
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: defaultMountFlags},
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
			{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: devpts},
			{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: defaultMountFlags},
			{Source: d.sys(), Destination: "/sys", Device: "bind", Flags: unix.MS_BIND | defaultMountFlags | unix.MS_RDONLY},
			{Source: d.fb(), Destination: fbDir, Device: "bind", Flags: unix.MS_BIND | defaultMountFlags},
			// The user's own home, read-write where it lives.
			{Source: host.Home, Destination: spec.User.Home, Device: "bind", Flags: unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV},
		},
		Rlimits: []configs.Rlimit{nofileLimit()},
	}
	// Hide directories as runc's masked paths do, but with an empty
	// directory: runc masks with a tmpfs, which CRIU archives and unpacks
	// on every dump and restore (~7 ms of the frozen time each).
	for _, dir := range maskedDirs {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: d.empty(), Destination: dir, Device: "bind",
				Flags: unix.MS_BIND | unix.MS_RDONLY | defaultMountFlags})
		}
	}
	return cfg, nil
}

// nofileLimit keeps the daemon's hard limit on open files (a user namespace
// may lower it, never raise it) with the usual soft one: browsers raise
// theirs as they need.
func nofileLimit() configs.Rlimit {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Max < 1024 {
		r.Max = 1024
	}
	return configs.Rlimit{Type: unix.RLIMIT_NOFILE, Hard: r.Max, Soft: 1024}
}

// seccompFilter is Docker's default seccomp profile (moby/profiles) for a
// process with caps: among others it refuses new namespaces to anything
// without CAP_SYS_ADMIN, which no app process has. Browsers' sandboxes then
// do without nested namespaces, which CRIU cannot checkpoint; the container
// is their sandbox (see the launch profiles).
func seccompFilter(caps []string) (*configs.Seccomp, error) {
	if major, _, _ := libseccomp.Version(); major == 0 {
		return nil, errors.New("this handoff binary was built without seccomp support, and apps run only behind a seccomp filter: build it with `make` (go build -tags seccomp, with libseccomp-dev)")
	}
	key := strings.Join(caps, ",")
	seccompCache.Lock()
	defer seccompCache.Unlock()
	if f, ok := seccompCache.m[key]; ok {
		return f, nil
	}
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps,
	}}}
	profile, err := seccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	f, err := specconv.SetupSeccomp(profile)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	seccompCache.m[key] = f
	return f, nil
}

var seccompCache = struct {
	sync.Mutex
	m map[string]*configs.Seccomp
}{m: map[string]*configs.Seccomp{}}

// containerEnv is the environment of the container's init and, through
// it, of the app: the user's basics, with the user's own LANG and whatever
// the spec adds.
func containerEnv(spec Spec) []string {
	u := spec.User
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name, "SHELL=" + u.Shell,
		"TERM=xterm", "LANG=C.UTF-8",
		"XDG_RUNTIME_DIR=" + runtimeDir(u),
		fmt.Sprintf("HANDOFF_SCREEN=%dx%dx%d", spec.Width, spec.Height, spec.Depth),
		"HANDOFF_APP=" + spec.Name,
	}
	// The app's own sound server (see sound.go).
	if spec.NoSound {
		env = append(env, "HANDOFF_NO_SOUND=1")
	} else {
		env = append(env, "PULSE_SERVER=unix:"+soundSocket)
	}
	if !u.IsRoot() {
		groups := make([]string, 0, len(u.Groups))
		for _, g := range u.Groups {
			groups = append(groups, strconv.Itoa(g.GID))
		}
		env = append(env, "HANDOFF_UID="+strconv.Itoa(u.UID), "HANDOFF_GID="+strconv.Itoa(u.GID),
			"HANDOFF_GROUPS="+strings.Join(groups, ","))
	}
	return append(env, spec.Env...)
}
