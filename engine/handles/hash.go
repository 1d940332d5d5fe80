package handles

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"
)

// fileKey identifies a file's content without reading it: if device, inode,
// size, mtime and ctime are unchanged, so is the content (ctime cannot be
// set back by a program, unlike mtime).
type fileKey struct {
	Dev, Ino     uint64
	Size         int64
	MTime, CTime int64 // nanoseconds
}

func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{
		Dev: st.Dev, Ino: st.Ino, Size: st.Size,
		MTime: st.Mtim.Nano(), CTime: st.Ctim.Nano(),
	}
}

// HashCache remembers content hashes by (device, inode, size, mtime, ctime),
// so that rebuilding a manifest does not read shared libraries again. The
// daemon keeps one for its lifetime; it is safe for concurrent use. The zero
// value is ready to use.
type HashCache struct {
	mu     sync.Mutex
	m      map[fileKey]string
	hits   int64
	misses int64
	bytes  int64 // bytes hashed on misses
}

// NewHashCache returns an empty cache.
func NewHashCache() *HashCache { return &HashCache{} }

// Stats reports cache hits, misses and the bytes read to fill misses.
func (c *HashCache) Stats() (hits, misses, hashedBytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.bytes
}

// Len is the number of cached hashes.
func (c *HashCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *HashCache) get(k fileKey) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[k]
	if ok {
		c.hits++
	}
	return h, ok
}

func (c *HashCache) put(k fileKey, h string, n int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[fileKey]string)
	}
	c.m[k] = h
	c.misses++
	c.bytes += n
}

// hashFile hashes the file at path (which may be a /proc magic link). It
// stats the opened file and uses the cache when the key matches. It returns
// the hash and the stat of what it hashed.
func (c *HashCache) hashFile(path string) (string, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", st, fmt.Errorf("stat %s: %w", path, err)
	}
	// A magic link (/proc/PID/fd/N) names whatever the fd holds now: the
	// app may have reused it for a pipe or a terminal since it was listed,
	// and reading one of those waits forever. O_NONBLOCK keeps the open
	// from waiting for a FIFO's writer; only a regular file is read.
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", st, fmt.Errorf("%s is not a regular file (any more)", path)
	}
	if h, ok := c.get(keyOf(&st)); ok {
		return h, st, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOATIME|unix.O_NONBLOCK, 0)
	if err != nil {
		// O_NOATIME is refused for files we do not own without CAP_FOWNER.
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return "", st, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", st, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", st, fmt.Errorf("%s is not a regular file (any more)", path)
	}
	sum := xxh3.New()
	n, err := io.Copy(sum, f)
	if err != nil {
		return "", st, fmt.Errorf("hash %s: %w", path, err)
	}
	digest := sum.Sum128().Bytes()
	h := hex.EncodeToString(digest[:])
	// Only cache if the file did not change while we read it.
	var after unix.Stat_t
	if unix.Fstat(int(f.Fd()), &after) == nil && keyOf(&after) == keyOf(&st) {
		c.put(keyOf(&st), h, n)
	}
	return h, st, nil
}

// HashPath hashes the file at path with the cache (nil is allowed): the
// destination side uses it to answer "do you have this file?".
func (c *HashCache) HashPath(path string) (string, error) {
	h, _, err := c.hashFile(path)
	return h, err
}

func timeOf(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec).UTC() }

// HashBytes is the content hash of data, as manifests carry it.
func HashBytes(data []byte) string {
	digest := xxh3.Hash128(data).Bytes()
	return hex.EncodeToString(digest[:])
}
