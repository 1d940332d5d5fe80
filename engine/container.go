package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
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
	appLogPath       = handoffDir + "/app.log"
)

// initScript is the container's PID 1. It keeps every stdio handle inside the
// container (a handle to a host file would make the dump fail), starts the
// private X server, waits for its socket, runs the app and ends everything when
// the app ends. The TERM trap matters: a PID-namespace init ignores signals it
// has no handler for, and `handoff stop` asks politely first. /dev/shm is a
// directory of /dev's tmpfs, not a tmpfs of its own: CRIU archives and
// unpacks every tmpfs on each dump and restore (~7 ms each). It waits with the
// wait builtin, never by polling with sleep: dash vforks commands, and a dump
// that lands while the shell waits for a vforked child finds it in state D,
// which CRIU cannot seize (it failed 1 in ~40 suspends).
const initScript = `#!/bin/sh
mkdir -p ` + fbDir + `
mkdir -p -m 1777 /dev/shm
exec </dev/null >>` + handoffDir + `/init.log 2>&1
trap 'kill -TERM $app $xvfb 2>/dev/null' TERM INT
Xvfb ` + containerDisplay + ` -screen 0 "$HANDOFF_SCREEN" -fbdir ` + fbDir + ` -nolisten tcp -noreset &
xvfb=$!
i=0
while [ ! -S /tmp/.X11-unix/X1 ] && [ $i -lt 200 ]; do sleep 0.025; i=$((i+1)); done
DISPLAY=` + containerDisplay + ` "$@" >>` + appLogPath + ` 2>&1 &
app=$!
while kill -0 $app 2>/dev/null; do wait $app; done
kill -TERM $xvfb 2>/dev/null
exit 0
`

// defaultCaps is runc's default capability set for containers.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

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

// prepareRootfs writes the init script into the upper dir and mounts the
// overlay (read-only base + upper) at the rootfs mountpoint.
func prepareRootfs(d appDirs, base string) error {
	if err := makeAppDirs(d); err != nil {
		return err
	}
	// The overlay root takes the upper dir's mode, and CRIU checks the
	// root's mode on restore: keep it the same (the base's 0755) on every
	// machine. The app dir above it stays 0700.
	if err := os.Chmod(d.upper(), 0o755); err != nil {
		return err
	}
	if err := makeContainerTmp(d); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.upper(), initPath), []byte(initScript), 0o755); err != nil {
		return fmt.Errorf("write init: %w", err)
	}
	if err := os.WriteFile(d.criuConf(), []byte(criuConfig), 0o600); err != nil {
		return fmt.Errorf("write CRIU config: %w", err)
	}
	return mountOverlay(d, base)
}

// makeContainerTmp makes the container's /tmp a directory of the upper dir
// that hides the base's (the host's) /tmp. Not a tmpfs: CRIU archives and
// unpacks every tmpfs with tar and gzip on each dump and restore (~5 ms of the
// frozen time each); in the upper dir /tmp travels with the app's other files.
func makeContainerTmp(d appDirs) error {
	dir := filepath.Join(d.upper(), "tmp")
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.Chmod(dir, 0o777|fs.ModeSticky); err != nil {
		return err
	}
	if err := unix.Lsetxattr(dir, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("hide the base's /tmp: %w", err)
	}
	return nil
}

// makeAppDirs makes the directories of an app's place in the state dir.
func makeAppDirs(d appDirs) error {
	for _, dir := range []string{d.upper(), d.work(), d.rootfs(), d.fb(), d.empty(), filepath.Join(d.upper(), filepath.Dir(initPath))} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	return nil
}

func mountOverlay(d appDirs, base string) error {
	if mounted, _ := isMountpoint(d.rootfs()); mounted {
		return nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, d.upper(), d.work())
	if err := unix.Mount("overlay", d.rootfs(), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay root at %s: %w", d.rootfs(), err)
	}
	return nil
}

// unmountRootfs detaches the overlay; a missing mount is not an error.
func unmountRootfs(d appDirs) error {
	for {
		mounted, err := isMountpoint(d.rootfs())
		if err != nil || !mounted {
			return nil
		}
		if err := unix.Unmount(d.rootfs(), unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", d.rootfs(), err)
		}
	}
}

// isMountpoint reports whether path is a mount point in this daemon's mount
// namespace. It must not read /proc/self: libcontainer's mount-source helper
// can leave the main thread (whose view /proc/self shows) inside a container's
// mount namespace; mountinfo uses /proc/thread-self.
func isMountpoint(path string) (bool, error) {
	return mountinfo.Mounted(path)
}

// containerConfig builds the libcontainer configuration of an app.
func containerConfig(id string, d appDirs, cgroupPath string, spec Spec) *configs.Config {
	const defaultMountFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	caps := &configs.Capabilities{
		Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
	}
	devs := make([]*devices.Device, 0, len(specconv.AllowedDevices))
	devs = append(devs, specconv.AllowedDevices...)
	var rules []*devices.Rule
	for _, d := range devs {
		rules = append(rules, &d.Rule)
	}
	mem := spec.MemoryLimit
	cfg := &configs.Config{
		Rootfs:          d.rootfs(),
		Labels:          []string{"org.criu.config=" + d.criuConf()},
		RootPropagation: unix.MS_PRIVATE | unix.MS_REC,
		Capabilities:    caps,
		NoNewPrivileges: true,
		Hostname:        id,
		Namespaces: configs.Namespaces([]configs.Namespace{
			{Type: configs.NEWNS}, {Type: configs.NEWUTS}, {Type: configs.NEWIPC},
			{Type: configs.NEWPID}, {Type: configs.NEWNET, Path: d.netns()},
		}),
		Cgroups: &configs.Cgroup{
			Path: cgroupPath,
			Resources: &configs.Resources{
				Memory:  mem,
				Devices: rules,
			},
		},
		Devices:       devs,
		MaskPaths:     []string{"/proc/kcore"},
		ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"},
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: defaultMountFlags},
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
			{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"},
			{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: defaultMountFlags},
			{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: defaultMountFlags | unix.MS_RDONLY},
			{Source: d.fb(), Destination: fbDir, Device: "bind", Flags: unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		},
		Rlimits: []configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Hard: 1024, Soft: 1024}},
	}
	// Hide the host's firmware tables as runc's masked path does, but with
	// an empty directory: runc masks with a tmpfs, which CRIU archives and
	// unpacks on every dump and restore (~7 ms of the frozen time each).
	if _, err := os.Stat("/sys/firmware"); err == nil {
		cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: d.empty(), Destination: "/sys/firmware", Device: "bind",
			Flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC})
	}
	return cfg
}

// containerEnv is the environment of the app's processes.
func containerEnv(spec Spec) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "TERM=xterm", "LANG=C.UTF-8",
		fmt.Sprintf("HANDOFF_SCREEN=%dx%dx%d", spec.Width, spec.Height, spec.Depth),
		"HANDOFF_APP=" + spec.Name,
	}
	return append(env, spec.Env...)
}
