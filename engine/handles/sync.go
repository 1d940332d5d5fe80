package handles

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// LocalChecker returns a has-function for [Manifest.Missing] that looks
// for each path under root on this machine (normally "/"; a container
// rootfs also works): the file must exist and, when a hash is given, have
// that content hash. Paths are resolved inside root, so a manifest cannot make
// it read files elsewhere. cache may be nil.
func LocalChecker(root string, cache *HashCache) func(path, hash string) bool {
	return func(path, sum string) bool {
		ok, err := HasLocal(root, path, sum, cache)
		return ok && err == nil
	}
}

// HasLocal reports whether path exists under root with the given content hash
// (any content if sum is empty). A missing file is (false, nil).
func HasLocal(root, path, sum string, cache *HashCache) (bool, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(dir)
	flags := uint64(unix.O_PATH | unix.O_CLOEXEC)
	if sum != "" {
		flags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	}
	fd, err := unix.Openat2(dir, strings.TrimPrefix(path, "/"), &unix.OpenHow{
		Flags: flags, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s in %s: %w", path, root, err)
	}
	defer unix.Close(fd)
	if sum == "" {
		return true, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("stat %s in %s: %w", path, root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil
	}
	h, _, err := cache.hashFile(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return false, err
	}
	return h == sum, nil
}
