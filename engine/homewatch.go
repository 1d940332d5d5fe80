package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// homeWatch notes the files an app writes, and those it only reads, in its
// user's home: a fanotify mark on the app's own bind mount of the home sees
// every file the app closes there (and none the user uses outside the app,
// nor the engine's own, which go through the host's path). Written files
// travel with the app; read ones only have their state remembered when it
// leaves, so that the versions that come back later can tell "changed
// here since" apart. What it saw is kept in the app's dir, so that a
// restarted daemon, a suspend and a resume keep it.
type homeWatch struct {
	f       *os.File // the fanotify group
	home    string   // the home as the container sees it
	persist string
	log     *slog.Logger

	mu    sync.Mutex
	paths map[string]bool // written
	read  map[string]bool // read, not written
	done  chan struct{}
}

// homeSeen is what a homeWatch keeps in its file.
type homeSeen struct {
	Written []string `json:"written"`
	Read    []string `json:"read,omitempty"`
}

// watchHome starts noting what the app, running with init pid, writes in
// its home. An app that cannot be watched still runs; its open files
// still travel.
func (e *Engine) watchHome(a *app, pid int) {
	a.mu.Lock()
	home, old := a.rec.Spec.User.Home, a.homeWatch
	a.mu.Unlock()
	if old != nil {
		old.stop()
	}
	w, err := startHomeWatch(pid, home, filepath.Join(a.dirs.root, "home-written.json"), e.log)
	if err != nil {
		e.log.Warn("the files the app writes in its home will not be followed", "app", a.rec.Spec.Name, "err", err)
	}
	a.mu.Lock()
	a.homeWatch = w
	a.mu.Unlock()
}

// startHomeWatch watches the home of the app whose container's init is pid.
func startHomeWatch(pid int, home, persist string, log *slog.Logger) (*homeWatch, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOATIME)
	if err != nil {
		return nil, fmt.Errorf("watch the app's home: %w", err)
	}
	f := os.NewFile(uintptr(fd), "fanotify")
	root, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("watch the app's home: %w", err)
	}
	defer unix.Close(root)
	// Not O_PATH: fanotify_mark wants an fd it can use as a file.
	dir, err := unix.Openat2(root, strings.TrimPrefix(home, "/"), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("watch the app's home %s: %w", home, err)
	}
	defer unix.Close(dir)
	// A mount mark: the app's bind mount of the home, which only the app uses.
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_CLOSE_WRITE|unix.FAN_CLOSE_NOWRITE, dir, ""); err != nil {
		f.Close()
		return nil, fmt.Errorf("watch the app's home %s: %w", home, err)
	}
	w := &homeWatch{f: f, home: home, persist: persist, log: log, paths: map[string]bool{}, read: map[string]bool{}, done: make(chan struct{})}
	w.load()
	go w.loop()
	return w, nil
}

func (w *homeWatch) loop() {
	defer close(w.done)
	buf := make([]byte, 16<<10)
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.log.Debug("home watch ended", "err", err)
			}
			return
		}
		var wrote, read []string
		for off := 0; off+metaLen <= n; {
			ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
			if ev.Event_len < uint32(metaLen) || off+int(ev.Event_len) > n {
				break
			}
			off += int(ev.Event_len)
			if ev.Fd < 0 {
				continue
			}
			// The kernel names the file as the container sees it.
			link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(ev.Fd)))
			unix.Close(int(ev.Fd))
			if err != nil || strings.HasSuffix(link, " (deleted)") {
				continue
			}
			if rel, ok := relToHome(w.home, link); ok {
				if ev.Mask&unix.FAN_CLOSE_WRITE != 0 {
					wrote = append(wrote, rel)
				} else {
					read = append(read, rel)
				}
			}
		}
		if len(wrote)+len(read) > 0 {
			w.add(wrote, read)
		}
	}
}

func (w *homeWatch) add(wrote, read []string) {
	w.mu.Lock()
	changed := false
	for _, p := range wrote {
		if !w.paths[p] && len(w.paths) < maxHomeFiles {
			w.paths[p], changed = true, true
		}
	}
	for _, p := range read {
		if !w.paths[p] && !w.read[p] && len(w.read) < maxHomeFiles {
			w.read[p], changed = true, true
		}
	}
	var seen homeSeen
	if changed {
		seen = homeSeen{Written: listOf(w.paths, nil), Read: listOf(w.read, w.paths)}
	}
	w.mu.Unlock()
	if changed {
		if err := writeJSONAtomic(w.persist, seen); err != nil {
			w.log.Warn("remember the files the app used", "err", err)
		}
	}
}

func (w *homeWatch) load() {
	var seen homeSeen
	data, err := os.ReadFile(w.persist)
	if err != nil || json.Unmarshal(data, &seen) != nil {
		return
	}
	for _, p := range seen.Written {
		if validHomePath(p) {
			w.paths[p] = true
		}
	}
	for _, p := range seen.Read {
		if validHomePath(p) {
			w.read[p] = true
		}
	}
}

// written lists what the app wrote, as paths relative to the home.
func (w *homeWatch) written() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return listOf(w.paths, nil)
}

// readOnly lists what the app read and did not write.
func (w *homeWatch) readOnly() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return listOf(w.read, w.paths)
}

// listOf lists the paths of set that are not in but, sorted.
func listOf(set, but map[string]bool) []string {
	out := make([]string, 0, len(set))
	for p := range set {
		if !but[p] {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// stop ends the watch; what it saw stays in its file.
func (w *homeWatch) stop() {
	w.f.Close()
	<-w.done
}
