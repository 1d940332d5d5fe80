package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// An app's root filesystem is an overlay: the machine's root, read-only,
// under an upper dir of the app's own. The engine writes a few things into
// the upper dir before the container starts, always through an os.Root on
// it: the upper dir may come from a peer or have been changed by the app,
// and a link planted there must never take a write of this root daemon
// outside it.

// upperLayout is what prepareUpper puts in place for one app.
type upperLayout struct {
	user     User
	host     hostIDs
	hide     []string // container paths hidden behind empty dirs (opaque)
	stateDir string   // hidden too: the daemon's own files
	base     string   // the machine's root the overlay shows (for its accounts)
}

// prepareUpper writes the container's own files into the upper dir at
// upperPath. It is idempotent: a restore runs it over an upper dir that
// came with the app.
func prepareUpper(upperPath string, l upperLayout) error {
	if err := os.MkdirAll(upperPath, 0o755); err != nil {
		return err
	}
	// The overlay root takes the upper dir's mode, and CRIU checks the
	// root's mode on restore: keep it the same (the base's 0755) on every
	// machine.
	if err := os.Chmod(upperPath, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(upperPath)
	if err != nil {
		return err
	}
	defer root.Close()
	containerRoot := l.host.Root
	if l.user.IsRoot() {
		containerRoot = 0
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"the init", func() error {
			if err := ensureDir(root, ".handoff", 0o755, 0, 0); err != nil {
				return err
			}
			return writeFileIn(root, strings.TrimPrefix(initPath, "/"), []byte(initScript), 0o755)
		}},
		// /tmp is a directory of the upper dir that hides the base's:
		// not a tmpfs, which CRIU archives and unpacks with tar and gzip
		// on each dump and restore (~5 ms of the frozen time each).
		{"/tmp", func() error { return ensureOpaqueDir(root, "tmp", 0o777|fs.ModeSticky, 0, 0) }},
		{handoffDir, func() error {
			return ensureDir(root, strings.TrimPrefix(handoffDir, "/"), 0o755, containerRoot, containerRoot)
		}},
		{"the X socket dir", func() error {
			return ensureDir(root, "tmp/.X11-unix", 0o777|fs.ModeSticky, containerRoot, containerRoot)
		}},
		{"the runtime dir", func() error {
			return ensureDir(root, strings.TrimPrefix(runtimeDir(l.user), "/"), 0o700, l.host.UID, l.host.GID)
		}},
		{"the accounts", func() error { return writeAccounts(root, l.base, l.user) }},
		{"the home", func() error { return placeHome(root, l.user) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("prepare the container's %s: %w", s.what, err)
		}
	}
	hide := append([]string{}, l.hide...)
	if !l.user.IsRoot() {
		hide = append(hide, "/root")
	}
	if l.stateDir != "" {
		hide = append(hide, l.stateDir)
	}
	for _, p := range hide {
		rel := strings.TrimPrefix(path.Clean("/"+p), "/")
		if rel == "" || rel == "tmp" || strings.HasPrefix(rel, "tmp/") {
			continue // /tmp hides everything below it already
		}
		if err := ensureOpaqueDir(root, rel, 0o700, 0, 0); err != nil {
			return fmt.Errorf("hide %s from the app: %w", p, err)
		}
	}
	return nil
}

// runtimeDir is XDG_RUNTIME_DIR inside the container: in its /tmp, so that
// it travels with the app.
func runtimeDir(u User) string { return handoffDir + "/run-" + strconv.Itoa(u.UID) }

// placeHome makes the mount point of the user's home and hides the other
// homes beside it: the parent of the home is an empty opaque directory
// holding only the user's own.
func placeHome(root *os.Root, u User) error {
	rel := strings.TrimPrefix(path.Clean(u.Home), "/")
	if rel == "" {
		return errors.New("the home directory cannot be /")
	}
	if parent := path.Dir(rel); parent != "." && u.Home != "/root" {
		if err := ensureOpaqueDir(root, parent, 0o755, 0, 0); err != nil {
			return err
		}
	}
	return ensureDir(root, rel, 0o755, 0, 0)
}

// ensureDir makes rel a real directory (never a link) with mode and owner,
// making its parents as plain 0755 directories. What is in the way — a
// link, a file — is removed: the upper dir is the app's, the paths the
// engine needs are the engine's.
func ensureDir(root *os.Root, rel string, mode fs.FileMode, uid, gid int) error {
	if dir := path.Dir(rel); dir != "." {
		st, err := root.Lstat(dir)
		if err != nil || !st.IsDir() {
			if err := ensureDir(root, dir, 0o755, 0, 0); err != nil {
				return err
			}
		}
	}
	st, err := root.Lstat(rel)
	switch {
	case err == nil && !st.IsDir():
		if err := root.Remove(rel); err != nil {
			return err
		}
		fallthrough
	case errors.Is(err, fs.ErrNotExist):
		if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case err != nil:
		return err
	}
	// Lchown and Chmod on a name os.Root has just seen as a directory: a
	// swap for a link in between would make os.Root refuse one that leaves
	// the root, and the app is not running while the engine prepares it.
	if err := root.Lchown(rel, uid, gid); err != nil {
		return err
	}
	return root.Chmod(rel, mode)
}

// ensureOpaqueDir is ensureDir for a directory that hides whatever the
// base has at the same place.
func ensureOpaqueDir(root *os.Root, rel string, mode fs.FileMode, uid, gid int) error {
	if err := ensureDir(root, rel, mode, uid, gid); err != nil {
		return err
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fsetxattr(int(f.Fd()), opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("mark %s opaque: %w", rel, err)
	}
	return nil
}

// writeFileIn replaces rel with data, atomically and without following a
// link at rel.
func writeFileIn(root *os.Root, rel string, data []byte, mode fs.FileMode) error {
	tmp := rel + ".handoff-new"
	_ = root.Remove(tmp)
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Chmod(tmp, mode)
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp)
	}
	return err
}

// writeAccounts gives the container its own /etc/passwd and /etc/group:
// the base's system accounts and the app's user as it is inside, so that
// the user's name and home are the same on every machine the app visits,
// and other people's accounts are not shown.
func writeAccounts(root *os.Root, base string, u User) error {
	passwd, err := readBaseFile(base, "etc/passwd")
	if err != nil {
		return err
	}
	group, err := readBaseFile(base, "etc/group")
	if err != nil {
		return err
	}
	if err := ensureDir(root, "etc", 0o755, 0, 0); err != nil {
		return err
	}
	if err := writeFileIn(root, "etc/passwd", []byte(containerPasswd(passwd, u)), 0o644); err != nil {
		return err
	}
	return writeFileIn(root, "etc/group", []byte(containerGroup(group, u)), 0o644)
}

// readBaseFile reads a small file of the base (trusted: the machine's own
// root, or an image the administrator named).
func readBaseFile(base, rel string) (string, error) {
	data, err := os.ReadFile(filepath.Join(base, rel))
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// systemID reports ids of system accounts (Debian: below 1000, and nobody).
func systemID(id int) bool { return id < 1000 || id == overflowID }

func containerPasswd(base string, u User) string {
	var lines []string
	for _, line := range strings.Split(base, "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] == u.Name {
			continue
		}
		if id, err := strconv.Atoi(f[2]); err == nil && systemID(id) && id != u.UID {
			lines = append(lines, line)
		}
	}
	if !u.IsRoot() {
		lines = append(lines, fmt.Sprintf("%s:x:%d:%d::%s:%s", u.Name, u.UID, u.GID, u.Home, u.Shell))
	}
	return strings.Join(lines, "\n") + "\n"
}

func containerGroup(base string, u User) string {
	mine := map[int]string{u.GID: u.Name}
	for _, g := range u.Groups {
		mine[g.GID] = g.Name
	}
	var lines []string
	for _, line := range strings.Split(base, "\n") {
		f := strings.Split(line, ":")
		if len(f) != 4 {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil || !systemID(id) {
			continue
		}
		if _, ok := mine[id]; ok && id != 0 {
			continue // written below with the user as its member
		}
		if id == 0 {
			lines = append(lines, line)
			continue
		}
		f[3] = "" // members on this machine are nobody's business inside
		lines = append(lines, strings.Join(f, ":"))
	}
	if !u.IsRoot() {
		ids := make([]int, 0, len(mine))
		for id := range mine {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			members := u.Name
			if id == u.GID {
				members = ""
			}
			lines = append(lines, fmt.Sprintf("%s:x:%d:%s", mine[id], id, members))
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// stateDirInBase is the daemon's state dir as a path of the base, or ""
// when the base does not show it.
func stateDirInBase(base, stateDir string) string {
	rel, err := filepath.Rel(base, stateDir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return ""
	}
	return "/" + filepath.ToSlash(rel)
}

// makeStateDirs makes the engine's dirs in the state dir. Apps' containers
// restore from inside their own user namespaces, as ids that own nothing
// here: the state dir and every dir above it must let others pass through
// (search, not read); each app's own dir then admits its container only
// (makeAppDirs).
func makeStateDirs(stateDir string) error {
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{{stateDir, 0o711}, {filepath.Join(stateDir, "apps"), 0o711}, {filepath.Join(stateDir, "runc"), 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("engine: create %s: %w", d.path, err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("engine: %s: %w", d.path, err)
		}
	}
	for d := filepath.Dir(stateDir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("engine: %s: %w", d, err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("engine: the state dir %s is inside %s, which others may not pass through (mode %v): apps' containers must reach their files through it; use another state dir or chmod o+x %s",
				stateDir, d, st.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}
