package engine

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// An app's upper dir travels with a handoff as a tar stream. Both ends treat
// it as hostile: the source reads a tree the app wrote (it may hold links
// planted to take the daemon elsewhere), the destination unpacks what a peer
// sent. Every file operation goes through an os.Root on the upper dir, which
// refuses to leave it; no link in the tree is ever followed.

// Limits on an upper dir received from a peer.
const (
	maxUpperBytes   = 16 << 30
	maxUpperEntries = 1 << 20
	maxUpperDepth   = 64
	opaqueXattr     = "trusted.overlay.opaque"
	paxXattrPrefix  = "SCHILY.xattr."
	// upperSpaceMargin is what an unpacked upper dir must leave free.
	upperSpaceMargin = 64 << 20
)

// idMapper translates file owners between this machine and the container
// (see toInside, toHost).
type idMapper func(uid, gid int) (int, int)

// writeUpperTar writes the upper dir at upperPath as a tar stream, owners as
// they are inside the container. Overlay whiteouts (character devices 0:0)
// and opaque-directory markers are kept: they record what the app deleted
// from the base. Extra names files of the base (container paths) that go
// along: a destination that lacks them gets them in its upper dir, where
// they shadow its own base.
func writeUpperTar(upperPath string, w io.Writer, base string, extra []string, inside idMapper) error {
	root, err := os.OpenRoot(upperPath)
	if err != nil {
		return fmt.Errorf("archive upper dir: %w", err)
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSocket != 0 {
			return nil // a socket file cannot travel; CRIU binds the socket anew
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(rel); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		hdr.Name = rel
		hdr.Uname, hdr.Gname = "", ""
		hdr.Uid, hdr.Gid = inside(hdr.Uid, hdr.Gid)
		// PAX keeps times to the nanosecond; left to itself the writer
		// rounds them to the second, and an editor that wrote a file
		// (vim) then finds it "changed since reading it" after a handoff.
		hdr.Format = tar.FormatPAX
		if d.IsDir() {
			hdr.Name += "/"
			if opaque, err := isOpaque(root, rel); err != nil {
				return err
			} else if opaque {
				hdr.PAXRecords = map[string]string{paxXattrPrefix + opaqueXattr: "y"}
			}
		}
		if !info.Mode().IsRegular() {
			return tw.WriteHeader(hdr)
		}
		f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() != hdr.Size {
			return fmt.Errorf("%s changed while it was archived; is the app frozen?", rel)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = io.CopyN(tw, f, hdr.Size)
		return err
	})
	if err != nil {
		return fmt.Errorf("archive upper dir: %w", err)
	}
	for _, p := range extra {
		if err := writeBaseFile(tw, root, base, p); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeBaseFile adds the base's file at container path p to the archive,
// unless the upper dir has its own version. The path is resolved inside the
// base as the container resolves it, links included, and never beyond it.
func writeBaseFile(tw *tar.Writer, upper *os.Root, base, p string) error {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return nil
	}
	if _, err := upper.Lstat(rel); err == nil {
		return nil // the upper dir already has its own version
	}
	h, err := pathrs.OpenInRoot(base, rel)
	if err != nil {
		return fmt.Errorf("base file %s the destination lacks cannot be sent: %w", p, err)
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("base file %s the destination lacks cannot be sent: %w", p, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("the destination lacks %s, which is not a regular file (%s) and cannot be sent: install it there", p, info.Mode().Type())
	}
	hdr, err := tar.FileInfoHeader(info, "")
	if err != nil {
		return err
	}
	hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = rel, overflowID, overflowID, "", ""
	hdr.Mode &= 0o777
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("send base file %s: %w", p, err)
	}
	return nil
}

func isOpaque(root *os.Root, rel string) (bool, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 16)
	n, err := unix.Fgetxattr(int(f.Fd()), opaqueXattr, buf)
	if err != nil {
		return false, nil
	}
	return string(buf[:n]) == "y", nil
}

// ErrUnsafeArchive is returned for an archive entry that could escape its
// root or create something an app must not receive.
var ErrUnsafeArchive = errors.New("unsafe archive entry")

// extractUpperTar unpacks an upper dir received from a peer into the dir at
// upperPath, owners mapped to this machine. It is written for hostile
// input: no absolute paths, no "..", no device nodes but overlay whiteouts,
// no hard links, no sparse files, no set-id bits; every operation goes
// through an os.Root, so a link the archive made earlier cannot redirect a
// later entry; the total size must fit the limits and the free space.
func extractUpperTar(r io.Reader, upperPath string, host idMapper) error {
	if err := os.MkdirAll(upperPath, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(upperPath)
	if err != nil {
		return err
	}
	defer root.Close()
	free := freeBytes(upperPath)
	tr := tar.NewReader(r)
	var total int64
	// A directory's times are set once everything in it is written:
	// writing its entries would change them again.
	type dirTimes struct {
		name         string
		atime, mtime time.Time
	}
	var dirs []dirTimes
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = root.Chtimes(dirs[i].name, dirs[i].atime, dirs[i].mtime)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read upper archive: %w", err)
		}
		if n >= maxUpperEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeArchive, maxUpperEntries)
		}
		name, err := archiveName(hdr.Name)
		if err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeGNUSparse || hasSparseRecords(hdr) {
			return fmt.Errorf("%w: %q is a sparse file", ErrUnsafeArchive, hdr.Name)
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("%w: %q: %v", ErrUnsafeArchive, hdr.Name, err)
			}
		}
		mode := fs.FileMode(hdr.Mode).Perm() // no setuid or setgid from a peer
		switch hdr.Typeflag {
		case tar.TypeDir:
			if hdr.Mode&0o1000 != 0 {
				mode |= fs.ModeSticky
			}
			if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			if st, err := root.Lstat(name); err != nil || !st.IsDir() {
				return fmt.Errorf("%w: %q is not a directory", ErrUnsafeArchive, hdr.Name)
			}
			if err := root.Chmod(name, mode|0o700); err != nil {
				return err
			}
			if hdr.PAXRecords[paxXattrPrefix+opaqueXattr] == "y" {
				if err := markOpaque(root, name); err != nil {
					return err
				}
			}
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > maxUpperBytes-total {
				return fmt.Errorf("%w: upper dir larger than %d bytes", ErrUnsafeArchive, int64(maxUpperBytes))
			}
			total += hdr.Size
			if free >= 0 && total > free-upperSpaceMargin {
				return fmt.Errorf("%w in %s: the app's files need %s", ErrNoSpace, upperPath, humanBytes(total))
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|unix.O_NOFOLLOW, mode)
			if err != nil {
				return fmt.Errorf("%w: %q: %v", ErrUnsafeArchive, hdr.Name, err)
			}
			_, err = io.CopyN(f, tr, hdr.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			// The link's text is kept as it is: it is resolved inside the
			// container's own root when the app uses it; here, nothing
			// follows it.
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		case tar.TypeChar:
			if hdr.Devmajor != 0 || hdr.Devminor != 0 {
				return fmt.Errorf("%w: device node %q (%d:%d)", ErrUnsafeArchive, hdr.Name, hdr.Devmajor, hdr.Devminor)
			}
			if err := mknodWhiteout(root, name); err != nil {
				return fmt.Errorf("whiteout %s: %w", name, err)
			}
		default:
			return fmt.Errorf("%w: %q has type %q (hard links, devices and fifos are not accepted)", ErrUnsafeArchive, hdr.Name, string(hdr.Typeflag))
		}
		uid, gid := host(hdr.Uid, hdr.Gid)
		if err := root.Lchown(name, uid, gid); err != nil {
			return fmt.Errorf("own %s: %w", name, err)
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
		case tar.TypeDir:
			dirs = append(dirs, dirTimes{name, hdr.AccessTime, hdr.ModTime})
		default:
			_ = root.Chtimes(name, hdr.AccessTime, hdr.ModTime)
		}
	}
}

// archiveName checks an entry's name and returns it relative and clean.
func archiveName(raw string) (string, error) {
	name := strings.TrimSuffix(raw, "/")
	if name == "" || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute or empty path %q", ErrUnsafeArchive, raw)
	}
	parts := strings.Split(name, "/")
	if len(parts) > maxUpperDepth {
		return "", fmt.Errorf("%w: %q is nested too deep", ErrUnsafeArchive, raw)
	}
	for _, part := range parts {
		if part == ".." || part == "." || part == "" || strings.ContainsRune(part, 0) {
			return "", fmt.Errorf("%w: %q is not a clean relative path", ErrUnsafeArchive, raw)
		}
	}
	return name, nil
}

func hasSparseRecords(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func markOpaque(root *os.Root, name string) error {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fsetxattr(int(f.Fd()), opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("mark %s opaque: %w", name, err)
	}
	return nil
}

// mknodWhiteout makes an overlay whiteout (a 0:0 character device) at name.
func mknodWhiteout(root *os.Root, name string) error {
	parent, err := root.OpenFile(path.Dir(name), os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer parent.Close()
	return unix.Mknodat(int(parent.Fd()), path.Base(name), unix.S_IFCHR, 0)
}

// freeBytes is the space left for root at path, or -1 if unknown.
func freeBytes(p string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
