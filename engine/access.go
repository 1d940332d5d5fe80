package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// How the daemon reaches into a running app: its framebuffer, its display's
// socket, its logs. Every one of them lives in a place the app (or its
// container's root) can write, so none is opened by joining a path: files
// are opened through an os.Root or openat2 that refuses links, only regular
// files (or the socket) are accepted, and nothing blocks on what the app
// put there instead.

// OpenFramebuffer opens the app's framebuffer (an XWD file its X server
// keeps current) for reading. The caller must expect the file to change
// size under it: the X server, or an app that took it over, may truncate it.
func (e *Engine) OpenFramebuffer(name string) (*os.File, error) {
	a, err := e.lookup(name)
	if err != nil {
		return nil, err
	}
	in := a.info()
	if in.State != StateRunning && in.State != StateFrozen {
		return nil, &StateError{App: name, Op: "show", State: in.State}
	}
	f, err := openRegularIn(a.dirs.fb(), fbName)
	if err != nil {
		return nil, fmt.Errorf("framebuffer of %q: %w", name, err)
	}
	return f, nil
}

// DialDisplay connects to the app's X server. The socket is found inside
// the container's root without following any link, and connected to through
// the handle that found it.
func (e *Engine) DialDisplay(ctx context.Context, name string) (net.Conn, error) {
	a, err := e.lookup(name)
	if err != nil {
		return nil, err
	}
	in := a.info()
	if in.State != StateRunning && in.State != StateFrozen {
		return nil, &StateError{App: name, Op: "connect to the display of", State: in.State}
	}
	conn, err := dialInRoot(ctx, in.PID, displaySocket)
	if err != nil {
		return nil, fmt.Errorf("display of %q: %w", name, err)
	}
	return conn, nil
}

// dialInRoot connects to the unix socket at path inside the root of process
// pid.
func dialInRoot(ctx context.Context, pid int, path string) (net.Conn, error) {
	root, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, strings.TrimPrefix(path, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("%s is not a socket", path)
	}
	var d net.Dialer
	// The fd's magic link names the socket the lookup found: connecting
	// through it cannot be redirected by a rename in between.
	return d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
}

// openRegularIn opens the regular file at rel below dir (a place of the
// daemon's own), read-only, without following a link anywhere below dir and
// without blocking on a FIFO.
func openRegularIn(dir, rel string) (*os.File, error) {
	d, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(d)
	fd, err := unix.Openat2(d, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, rel))
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w (%v)", rel, errNotRegular, st.Mode().Type())
	}
	return f, nil
}

// fbReady reports whether the app's X server has made its framebuffer.
func fbReady(d appDirs) bool {
	f, err := openRegularIn(d.fb(), fbName)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// displayReady reports whether the app's X server listens: its socket is in
// the upper dir, which the host sees without entering the container.
func displayReady(d appDirs) bool {
	root, err := os.OpenRoot(d.upper())
	if err != nil {
		return false
	}
	defer root.Close()
	st, err := root.Lstat(strings.TrimPrefix(displaySocket, "/"))
	return err == nil && st.Mode().Type() == fs.ModeSocket
}

// logTail returns the end of the container's init log, for error messages.
func (a *app) logTail() string {
	f, err := openRegularIn(a.dirs.upper(), strings.TrimPrefix(initLogPath, "/"))
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 400
	if st, err := f.Stat(); err == nil && st.Size() > tail {
		_, _ = f.Seek(st.Size()-tail, io.SeekStart)
	}
	data, err := io.ReadAll(io.LimitReader(f, tail))
	if err != nil || len(data) == 0 {
		return ""
	}
	return "; container log: " + strings.TrimSpace(string(data))
}

// errNotRegular is what a copy refuses when the app put something else
// where a regular file belongs.
var errNotRegular = errors.New("not a regular file")

// CheckDisplay reports whether the app's display is up: its framebuffer is
// there and large enough for the display's pixels (a restore that lost the
// display leaves none, or an empty file).
func (e *Engine) CheckDisplay(name string) error {
	f, err := e.OpenFramebuffer(name)
	if err != nil {
		return err
	}
	defer f.Close()
	spec, err := e.Spec(name)
	if err != nil {
		return err
	}
	bytesPerPixel := int64(4)
	if spec.Depth == 16 {
		bytesPerPixel = 2
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if want := int64(spec.Width) * int64(spec.Height) * bytesPerPixel; st.Size() < want {
		return fmt.Errorf("the display of %q has a framebuffer of %d bytes, less than its %dx%d pixels", name, st.Size(), spec.Width, spec.Height)
	}
	return nil
}
