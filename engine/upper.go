package engine

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Limits on an upper dir received from a peer.
const (
	maxUpperBytes   = 16 << 30
	maxUpperEntries = 1 << 20
	opaqueXattr     = "trusted.overlay.opaque"
	paxXattrPrefix  = "SCHILY.xattr."
)

// writeUpperTar writes an overlay upper dir as a tar stream. Overlay
// whiteouts (character devices 0:0) and opaque-directory markers are kept:
// they record what the app deleted from the base. Extra names files of the
// base (container paths) that go along: a destination that lacks them gets
// them in its upper dir, where they shadow its own base.
func writeUpperTar(root string, w io.Writer, base string, extra []string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
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
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
			if v, err := getxattr(path, opaqueXattr); err == nil && v == "y" {
				hdr.PAXRecords = map[string]string{paxXattrPrefix + opaqueXattr: "y"}
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive upper dir: %w", err)
	}
	for _, p := range extra {
		rel := strings.TrimPrefix(filepath.Clean("/"+p), "/")
		if _, err := os.Lstat(filepath.Join(root, rel)); err == nil || rel == "" {
			continue // the upper dir already has its own version
		}
		src, err := securejoin.SecureJoin(base, rel)
		if err != nil {
			return err
		}
		info, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("base file %s the destination lacks cannot be sent: %w", p, err)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("the destination lacks %s, which is not a regular file (%s) and cannot be sent: install it there", p, info.Mode().Type())
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = rel
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		_, err = io.CopyN(tw, f, hdr.Size)
		f.Close()
		if err != nil {
			return fmt.Errorf("send base file %s: %w", p, err)
		}
	}
	return tw.Close()
}

func getxattr(path, name string) (string, error) {
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// ErrUnsafeArchive is returned for an archive entry that could escape its
// root or create something an app must not receive.
var ErrUnsafeArchive = errors.New("unsafe archive entry")

// extractUpperTar unpacks an upper dir received from a peer into root. It is
// written for hostile input: no absolute paths, no "..", no device nodes but
// overlay whiteouts, no link escapes (every path is resolved inside root with
// securejoin, symlinks included), no set-id bits, bounded sizes.
func extractUpperTar(r io.Reader, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read upper archive: %w", err)
		}
		if n >= maxUpperEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeArchive, maxUpperEntries)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if name == "" || filepath.IsAbs(name) || strings.HasPrefix(name, "/") {
			return fmt.Errorf("%w: absolute path %q", ErrUnsafeArchive, hdr.Name)
		}
		for _, part := range strings.Split(name, "/") {
			if part == ".." {
				return fmt.Errorf("%w: %q climbs out with ..", ErrUnsafeArchive, hdr.Name)
			}
		}
		target, err := securejoin.SecureJoin(root, name)
		if err != nil {
			return fmt.Errorf("%w: %q: %v", ErrUnsafeArchive, hdr.Name, err)
		}
		mode := os.FileMode(hdr.Mode).Perm() // no setuid, setgid or sticky from a peer
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, mode|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			if hdr.PAXRecords[paxXattrPrefix+opaqueXattr] == "y" {
				if err := unix.Lsetxattr(target, opaqueXattr, []byte("y"), 0); err != nil {
					return fmt.Errorf("mark %s opaque: %w", name, err)
				}
			}
		case tar.TypeReg:
			total += hdr.Size
			if hdr.Size < 0 || total > maxUpperBytes {
				return fmt.Errorf("%w: upper dir larger than %d bytes", ErrUnsafeArchive, int64(maxUpperBytes))
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|unix.O_NOFOLLOW, mode)
			if err != nil {
				return err
			}
			_, err = io.CopyN(f, tr, hdr.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
		case tar.TypeSymlink:
			// The link's text is kept as is: it is resolved inside the
			// container's own root at run time, and every later entry is
			// placed through securejoin, so it cannot redirect extraction.
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		case tar.TypeChar:
			if hdr.Devmajor != 0 || hdr.Devminor != 0 {
				return fmt.Errorf("%w: device node %q (%d:%d)", ErrUnsafeArchive, hdr.Name, hdr.Devmajor, hdr.Devminor)
			}
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil { // overlay whiteout
				return fmt.Errorf("whiteout %s: %w", name, err)
			}
		default:
			return fmt.Errorf("%w: %q has type %q (hard links, devices and fifos are not accepted)", ErrUnsafeArchive, hdr.Name, string(hdr.Typeflag))
		}
		_ = os.Lchown(target, hdr.Uid, hdr.Gid)
		if hdr.Typeflag != tar.TypeSymlink {
			_ = os.Chtimes(target, hdr.AccessTime, hdr.ModTime)
		}
	}
}
