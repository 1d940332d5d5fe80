package engine

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Placing a user's files that arrive with an app. The rule: a file that
// differs here is overwritten only when nobody changed it here since it was
// last synced (sent from here, or received here); otherwise the version
// here is kept and the incoming one is written beside it as
// "NAME (from DEVICE).EXT", and both users are told. Nothing is lost.

// HomePlacement reports what became of the files that came with an app.
type HomePlacement struct {
	Written   []string       `json:"written,omitempty"`   // new here, or replaced a copy nobody changed
	Unchanged int            `json:"unchanged,omitempty"` // already the same bytes here
	Kept      []HomeConflict `json:"kept,omitempty"`      // changed here too: both versions kept
	Bytes     int64          `json:"bytes"`               // written into the home
}

// HomeConflict is a file that differed here and was changed here since the
// last sync: the version here stays at Path, the incoming one is at SavedAs.
type HomeConflict struct {
	Path    string `json:"path"`
	SavedAs string `json:"saved_as"`
}

// syncRecords remembers, per user, the hash each file had when it was last
// synced with another machine, so that a later arrival can tell "changed
// here since" from "still what was synced".
type syncRecords struct {
	dir string
	mu  sync.Mutex
}

func (s *syncRecords) path(user string) string {
	return filepath.Join(s.dir, user+".json")
}

func (s *syncRecords) load(user string) map[string]string {
	m := map[string]string{}
	data, err := os.ReadFile(s.path(user))
	if err == nil {
		_ = json.Unmarshal(data, &m)
	}
	return m
}

func (s *syncRecords) update(user string, f func(map[string]string)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.load(user)
	f(m)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	return writeJSONAtomic(s.path(user), m)
}

// RecordHomeSync notes files of user as synced: those that went with an
// app by their hashes, and those the app only read (read, relative to the
// user's home here) by their size and time, which is all "changed here
// since?" needs for a file that did not travel. The sender calls it once
// the app runs on the other machine.
func (e *Engine) RecordHomeSync(user string, files []HomeFile, read []string) error {
	if !validUserName(user) {
		return fmt.Errorf("no valid user %q", user)
	}
	stamps := map[string]string{}
	if len(read) > 0 {
		if u, err := homeOf(user); err == nil {
			if root, err := os.OpenRoot(u.Home); err == nil {
				for _, p := range read {
					if st, ok := isRegularIn(root, p); ok {
						stamps[p] = stamp(st)
					}
				}
				root.Close()
			}
		}
	}
	return e.sync.update(user, func(m map[string]string) {
		for p, s := range stamps {
			m[p] = s
		}
		for _, f := range files {
			m[f.Path] = f.Hash
		}
	})
}

// stamp is a file's size and modification time, as a sync record keeps
// them for a file whose bytes it did not hash.
func stamp(st fs.FileInfo) string {
	return fmt.Sprintf("stat:%d:%d", st.Size(), st.ModTime().UnixNano())
}

// NeedHomeFiles says which of files the home of user here lacks (missing,
// or with other bytes): only those need to be sent.
func (e *Engine) NeedHomeFiles(user string, files []HomeFile) ([]string, error) {
	u, err := homeOf(user)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(u.Home)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var need []string
	for _, f := range files {
		if !validHomePath(f.Path) {
			return nil, fmt.Errorf("%w: %q is not a path in the home", ErrHomeFiles, f.Path)
		}
		if cur, err := statHomeFile(root, f.Path); err == nil && cur.Hash == f.Hash {
			continue
		}
		need = append(need, f.Path)
	}
	return need, nil
}

// PlaceHomeFiles puts files that came with an app (from the device named
// from) into the home of user here. staged holds the files that were sent,
// at their paths relative to the home, checked against their hashes; files
// not staged must already be here with the same bytes.
func (e *Engine) PlaceHomeFiles(user, from string, files []HomeFile, staged string) (HomePlacement, error) {
	u, err := homeOf(user)
	if err != nil {
		return HomePlacement{}, err
	}
	return e.placeHomeFiles(u, from, files, staged)
}

func (e *Engine) placeHomeFiles(u User, from string, files []HomeFile, staged string) (HomePlacement, error) {
	var out HomePlacement
	user := u.Name
	home, err := os.OpenRoot(u.Home)
	if err != nil {
		return out, err
	}
	defer home.Close()
	var src *os.Root
	if staged != "" {
		if src, err = os.OpenRoot(staged); err != nil {
			return out, err
		}
		defer src.Close()
	}
	synced := e.sync.load(user)
	placed := map[string]string{}
	for _, f := range files {
		if !validHomePath(f.Path) {
			return out, fmt.Errorf("%w: %q is not a path in the home", ErrHomeFiles, f.Path)
		}
		cur, curErr := statHomeFile(home, f.Path)
		if curErr == nil && cur.Hash == f.Hash {
			out.Unchanged++
			placed[f.Path] = f.Hash
			continue
		}
		if src == nil {
			return out, fmt.Errorf("%w: %s differs here but was not sent", ErrHomeFiles, f.Path)
		}
		st, exists := home.Lstat(f.Path)
		rec := synced[f.Path]
		untouched := curErr == nil && rec != "" && (cur.Hash == rec || stamp(st) == rec)
		target := f.Path
		if exists == nil && !untouched {
			target = freeName(home, conflictName(f.Path, from))
		}
		n, err := writeHomeFile(home, src, f, target, u)
		if err != nil {
			return out, fmt.Errorf("put %s in the home of %s: %w", f.Path, user, err)
		}
		out.Bytes += n
		if target == f.Path {
			out.Written = append(out.Written, f.Path)
			placed[f.Path] = f.Hash
		} else {
			out.Kept = append(out.Kept, HomeConflict{Path: f.Path, SavedAs: target})
		}
	}
	err = e.sync.update(user, func(m map[string]string) {
		for p, h := range placed {
			m[p] = h
		}
	})
	return out, err
}

// conflictName is the name an incoming version takes beside one changed
// here: "notes (from ws-a).txt".
func conflictName(rel, from string) string {
	from = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, from)
	dir, base := path.Split(rel)
	ext := path.Ext(base)
	if ext == base { // ".bashrc": a dotfile has no extension
		ext = ""
	}
	return dir + strings.TrimSuffix(base, ext) + " (from " + from + ")" + ext
}

// freeName returns name, or name with " 2", " 3"… before its extension,
// whichever does not exist yet.
func freeName(root *os.Root, name string) string {
	if _, err := root.Lstat(name); errors.Is(err, fs.ErrNotExist) {
		return name
	}
	ext := path.Ext(name)
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s %d%s", strings.TrimSuffix(name, ext), i, ext)
		if _, err := root.Lstat(n); errors.Is(err, fs.ErrNotExist) {
			return n
		}
	}
}

// writeHomeFile copies f from the staged files to target in the home,
// owned by u, through a temporary file in the same directory and a rename:
// the home's version is whole before or after, never half. Every directory
// on the way must be the user's: the daemon writes into a home on the
// user's behalf, never into a place the user could not.
func writeHomeFile(home, src *os.Root, f HomeFile, target string, u User) (int64, error) {
	in, err := openHomeFile(src, f.Path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	if err := userDirs(home, path.Dir(target), u); err != nil {
		return 0, err
	}
	var b [6]byte
	rand.Read(b[:])
	tmp := path.Join(path.Dir(target), ".handoff-"+hex.EncodeToString(b[:]))
	out, err := home.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil && n != f.Size {
		err = fmt.Errorf("%s has %d bytes, not %d", f.Path, n, f.Size)
	}
	if err == nil {
		err = out.Sync()
	}
	if err == nil {
		err = out.Chown(u.UID, u.GID)
	}
	if err == nil {
		err = out.Chmod(fs.FileMode(f.Mode).Perm())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = home.Chtimes(tmp, f.MTime, f.MTime)
	}
	if err == nil {
		err = home.Rename(tmp, target)
	}
	if err != nil {
		_ = home.Remove(tmp)
		return 0, err
	}
	return n, nil
}

// userDirs makes sure dir (relative to the home) is a directory of u's,
// making what is missing as u's own.
func userDirs(home *os.Root, dir string, u User) error {
	if dir == "." || dir == "" {
		return ownedBy(home, ".", u)
	}
	if err := userDirs(home, path.Dir(dir), u); err != nil {
		return err
	}
	st, err := home.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := home.Mkdir(dir, 0o755); err != nil {
			return err
		}
		return home.Lchown(dir, u.UID, u.GID)
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return ownedBy(home, dir, u)
}

func ownedBy(root *os.Root, rel string, u User) error {
	st, err := root.Lstat(rel)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Uid) != u.UID {
		return fmt.Errorf("%s is not %s's directory", rel, u.Name)
	}
	return nil
}

// HomeProbe leaves a file of its own in the home of the app's user, for a
// destination to look for: one that sees it shares this home (NFS or any
// shared mount), and nothing needs to be copied. remove takes it away.
func (e *Engine) HomeProbe(name string) (token string, remove func(), err error) {
	a, err := e.lookup(name)
	if err != nil {
		return "", nil, err
	}
	a.mu.Lock()
	host := a.rec.Host
	a.mu.Unlock()
	root, err := os.OpenRoot(host.Home)
	if err != nil {
		return "", nil, err
	}
	var b [16]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	f, err := root.OpenFile(probeName(token), os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		root.Close()
		return "", nil, err
	}
	_, err = f.WriteString(token)
	if err == nil {
		err = f.Chown(host.UID, host.GID)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	remove = func() {
		_ = root.Remove(probeName(token))
		root.Close()
	}
	if err != nil {
		remove()
		return "", nil, err
	}
	return token, remove, nil
}

func probeName(token string) string { return ".handoff-probe-" + token }

// SharesHome reports whether the home of user here shows the probe a
// source left in its own (see HomeProbe).
func SharesHome(user, token string) bool {
	if len(token) != 32 || strings.Trim(token, "0123456789abcdef") != "" {
		return false
	}
	u, err := homeOf(user)
	if err != nil {
		return false
	}
	root, err := os.OpenRoot(u.Home)
	if err != nil {
		return false
	}
	defer root.Close()
	f, err := openHomeFile(root, probeName(token))
	if err != nil {
		return false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 64))
	return err == nil && string(data) == token
}
