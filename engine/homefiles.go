package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"

	"github.com/handoff/handoff/engine/handles"
)

// An app's files in its user's home are the user's, not the app's: they
// stay in the home, where the user looks for them, on whichever machine the
// app runs. When the app moves, the files it uses go with it — those it
// holds open or has mapped, and those it wrote since it came to this
// machine — so that the app finds the same bytes on the other side, and a
// document saved there is in the user's home there. The engine lists them
// (HomeFiles), reads them for the sender, and places incoming ones
// (PlaceHomeFiles) under a rule that never loses a version (see place).

// HomeFile is one file of the user's home that the app uses.
type HomeFile struct {
	Path  string    `json:"path"` // relative to the home, clean
	Size  int64     `json:"size"`
	Mode  uint32    `json:"mode"` // permission bits
	MTime time.Time `json:"mtime"`
	Hash  string    `json:"hash"`           // XXH3-128, hex
	Open  bool      `json:"open,omitempty"` // the app holds it open or mapped
}

// Limits on the files that travel with an app.
const (
	maxHomeFiles = 10000
	maxHomeBytes = 8 << 30
)

// ErrHomeFiles is returned when the app's files cannot travel with it.
var ErrHomeFiles = errors.New("the app's files cannot travel")

// HomeFiles lists the files of the app's user's home that the app holds
// open or mapped (from its handles manifest) or wrote since it started or
// arrived here (the engine watches its home for writes), with their hashes.
// The app should be frozen, so that they hold still.
func (e *Engine) HomeFiles(ctx context.Context, name string, m *handles.Manifest) ([]HomeFile, error) {
	a, err := e.lookup(name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	spec, host, w := a.rec.Spec, a.rec.Host, a.homeWatch
	a.mu.Unlock()
	open := map[string]bool{}
	if m != nil {
		for _, h := range m.Handles {
			if h.Layer != "home" || (h.Kind != handles.KindRegular && h.Kind != handles.KindMapped) {
				continue
			}
			if rel, ok := relToHome(spec.User.Home, h.Path); ok {
				open[rel] = true
			}
		}
	}
	paths := map[string]bool{}
	for p := range open {
		paths[p] = true
	}
	if w != nil {
		for _, p := range w.written() {
			paths[p] = true
		}
	}
	root, err := os.OpenRoot(host.Home)
	if err != nil {
		return nil, fmt.Errorf("%w: the home %s: %v", ErrHomeFiles, host.Home, err)
	}
	defer root.Close()
	var out []HomeFile
	var total int64
	for p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := statHomeFile(root, p)
		if err != nil {
			continue // gone, or not a regular file: nothing to carry
		}
		f.Open = open[p]
		total += f.Size
		out = append(out, f)
	}
	if len(out) > maxHomeFiles || total > maxHomeBytes {
		return nil, fmt.Errorf("%w: %d files, %s (at most %d files, %s)", ErrHomeFiles, len(out), humanBytes(total), maxHomeFiles, humanBytes(maxHomeBytes))
	}
	slices.SortFunc(out, func(a, b HomeFile) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// HomeRead lists the files of the home the app only read since it started
// or arrived here (see RecordHomeSync).
func (e *Engine) HomeRead(name string) []string {
	a, err := e.lookup(name)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	w := a.homeWatch
	a.mu.Unlock()
	if w == nil {
		return nil
	}
	return w.readOnly()
}

// relToHome turns a container path into one relative to home.
func relToHome(home, p string) (string, bool) {
	rel, ok := strings.CutPrefix(path.Clean(p), home+"/")
	if !ok || !validHomePath(rel) {
		return "", false
	}
	return rel, true
}

// validHomePath reports whether rel is a clean relative path (from a peer,
// or from the kernel).
func validHomePath(rel string) bool {
	if rel == "" || rel == "." || strings.HasPrefix(rel, "/") || path.Clean(rel) != rel || strings.ContainsRune(rel, 0) {
		return false
	}
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return false
		}
	}
	return len(rel) < 4096
}

// statHomeFile describes the regular file at rel in the home, hashing it.
func statHomeFile(root *os.Root, rel string) (HomeFile, error) {
	f, err := openHomeFile(root, rel)
	if err != nil {
		return HomeFile{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return HomeFile{}, err
	}
	h := xxh3.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return HomeFile{}, err
	}
	if n != st.Size() {
		return HomeFile{}, fmt.Errorf("%s changed while it was read", rel)
	}
	sum := h.Sum128().Bytes()
	return HomeFile{Path: rel, Size: n, Mode: uint32(st.Mode().Perm()), MTime: st.ModTime().UTC(), Hash: hex.EncodeToString(sum[:])}, nil
}

// openHomeFile opens a regular file of the home for reading without
// following a link out of it or blocking on a FIFO the user put there.
func openHomeFile(root *os.Root, rel string) (*os.File, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w", rel, errNotRegular)
	}
	return f, nil
}

// OpenHomeFile opens a file the app uses, by its path relative to the
// home, for the sender to read. It must be a regular file in the home.
func (e *Engine) OpenHomeFile(name, rel string) (*os.File, error) {
	if !validHomePath(rel) {
		return nil, fmt.Errorf("%w: %q is not a path in the home", ErrHomeFiles, rel)
	}
	a, err := e.lookup(name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	home := a.rec.Host.Home
	a.mu.Unlock()
	root, err := os.OpenRoot(home)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return openHomeFile(root, rel)
}

// homeOf returns the local account and its home for user name.
func homeOf(name string) (User, error) {
	u, err := LookupUser(name, 0)
	if err != nil {
		return User{}, err
	}
	if st, err := os.Stat(u.Home); err != nil || !st.IsDir() {
		return User{}, fmt.Errorf("%w: the home of %s (%s) is not there", ErrHomeFiles, name, u.Home)
	}
	return u, nil
}

// isRegularIn reports whether rel is a regular file in root, without
// following links.
func isRegularIn(root *os.Root, rel string) (fs.FileInfo, bool) {
	st, err := root.Lstat(rel)
	return st, err == nil && st.Mode().IsRegular()
}
