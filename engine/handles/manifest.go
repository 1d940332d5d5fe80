package handles

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Version is the schema version of [Manifest]. Bump it on any change that an
// older reader would misunderstand (renamed or re-typed fields, new classes);
// adding an optional field does not need a bump.
const Version = 1

// Class says what a handle needs for the app to move to another machine.
type Class string

const (
	// Moves: travels with the checkpoint image or the upper dir (anonymous
	// memory, files in the upper dir or on the container's tmpfs, pipes and
	// sockets with both ends inside, ptys and anon inodes made inside).
	Moves Class = "moves"
	// Present: must exist, identical, on the destination (files of the base
	// layer, standard device nodes, kernel-provided files).
	Present Class = "present"
	// Blocks: the dump would fail or the restored state would be wrong.
	// Reason and Remedy say why and what the user can do.
	Blocks Class = "blocks"
)

// rank orders classes for display: blockers first.
func (c Class) rank() int {
	switch c {
	case Blocks:
		return 0
	case Present:
		return 1
	case Moves:
		return 2
	}
	return 3
}

// Kind is what a handle refers to.
type Kind string

const (
	KindRegular  Kind = "regular"  // regular file opened as an fd
	KindMapped   Kind = "mapped"   // regular file only memory-mapped (no fd)
	KindDir      Kind = "dir"      // directory
	KindDeleted  Kind = "deleted"  // file unlinked while open or mapped
	KindMemfd    Kind = "memfd"    // memfd_create file, SysV shm or shared anonymous mapping
	KindPipe     Kind = "pipe"     // anonymous pipe
	KindFIFO     Kind = "fifo"     // named pipe
	KindUnix     Kind = "unix"     // unix domain socket
	KindTCP      Kind = "tcp"      // TCP socket (v4 or v6)
	KindUDP      Kind = "udp"      // UDP socket (v4 or v6)
	KindNetlink  Kind = "netlink"  // netlink socket
	KindSocket   Kind = "socket"   // any other socket (Proto names it)
	KindTTY      Kind = "tty"      // terminal: pty master/slave, /dev/tty, console, VT
	KindCharDev  Kind = "chardev"  // character device node other than a terminal
	KindBlockDev Kind = "blockdev" // block device node
	KindAnon     Kind = "anon"     // anon inode: eventfd, epoll, timerfd, signalfd, inotify, pidfd, …
	KindNS       Kind = "nsfs"     // namespace file (/proc/PID/ns/*)
	KindUnknown  Kind = "unknown"
)

// Scope is what [Build] scans: one container, as the host sees it.
type Scope struct {
	// PIDs are the host PIDs of all processes of the container (from its
	// cgroup). InitPID is among them or is added.
	PIDs    []int
	InitPID int
	// UpperDir is the host path of the overlay upper dir: files there travel
	// with the container. Rootfs is the host path of the rootfs mountpoint,
	// used to turn host paths under it into container paths.
	UpperDir string
	Rootfs   string
	// Lower is the host path of the overlay's read-only lower layer. A file
	// the app has open that is still the lower file itself (same inode,
	// size and times) is hashed as that host file: a container's overlay has
	// a device number of its own, so a hash cached under it would serve
	// neither the next container over the same files nor a destination
	// checking a peer's manifest against its own "/".
	Lower string
	// Mounts are the container's mounts as configured, e.g. {"/", "overlay"},
	// {"/tmp", "tmpfs"}, {"/dev", "tmpfs"}, {"/proc", "proc"}.
	Mounts []MountSpec
	// Display is the geometry of the container's private X display.
	Display Display
}

// MountSpec is one configured mount of the container.
type MountSpec struct {
	Destination string `json:"destination"`
	Type        string `json:"type"`
	// Travels: the engine sends this mount's files with the image itself
	// (a bind mount of a directory the engine owns).
	Travels bool `json:"travels,omitempty"`
	// Home: the app user's home, bind-mounted. Its files are the user's:
	// they travel with the app's files of the user (engine.HomeFiles), not
	// as files of the base.
	Home bool `json:"home,omitempty"`
}

// Display is the geometry of the container's X display.
type Display struct {
	Width  int `json:"width"`
	Height int `json:"height"`
	Depth  int `json:"depth"`
}

// Manifest lists every handle of a container's processes and says, for each,
// whether it moves with the app, must be present on the destination, or
// blocks the move. See doc.go for the JSON schema.
type Manifest struct {
	Version   int       `json:"version"`
	InitPID   int       `json:"init_pid"`
	Display   Display   `json:"display"`
	Env       []string  `json:"env"`
	Mounts    []Mount   `json:"mounts"`
	Processes []Process `json:"processes"`
	Handles   []Handle  `json:"handles"`
	Summary   Summary   `json:"summary"`
	// Skipped names what could not be read (a process that exited during the
	// scan, an fd closed meanwhile). Informational.
	Skipped []string `json:"skipped,omitempty"`
}

// Mount is one line of the init's /proc/PID/mountinfo.
type Mount struct {
	ID         int    `json:"id"`
	Parent     int    `json:"parent"`
	Mountpoint string `json:"mountpoint"`
	FSType     string `json:"fstype"`
	Source     string `json:"source,omitempty"`
	Root       string `json:"root"`
	Options    string `json:"options,omitempty"`
	// Configured is the type of the Scope mount with this destination, or
	// empty when the mount was made by the runtime (masks, read-only binds, …).
	Configured string `json:"configured,omitempty"`
	Travels    bool   `json:"travels,omitempty"` // see MountSpec
	Home       bool   `json:"home,omitempty"`    // see MountSpec
}

// Process is one process of the container.
type Process struct {
	PID     int      `json:"pid"`             // host PID
	NSPID   int      `json:"nspid,omitempty"` // PID inside the container's PID namespace
	PPID    int      `json:"ppid"`            // host PID of the parent
	Comm    string   `json:"comm"`            // /proc/PID/comm
	Exe     string   `json:"exe,omitempty"`   // executable, as seen inside
	Cmdline []string `json:"cmdline,omitempty"`
	// Env is set only when it differs from Manifest.Env.
	Env []string `json:"env,omitempty"`
	// AnonBytes is the anonymous memory the checkpoint will carry
	// (smaps_rollup "Anonymous").
	AnonBytes int64 `json:"anon_bytes"`
}

// Handle is one open object, deduplicated across fds, processes and
// mappings: one entry per file path (per deleted inode, per pipe, per
// socket), with every fd and mapping that uses it in Users.
type Handle struct {
	// ID is the deduplication key and is stable for a given object:
	// "file:PATH", "outside:MNTID:PATH", "deleted:DEV:INO", "memfd:INO",
	// "pipe:INO", "socket:INO", "anon:PID:FD", "ns:TYPE:INO".
	ID    string `json:"id"`
	Kind  Kind   `json:"kind"`
	Class Class  `json:"class"`
	// Path as seen inside the container (for anon inodes: the kernel's name,
	// e.g. "anon_inode:[eventfd]"; for pipes and sockets: "pipe:[INO]").
	Path  string `json:"path"`
	Proto string `json:"proto,omitempty"` // socket protocol, e.g. "TCP", "UNIXv6"… as the kernel names it
	// Mount is the container mountpoint holding the file; Layer is "upper"
	// or "base" for files on the overlay root.
	Mount  string    `json:"mount,omitempty"`
	FSType string    `json:"fstype,omitempty"`
	Layer  string    `json:"layer,omitempty"`
	Device string    `json:"device,omitempty"` // "char 1:3" for device nodes
	Size   int64     `json:"size,omitempty"`
	MTime  time.Time `json:"mtime,omitzero"`
	Inode  uint64    `json:"inode,omitempty"`
	// Hash is the content hash of present regular files: XXH3-128, hex.
	Hash   string `json:"hash,omitempty"`
	Peer   *Peer  `json:"peer,omitempty"`
	Reason string `json:"reason,omitempty"` // blocks only: why, in plain words
	Remedy string `json:"remedy,omitempty"` // blocks only: what the user can do
	Note   string `json:"note,omitempty"`   // anything the engine should know (ghost file size, tcp-established, …)
	Users  []User `json:"users"`
}

// Peer is the other end of a pipe or socket.
type Peer struct {
	Inside  bool   `json:"inside"`
	Address string `json:"address,omitempty"` // "192.0.2.7:22", "/tmp/.X11-unix/X0", "@abstract"
	State   string `json:"state,omitempty"`   // TCP state, e.g. "ESTABLISHED", "LISTEN"
	Inode   uint64 `json:"inode,omitempty"`   // peer socket inode (unix)
	PID     int    `json:"pid,omitempty"`     // a host PID holding the other end, if found
	Comm    string `json:"comm,omitempty"`
}

// User is one use of a handle: an fd of a process, or the memory mappings of
// one process (FD == -1).
type User struct {
	PID   int    `json:"pid"`
	Comm  string `json:"comm"`
	FD    int    `json:"fd"`              // -1 for a memory mapping
	Flags string `json:"flags,omitempty"` // open flags, e.g. "O_RDWR|O_CLOEXEC"
	Pos   int64  `json:"pos,omitempty"`
	MntID int    `json:"mnt_id,omitempty"`
	Map   string `json:"map,omitempty"` // mapping permissions, e.g. "r--p,r-xp"
	// Locks are the file locks held through this fd: "POSIX ADVISORY
	// WRITE 0-EOF" (kind, mode, type, range).
	Locks []string `json:"locks,omitempty"`
}

// Summary counts handles per class.
type Summary struct {
	Moves   int `json:"moves"`
	Present int `json:"present"`
	Blocks  int `json:"blocks"`
	// PresentBytes is the size of the present files: what the destination
	// must already hold (or be sent through handle sync).
	PresentBytes int64 `json:"present_bytes"`
	// GhostBytes is the size of deleted files CRIU must carry in the image;
	// the dump's ghost limit must be at least the largest one (GhostMax).
	GhostBytes int64 `json:"ghost_bytes,omitempty"`
	GhostMax   int64 `json:"ghost_max,omitempty"`
	// TCPEstablished counts established TCP connections that move (inside
	// the container): the dump needs CRIU's --tcp-established.
	TCPEstablished int `json:"tcp_established,omitempty"`
	// AnonBytes is the anonymous memory of all processes.
	AnonBytes int64 `json:"anon_bytes"`
}

// Blocking returns the handles that block the move, in display order.
func (m *Manifest) Blocking() []Handle {
	var out []Handle
	for _, h := range m.Handles {
		if h.Class == Blocks {
			out = append(out, h)
		}
	}
	sortForDisplay(out)
	return out
}

// SharedLocks returns the files the app holds locks on that another
// machine may see too: files that neither travel with the app nor live in
// its own root (the user's home, which may be the same on both machines,
// as with homes on a file server). A destination that sees the same file
// cannot restore the app's lock while the source still holds it.
func (m *Manifest) SharedLocks() []Handle {
	homes := map[string]bool{}
	for _, mt := range m.Mounts {
		if mt.Home {
			homes[mt.Mountpoint] = true
		}
	}
	var out []Handle
	for _, h := range m.Handles {
		onShared := homes[h.Mount] || (h.Class == Present && h.FSType != "overlay")
		if !onShared || (h.Kind != KindRegular && h.Kind != KindDir) {
			continue
		}
		for _, u := range h.Users {
			if len(u.Locks) > 0 {
				out = append(out, h)
				break
			}
		}
	}
	return out
}

// Summarize recomputes m.Summary from m.Handles and m.Processes.
func (m *Manifest) Summarize() {
	var s Summary
	for _, h := range m.Handles {
		switch h.Class {
		case Moves:
			s.Moves++
			if h.Kind == KindDeleted {
				s.GhostBytes += h.Size
				s.GhostMax = max(s.GhostMax, h.Size)
			}
			if h.Kind == KindTCP && h.Peer != nil && h.Peer.State == "ESTABLISHED" {
				s.TCPEstablished++
			}
		case Present:
			s.Present++
			s.PresentBytes += h.Size
		case Blocks:
			s.Blocks++
		}
	}
	for _, p := range m.Processes {
		s.AnonBytes += p.AnonBytes
	}
	m.Summary = s
}

// Requirement is one file the destination must hold, identical.
type Requirement struct {
	Path   string `json:"path"`
	Kind   Kind   `json:"kind"`
	Size   int64  `json:"size,omitempty"`
	Hash   string `json:"hash,omitempty"` // XXH3-128; empty for directories and device nodes
	Device string `json:"device,omitempty"`
}

// Required lists what the destination must already have: one entry per
// present handle with a path, sorted by path. This is what handle sync sends.
func (m *Manifest) Required() []Requirement {
	var out []Requirement
	for _, h := range m.Handles {
		if h.Class != Present || !strings.HasPrefix(h.Path, "/") {
			continue
		}
		out = append(out, Requirement{Path: h.Path, Kind: h.Kind, Size: h.Size, Hash: h.Hash, Device: h.Device})
	}
	slices.SortFunc(out, func(a, b Requirement) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Missing returns the requirements the destination lacks. has reports
// whether the destination holds one (see [LocalChecker]); it is called
// from several goroutines at once, since checking means hashing files the
// destination has not hashed before (~0.2 s for an xterm running python on
// one core here). The result is sorted by path.
func (m *Manifest) Missing(has func(Requirement) bool) []Requirement {
	req := m.Required()
	lacks := make([]bool, len(req))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(req)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(req); i = int(next.Add(1) - 1) {
				lacks[i] = !has(req[i])
			}
		}()
	}
	wg.Wait()
	var out []Requirement
	for i, r := range req {
		if lacks[i] {
			out = append(out, r)
		}
	}
	return out
}

// Normalize sorts every list of m into its canonical order (handles by ID,
// users by PID and FD, processes by PID, mounts by mountpoint and ID) and
// recomputes the summary. [Manifest.MarshalJSON] marshals a normalized copy,
// so equal manifests always give identical bytes.
func (m *Manifest) Normalize() {
	slices.SortFunc(m.Mounts, func(a, b Mount) int {
		if c := strings.Compare(a.Mountpoint, b.Mountpoint); c != 0 {
			return c
		}
		return a.ID - b.ID
	})
	slices.SortFunc(m.Processes, func(a, b Process) int { return a.PID - b.PID })
	for i := range m.Handles {
		sortUsers(m.Handles[i].Users)
	}
	slices.SortFunc(m.Handles, func(a, b Handle) int { return strings.Compare(a.ID, b.ID) })
	slices.Sort(m.Skipped)
	m.Summarize()
}

func sortUsers(us []User) {
	slices.SortFunc(us, func(a, b User) int {
		if a.PID != b.PID {
			return a.PID - b.PID
		}
		return a.FD - b.FD
	})
}

// sortForDisplay orders handles blockers first, then present, then moves;
// within a class by first user's PID, then FD, then ID.
func sortForDisplay(hs []Handle) {
	first := func(h Handle) User {
		if len(h.Users) == 0 {
			return User{}
		}
		return h.Users[0]
	}
	slices.SortStableFunc(hs, func(a, b Handle) int {
		if c := a.Class.rank() - b.Class.rank(); c != 0 {
			return c
		}
		ua, ub := first(a), first(b)
		if ua.PID != ub.PID {
			return ua.PID - ub.PID
		}
		if ua.FD != ub.FD {
			return ua.FD - ub.FD
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// MarshalJSON writes m in canonical order (see [Manifest.Normalize]) without
// modifying m.
func (m Manifest) MarshalJSON() ([]byte, error) {
	c := m.clone()
	c.Normalize()
	type plain Manifest // no MarshalJSON method: no recursion
	return json.Marshal((*plain)(c))
}

func (m *Manifest) clone() *Manifest {
	c := *m
	c.Env = slices.Clone(m.Env)
	c.Mounts = slices.Clone(m.Mounts)
	c.Processes = slices.Clone(m.Processes)
	c.Skipped = slices.Clone(m.Skipped)
	c.Handles = make([]Handle, len(m.Handles))
	for i, h := range m.Handles {
		h.Users = slices.Clone(h.Users)
		if h.Peer != nil {
			p := *h.Peer
			h.Peer = &p
		}
		c.Handles[i] = h
	}
	return &c
}

// Parse decodes a manifest received from another machine and refuses
// versions this code does not understand, and requirements no manifest
// this code builds would hold: a path that is not absolute and clean, a
// hash that is not XXH3-128 in hex, a negative size.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode handles manifest: %w", err)
	}
	if m.Version < 1 || m.Version > Version {
		return nil, fmt.Errorf("handles manifest version %d is not supported (this side reads 1 to %d): update Handoff on both machines", m.Version, Version)
	}
	for _, r := range m.Required() {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("handles manifest: %w", err)
		}
	}
	return &m, nil
}

// check refuses a requirement this code would not have written.
func (r Requirement) check() error {
	if path.Clean(r.Path) != r.Path || strings.ContainsRune(r.Path, 0) || len(r.Path) > 4096 {
		return fmt.Errorf("required file %q is not a clean absolute path", r.Path)
	}
	if r.Size < 0 {
		return fmt.Errorf("required file %s has a size of %d", r.Path, r.Size)
	}
	if r.Hash != "" {
		if b, err := hex.DecodeString(r.Hash); err != nil || len(b) != 16 || strings.ToLower(r.Hash) != r.Hash {
			return fmt.Errorf("required file %s has a hash %q that is not XXH3-128 in hex", r.Path, r.Hash)
		}
	}
	return nil
}
