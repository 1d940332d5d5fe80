package handles

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// LocalChecker returns a has-function for [Manifest.Missing] that looks
// for each requirement under root on this machine (normally "/"; a
// container rootfs also works); see [HasLocal]. exclude names directories
// inside root (e.g. the daemon's state dir) whose files are never looked
// at: a peer must not learn whether this machine holds a file there with
// the content it guesses. cache may be nil.
func LocalChecker(root string, cache *HashCache, exclude ...string) func(Requirement) bool {
	return func(r Requirement) bool {
		for _, dir := range exclude {
			if within(r.Path, dir) {
				return false
			}
		}
		ok, err := HasLocal(root, r, cache)
		return ok && err == nil
	}
}

// within reports whether p is dir or below it (both clean and absolute).
func within(p, dir string) bool {
	dir = path.Clean("/" + dir)
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// kernelMagic are the filesystems whose files are the kernel's (by statfs
// magic): reading one as root reads kernel state (/proc/kcore is a regular
// file of 128 TiB), and none is a file an app needs identical on the
// destination.
var kernelMagic = map[int64]bool{
	unix.PROC_SUPER_MAGIC: true, unix.SYSFS_MAGIC: true, unix.DEVPTS_SUPER_MAGIC: true,
	unix.CGROUP_SUPER_MAGIC: true, unix.CGROUP2_SUPER_MAGIC: true, unix.DEBUGFS_MAGIC: true,
	unix.TRACEFS_MAGIC: true, unix.SECURITYFS_MAGIC: true, unix.BPF_FS_MAGIC: true,
	unix.PSTOREFS_MAGIC: true, unix.EFIVARFS_MAGIC: true, unix.SELINUX_MAGIC: true,
	unix.SMACK_MAGIC: true, unix.BINFMTFS_MAGIC: true, unix.NSFS_MAGIC: true,
	unix.HUGETLBFS_MAGIC: true,
	0x19800202:           true, // mqueue
	0x65735543:           true, // fusectl
	0x62656570:           true, // configfs
}

// HasLocal reports whether this machine holds what r requires, under root:
// a directory, a standard device node (by its number), or a regular file
// of r's size with r's content hash (any content if r has no hash). A
// missing file is (false, nil), and so is anything else: a FIFO, another
// device, a socket, a symlink anywhere on the way, a file of a kernel
// filesystem (/proc, /sys…). Nothing is opened for reading but a regular
// file, and that without waiting: a peer names these paths, and this side
// is root.
func HasLocal(root string, r Requirement, cache *HashCache) (bool, error) {
	p := r.Path
	if !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsRune(p, 0) || len(p) > unix.PathMax {
		return false, nil
	}
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(dir)
	// O_PATH: the file is found, not opened (a FIFO does not wait for a
	// writer, a device's driver is not called); no symlink is followed,
	// not even inside root.
	fd, err := unix.Openat2(dir, strings.TrimPrefix(p, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP),
		errors.Is(err, unix.EACCES), errors.Is(err, unix.EXDEV):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for %s in %s: %w", p, root, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("stat %s in %s: %w", p, root, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return r.Hash == "" && isStandardDevice(unix.Major(st.Rdev), unix.Minor(st.Rdev)), nil
	case unix.S_IFDIR, unix.S_IFREG:
	default:
		return false, nil
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return false, fmt.Errorf("statfs %s in %s: %w", p, root, err)
	}
	if kernelMagic[int64(fs.Type)] {
		return false, nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return r.Hash == "", nil
	}
	if r.Hash == "" {
		return true, nil
	}
	// Another size is another content: no need to read it (a peer could
	// name a file of many GiB).
	if st.Size != r.Size {
		return false, nil
	}
	// Reopened for reading through the O_PATH fd: the same inode, whatever
	// happened to the path meanwhile. hashFile reads only a regular file,
	// opened O_NONBLOCK.
	h, _, err := cache.hashFile(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return false, err
	}
	return h == r.Hash, nil
}
