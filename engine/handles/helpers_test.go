package handles

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helpers are roles the test binary plays when re-executed with
// HANDLES_HELPER=role; integration tests add theirs in init.
var helpers = map[string]func() error{
	"hold": holdForever,
}

func TestMain(m *testing.M) {
	if role := os.Getenv("HANDLES_HELPER"); role != "" {
		f, ok := helpers[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown helper role %q\n", role)
			os.Exit(2)
		}
		if err := f(); err != nil {
			fmt.Fprintf(os.Stdout, "error: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdForever reports "ready" on stdout, points stdio at its own /dev/null
// (so the report pipe does not count as a handle) and keeps its inherited
// fds open until killed.
func holdForever() error {
	closeStrayFDs()
	if err := readyAndDetach(); err != nil {
		return err
	}
	for {
		time.Sleep(time.Hour)
	}
}

// closeStrayFDs closes fds the helper inherited beyond its ExtraFiles
// (HANDLES_NFDS of them, from fd 3), e.g. a non-CLOEXEC pipe of whatever
// started `go test`, so the manifest only shows what the test made.
func closeStrayFDs() {
	n, err := strconv.Atoi(os.Getenv("HANDLES_NFDS"))
	if err != nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	keep := 3 + n
	var stray []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < keep {
			continue
		}
		// Go's own fds (epoll, the ReadDir fd) are CLOEXEC; strays are not.
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			stray = append(stray, fd)
		}
	}
	for _, fd := range stray {
		unix.Close(fd)
	}
}

func readyAndDetach() error {
	null, err := unix.Open("/dev/null", unix.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null: %w", err)
	}
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		return err
	}
	for fd := range 3 {
		if err := unix.Dup3(null, fd, 0); err != nil {
			return fmt.Errorf("dup /dev/null to %d: %w", fd, err)
		}
	}
	return unix.Close(null)
}

// startHelper re-executes the test binary as role with extra fds (3, 4, …)
// and waits until it is ready and detached from its report pipe. The process
// is killed by PID at cleanup.
func startHelper(t *testing.T, role string, extra []*os.File, env ...string) *exec.Cmd {
	t.Helper()
	cmd, report := startCommand(t, exec.Command(os.Args[0], "-test.run=^$"), role, extra, env...)
	waitDetached(t, cmd.Process.Pid, report)
	return cmd
}

// startCommand starts cmd, which runs role somewhere below it, and waits
// for its "ready". It returns the inode of the report pipe, which the
// process that ran role may still hold for a moment: see waitDetached.
func startCommand(t *testing.T, cmd *exec.Cmd, role string, extra []*os.File, env ...string) (*exec.Cmd, uint64) {
	t.Helper()
	env = append(env, "HANDLES_HELPER="+role, "HANDLES_NFDS="+strconv.Itoa(len(extra)))
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = extra
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	report := fileInode(t, out.(*os.File))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", role, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID, never by name
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "ready" {
			t.Fatalf("helper %s: %q", role, s)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("helper %s not ready after 20s", role)
	}
	return cmd, report
}

// waitDetached waits until pid no longer holds the report pipe: a helper
// writes "ready" before it points its stdio at /dev/null, and a manifest
// built in between would list the pipe as one more handle.
func waitDetached(t *testing.T, pid int, report uint64) {
	t.Helper()
	target := fmt.Sprintf("pipe:[%d]", report)
	deadline := time.Now().Add(20 * time.Second)
	for {
		held := false
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, e := range ents {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); l == target {
				held = true
				break
			}
		}
		if !held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still holds its report pipe after 20s", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

func loopbackPair(t *testing.T) (*net.TCPListener, *net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ln, c, s
}

func sockInode(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}

func fileInode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// connFile returns a dup of a conn's fd as a file, for ExtraFiles.
func connFile(t *testing.T, c interface{ File() (*os.File, error) }) *os.File {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// findHandle returns the handle with the given ID.
func findHandle(t *testing.T, m *Manifest, id string) Handle {
	t.Helper()
	for _, h := range m.Handles {
		if h.ID == id {
			return h
		}
	}
	var ids []string
	for _, h := range m.Handles {
		ids = append(ids, h.ID)
	}
	t.Fatalf("no handle %s in manifest; have %v", id, ids)
	return Handle{}
}

func usersPIDs(h Handle) map[int]bool {
	m := map[int]bool{}
	for _, u := range h.Users {
		m[u.PID] = true
	}
	return m
}
