//go:build integration

package handles

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The integration tests build a container the way the engine does — own
// mount, PID and network namespaces, an overlay root over the host's "/"
// with a private upper dir, tmpfs /tmp and /dev, devpts, pivot_root — run
// real processes in it that hold every kind of handle, and check the
// manifest. They need root. Processes are killed by PID and namespaces
// deleted by name at cleanup, also on failure.

func init() {
	helpers["container"] = containerStage1
	helpers["container2"] = containerStage2
}

// keep holds everything the container's processes must keep open: an
// *os.File that is garbage collected closes its fd.
var keep []any

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"ip", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// netnsPair makes two named network namespaces joined by a veth pair:
// the container side 192.0.2.1/24, the remote side 192.0.2.2/24.
func netnsPair(t *testing.T) (container, remote string) {
	t.Helper()
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(rnd[:])
	container, remote = "ho-h-"+id+"-c", "ho-h-"+id+"-r"
	for _, ns := range []string{container, remote} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	a, b := "ho"+id+"a", "ho"+id+"b"
	run(t, "ip", "link", "add", a, "netns", container, "type", "veth", "peer", "name", b, "netns", remote)
	run(t, "ip", "-n", container, "addr", "add", "192.0.2.1/24", "dev", a)
	run(t, "ip", "-n", remote, "addr", "add", "192.0.2.2/24", "dev", b)
	for _, x := range [][2]string{{container, a}, {container, "lo"}, {remote, b}, {remote, "lo"}} {
		run(t, "ip", "-n", x[0], "link", "set", x[1], "up")
	}
	return container, remote
}

// listenIn opens a TCP listener inside the named network namespace; the
// socket keeps that namespace, the thread goes back to ours.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type res struct {
		ln  net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, err}
			return
		}
		ln, lerr := net.Listen("tcp4", addr)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, err} // thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		ch <- res{ln, lerr}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s: %v", ns, r.err)
	}
	t.Cleanup(func() { r.ln.Close() })
	return r.ln
}

// containerStage1 runs as PID 1 of fresh mount and PID namespaces: it
// builds the root file system, pivots into it and re-executes a copy of
// the test binary from inside (so no mapping points outside).
func containerStage1() error {
	closeStrayFDs()
	upper, work, rootfs := os.Getenv("HANDLES_UPPER"), os.Getenv("HANDLES_WORK"), os.Getenv("HANDLES_ROOTFS")
	steps := []struct {
		what string
		do   func() error
	}{
		{"make / private", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"mount overlay", func() error {
			opts := "lowerdir=/,upperdir=" + upper + ",workdir=" + work
			if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
				return fmt.Errorf("on %s with %s: %w", rootfs, opts, err)
			}
			return nil
		}},
		{"write upper file", func() error {
			return os.WriteFile(filepath.Join(rootfs, "etc/handoff-upper.txt"), []byte("made inside\n"), 0o644)
		}},
		{"copy binary", func() error { return copyFile("/proc/self/exe", filepath.Join(rootfs, "handles.test")) }},
		{"mount /tmp", func() error {
			return unix.Mount("tmpfs", filepath.Join(rootfs, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
		}},
		{"mount /proc", func() error {
			return unix.Mount("proc", filepath.Join(rootfs, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}},
		{"mount /dev", func() error {
			return unix.Mount("tmpfs", filepath.Join(rootfs, "dev"), "tmpfs", unix.MS_NOSUID, "mode=755")
		}},
		{"make devices", func() error {
			for _, d := range []struct {
				name         string
				major, minor uint32
			}{{"null", 1, 3}, {"zero", 1, 5}, {"urandom", 1, 9}, {"kmsg", 1, 11}} {
				if err := unix.Mknod(filepath.Join(rootfs, "dev", d.name), unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
					return err
				}
			}
			return os.Mkdir(filepath.Join(rootfs, "dev/pts"), 0o755)
		}},
		{"mount devpts", func() error {
			return unix.Mount("devpts", filepath.Join(rootfs, "dev/pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
		}},
		{"link ptmx", func() error { return os.Symlink("pts/ptmx", filepath.Join(rootfs, "dev/ptmx")) }},
		{"pivot_root", func() error {
			if err := os.MkdirAll(filepath.Join(rootfs, ".oldroot"), 0o700); err != nil {
				return err
			}
			if err := unix.Chdir(rootfs); err != nil {
				return err
			}
			if err := unix.PivotRoot(".", ".oldroot"); err != nil {
				return err
			}
			if err := unix.Chdir("/"); err != nil {
				return err
			}
			if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
				return err
			}
			return os.Remove("/.oldroot")
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	env := withEnv(os.Environ(), "HANDLES_HELPER=container2")
	return unix.Exec("/handles.test", []string{"/handles.test", "-test.run=^$"}, env)
}

// withEnv returns env with the given KEY=VALUE pairs replacing any earlier
// values (getenv returns the first match, so appending is not enough).
func withEnv(env []string, set ...string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for _, s := range set {
			if strings.HasPrefix(s, k+"=") {
				replaced = true
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return append(out, set...)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// containerStage2 runs inside the container as PID 1 and opens one handle
// of each sort; fds 3, 4 and 5 were passed in from the host (a host file, a
// unix socket to a host listener, the write end of a host pipe).
func containerStage2() error {
	open := func(path string, flags int) error {
		f, err := os.OpenFile(path, flags, 0o644)
		if err != nil {
			return err
		}
		keep = append(keep, f)
		return nil
	}
	for _, o := range []struct {
		path  string
		flags int
	}{
		{"/etc/debian_version", os.O_RDONLY},
		{"/etc/handoff-upper.txt", os.O_RDONLY},
		{"/tmp/inside.txt", os.O_RDWR | os.O_CREATE},
		{"/dev/null", os.O_RDWR},
		{"/dev/kmsg", os.O_RDONLY},
		{"/dev/ptmx", os.O_RDWR | unix.O_NOCTTY},
	} {
		if err := open(o.path, o.flags); err != nil {
			return err
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sp0, sp1 := os.NewFile(uintptr(sp[0]), "sp0"), os.NewFile(uintptr(sp[1]), "sp1")
	child := exec.Command("/proc/self/exe", "-test.run=^$")
	child.Env = withEnv(os.Environ(), "HANDLES_HELPER=hold", "HANDLES_NFDS=2")
	child.ExtraFiles = []*os.File{pr, sp1}
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start child: %w", err)
	}
	report := bufio.NewReader(out)
	if s, _ := report.ReadString('\n'); strings.TrimSpace(s) != "ready" {
		return fmt.Errorf("child: %q", s)
	}
	// The child is the pipe's only writer: EOF means it has pointed its
	// stdout at /dev/null, so the report pipe is no handle of the container.
	if _, err := io.Copy(io.Discard, report); err != nil {
		return fmt.Errorf("child detach: %w", err)
	}
	pr.Close()
	sp1.Close()
	keep = append(keep, pw, sp0, child)

	remote, err := net.Dial("tcp4", os.Getenv("HANDLES_REMOTE"))
	if err != nil {
		return fmt.Errorf("dial remote: %w", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	s, err := ln.Accept()
	if err != nil {
		return err
	}
	mfd, err := unix.MemfdCreate("inside", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	keep = append(keep, remote, ln, c, s, os.NewFile(uintptr(mfd), "memfd"))
	if err := readyAndDetach(); err != nil {
		return err
	}
	for {
		time.Sleep(time.Hour)
	}
}

// nsPIDs returns the host PIDs of all processes in init's PID namespace.
func nsPIDs(t *testing.T, init int) []int {
	t.Helper()
	var want unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", init), &want); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &st) == nil && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

type container struct {
	scope              Scope
	hostFile, sockPath string
	hostPipeR          *os.File
	remote             string
	clientSockI        uint64
}

// startContainer builds the namespaces and starts the container's init.
func startContainer(t *testing.T) *container {
	t.Helper()
	requireRoot(t)
	cns, rns := netnsPair(t)
	ln := listenIn(t, rns, "192.0.2.2:0")
	go func() { // hold accepted connections until cleanup closes the listener
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()

	dir := t.TempDir()
	c := &container{remote: ln.Addr().String()}
	c.hostFile = filepath.Join(dir, "host-secret.txt")
	if err := os.WriteFile(c.hostFile, []byte("host only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hf, err := os.Open(c.hostFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hf.Close() })
	c.sockPath = filepath.Join(dir, "host.sock")
	uln, err := net.ListenUnix("unix", &net.UnixAddr{Name: c.sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uln.Close() })
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: c.sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	acc, err := uln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.Close() })
	c.clientSockI = sockInode(t, uc)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close(); pw.Close() })
	c.hostPipeR = pr

	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+cns, "--",
		"unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "--",
		os.Args[0], "-test.run=^$")
	_, report := startCommand(t, cmd, "container", []*os.File{hf, connFile(t, uc), pw},
		"HANDLES_UPPER="+filepath.Join(dir, "upper"), "HANDLES_WORK="+filepath.Join(dir, "work"),
		"HANDLES_ROOTFS="+filepath.Join(dir, "rootfs"), "HANDLES_REMOTE="+c.remote)
	pw.Close()

	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(kids))
	if len(f) != 1 {
		t.Fatalf("unshare has children %q, want one", kids)
	}
	init, _ := strconv.Atoi(f[0])
	t.Cleanup(func() { _ = unix.Kill(init, unix.SIGKILL) }) // by PID; takes its namespace with it
	waitDetached(t, init, report)
	c.scope = Scope{
		PIDs: nsPIDs(t, init), InitPID: init,
		UpperDir: filepath.Join(dir, "upper"), Rootfs: filepath.Join(dir, "rootfs"),
		Mounts: []MountSpec{
			{Destination: "/", Type: "overlay"}, {Destination: "/tmp", Type: "tmpfs"}, {Destination: "/proc", Type: "proc"},
			{Destination: "/dev", Type: "tmpfs"}, {Destination: "/dev/pts", Type: "devpts"},
		},
		Display: Display{Width: 1024, Height: 768, Depth: 24},
	}
	return c
}

func TestContainerManifest(t *testing.T) {
	c := startContainer(t)
	if len(c.scope.PIDs) != 2 {
		t.Fatalf("container has pids %v, want init and one child", c.scope.PIDs)
	}
	m, err := Build(context.Background(), c.scope, NewHashCache())
	if err != nil {
		t.Fatal(err)
	}
	var tbl bytes.Buffer
	WriteTable(&tbl, m)
	t.Logf("manifest:\n%s", tbl.String())
	if len(m.Skipped) > 0 {
		t.Logf("skipped: %v", m.Skipped)
	}

	byPath := func(kind Kind, path string) Handle {
		t.Helper()
		for _, h := range m.Handles {
			if h.Kind == kind && (h.Path == path || strings.HasPrefix(h.Path, path)) {
				return h
			}
		}
		t.Fatalf("no %s handle %s", kind, path)
		return Handle{}
	}
	want := func(h Handle, class Class, substr string) {
		t.Helper()
		text := h.Reason + h.Note
		if h.Class != class || !strings.Contains(text, substr) {
			t.Errorf("%s %s: %s %q, want %s containing %q", h.Kind, h.Path, h.Class, text, class, substr)
		}
	}

	// Blockers, each named.
	self := os.Getpid()
	want(byPath(KindRegular, c.hostFile), Blocks, "opened outside the container")
	h := findHandle(t, m, fmt.Sprintf("socket:%d", c.clientSockI))
	want(h, Blocks, fmt.Sprintf("host process %s (pid %d) at %s", filepath.Base(os.Args[0])[:min(15, len(filepath.Base(os.Args[0])))], self, c.sockPath))
	h = findHandle(t, m, fmt.Sprintf("pipe:%d", fileInode(t, c.hostPipeR)))
	want(h, Blocks, fmt.Sprintf("pid %d", self))
	var tcpOut *Handle
	for i := range m.Handles {
		if hh := m.Handles[i]; hh.Kind == KindTCP && hh.Peer != nil && hh.Peer.Address == c.remote {
			tcpOut = &m.Handles[i]
		}
	}
	if tcpOut == nil {
		t.Fatalf("no TCP handle to %s", c.remote)
	}
	want(*tcpOut, Blocks, "established TCP connection to "+c.remote)
	if !strings.Contains(tcpOut.Remedy, "close the connection to "+c.remote) {
		t.Errorf("remedy %q", tcpOut.Remedy)
	}
	want(byPath(KindCharDev, "/dev/kmsg"), Blocks, "/dev/kmsg is a device node (char 1:11)")
	if n := len(m.Blocking()); n != 5 {
		for _, b := range m.Blocking() {
			t.Logf("blocker: %s %s: %s", b.Kind, b.Path, b.Reason)
		}
		t.Errorf("%d blockers, want 5", n)
	}

	// Present: the base layer, hashed like the host's copy; standard devices.
	h = byPath(KindRegular, "/etc/debian_version")
	want(h, Present, "")
	raw, _ := os.ReadFile("/etc/debian_version")
	if h.Hash != HashBytes(raw) || h.Layer != "base" || h.Mount != "/" {
		t.Errorf("/etc/debian_version: hash %s layer %s mount %s", h.Hash, h.Layer, h.Mount)
	}
	h = byPath(KindCharDev, "/dev/null")
	want(h, Present, "standard device")
	if len(usersPIDs(h)) != 2 {
		t.Errorf("/dev/null users %v", h.Users)
	}

	// Moves: upper dir, tmpfs, pty, pipes and sockets inside, the binary
	// copied into the upper dir, loopback TCP, memfd.
	h = byPath(KindRegular, "/etc/handoff-upper.txt")
	want(h, Moves, "upper dir")
	if h.Layer != "upper" {
		t.Errorf("upper file layer %q", h.Layer)
	}
	want(byPath(KindRegular, "/tmp/inside.txt"), Moves, "tmpfs /tmp")
	want(byPath(KindTTY, "/dev/pts/ptmx"), Moves, "pseudo-terminal")
	want(byPath(KindMapped, "/handles.test"), Moves, "upper dir")
	insidePipes, insideUnix, loopTCP := 0, 0, 0
	for _, h := range m.Handles {
		switch {
		case h.Kind == KindPipe && h.Class == Moves && strings.Contains(h.Note, "both ends"):
			insidePipes++
		case h.Kind == KindUnix && h.Peer != nil && h.Peer.Inside:
			insideUnix++
			want(h, Moves, "both ends")
		case h.Kind == KindTCP && h.Peer != nil && h.Peer.Inside:
			loopTCP++
			want(h, Moves, "tcp-established")
		}
	}
	if insidePipes != 1 || insideUnix != 2 || loopTCP != 2 {
		t.Errorf("inside: %d pipes (want 1), %d unix ends (want 2), %d loopback tcp (want 2)", insidePipes, insideUnix, loopTCP)
	}
	if m.Summary.TCPEstablished != 2 {
		t.Errorf("tcp_established %d", m.Summary.TCPEstablished)
	}

	// Container-level facts.
	configured := map[string]string{}
	for _, mt := range m.Mounts {
		configured[mt.Mountpoint] = mt.FSType + "/" + mt.Configured
	}
	if configured["/"] != "overlay/overlay" || configured["/tmp"] != "tmpfs/tmpfs" || configured["/dev/pts"] != "devpts/devpts" {
		t.Errorf("mounts %v", configured)
	}
	for _, h := range m.Handles {
		if strings.HasPrefix(h.Path, c.scope.Rootfs) {
			t.Errorf("path %s is a host path, want the container's", h.Path)
		}
	}
	nspids := map[bool]bool{}
	for _, p := range m.Processes {
		nspids[p.NSPID > 1] = true // init is 1; the child's number depends on threads started before it
	}
	if !nspids[true] || !nspids[false] || m.Processes[0].NSPID != 1 || m.Display.Width != 1024 {
		t.Errorf("processes %+v display %+v", m.Processes, m.Display)
	}
	if !strings.Contains(strings.Join(m.Env, "\n"), "HANDLES_HELPER=container2") {
		t.Errorf("env %v", m.Env)
	}
}

// TestContainerHashCache builds twice: the second build reads no file.
func TestContainerHashCache(t *testing.T) {
	c := startContainer(t)
	// Wait until the container is idle (its processes may still be starting
	// up): two manifests in a row the same, with a throwaway cache.
	var prev []byte
	for i := 0; i < 40; i++ {
		m, err := Build(context.Background(), c.scope, NewHashCache())
		if err != nil {
			t.Fatal(err)
		}
		j, _ := m.MarshalJSON()
		if bytes.Equal(j, prev) {
			break
		}
		prev = j
		time.Sleep(50 * time.Millisecond)
	}
	cache := NewHashCache()
	start := time.Now()
	m1, err := Build(context.Background(), c.scope, cache)
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	_, misses1, bytes1 := cache.Stats()
	start = time.Now()
	m2, err := Build(context.Background(), c.scope, cache)
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	_, misses2, _ := cache.Stats()
	if misses2 != misses1 {
		t.Errorf("second build hashed %d more files", misses2-misses1)
	}
	t.Logf("cold %v (%d files, %d bytes hashed), warm %v", cold, misses1, bytes1, warm)
	j1, _ := m1.MarshalJSON()
	j2, _ := m2.MarshalJSON()
	if !bytes.Equal(j1, j2) {
		t.Error("two builds of an idle container differ")
	}
}
