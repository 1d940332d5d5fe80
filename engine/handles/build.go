package handles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Build scans the processes of s and returns their handles manifest. cache
// may be nil; the daemon should keep one [HashCache] for its lifetime so that
// shared libraries are hashed once. Processes and fds that vanish during the
// scan are skipped and named in Manifest.Skipped. Build needs root to see
// other users' processes, to read map_files and to enter the container's
// network namespace.
func Build(ctx context.Context, s Scope, cache *HashCache) (*Manifest, error) {
	if s.InitPID <= 0 {
		return nil, errors.New("build handles manifest: scope has no init pid")
	}
	b := &builder{
		s:        s,
		cache:    cache,
		pids:     map[int]bool{s.InitPID: true},
		handles:  map[string]*hstate{},
		visible:  map[string]visibility{},
		netnsRep: map[uint64]int{},
		procNS:   map[int]uint64{},
		nsInodes: map[uint64]bool{},
		rootFD:   -1,
	}
	for _, p := range s.PIDs {
		b.pids[p] = true
	}
	defer b.close()
	m := &Manifest{Version: Version, InitPID: s.InitPID, Display: s.Display}
	b.m = m
	if err := b.readMounts(); err != nil {
		return nil, err
	}
	b.readNamespaces()
	for _, pid := range slices.Sorted(mapsKeys(b.pids)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := b.scanProcess(pid); err != nil {
			if gone(err) {
				b.skip("pid %d exited during the scan", pid)
				continue
			}
			return nil, err
		}
	}
	if len(m.Processes) == 0 {
		return nil, fmt.Errorf("build handles manifest: none of the %d processes could be read (init pid %d)", len(b.pids), s.InitPID)
	}
	b.resolvePipes()
	if err := b.resolveSockets(); err != nil {
		return nil, err
	}
	b.findOutsideHolders()
	b.classifyAll()
	if err := b.hashPresent(ctx); err != nil {
		return nil, err
	}
	for _, st := range b.handles {
		m.Handles = append(m.Handles, st.h)
	}
	m.Normalize()
	return m, nil
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

type visibility struct {
	ok bool
}

// hstate is a handle under construction.
type hstate struct {
	h         Handle
	f         facts
	hashPaths []string // where its content can be read (magic links first)
	pipeR     bool
	pipeW     bool
	netns     uint64 // netns of the (first) holding process, for sockets
	peerLink  string // "pipe:[N]"/"socket:[N]" to look for outside the container
}

type builder struct {
	s        Scope
	cache    *HashCache
	m        *Manifest
	pids     map[int]bool
	mounts   map[int]*Mount
	byPoint  []*Mount // longest mountpoint first
	nsInodes map[uint64]bool
	rootFD   int // O_PATH fd of the init's root, -1 if unavailable
	handles  map[string]*hstate
	visible  map[string]visibility
	netnsRep map[uint64]int // netns inode → a container PID in it
	procNS   map[int]uint64 // PID → netns inode
	initEnv  []string
}

func (b *builder) close() {
	if b.rootFD >= 0 {
		unix.Close(b.rootFD)
	}
}

func (b *builder) skip(format string, args ...any) {
	b.m.Skipped = append(b.m.Skipped, fmt.Sprintf(format, args...))
}

func (b *builder) readMounts() error {
	raw, err := readProc(b.s.InitPID, "mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts of init pid %d: %w", b.s.InitPID, err)
	}
	infos, err := mountinfo.GetMountsFromReader(bytes.NewReader(raw), nil)
	if err != nil {
		return fmt.Errorf("parse mounts of init pid %d: %w", b.s.InitPID, err)
	}
	configured := map[string]string{}
	travels, home := map[string]bool{}, map[string]bool{}
	for _, ms := range b.s.Mounts {
		configured[filepath.Clean(ms.Destination)] = ms.Type
		travels[filepath.Clean(ms.Destination)] = ms.Travels
		home[filepath.Clean(ms.Destination)] = ms.Home
	}
	b.mounts = make(map[int]*Mount, len(infos))
	for _, in := range infos {
		mt := Mount{
			ID: in.ID, Parent: in.Parent, Mountpoint: in.Mountpoint, FSType: in.FSType,
			Source: in.Source, Root: in.Root, Options: in.Options,
			Configured: configured[in.Mountpoint], Travels: travels[in.Mountpoint], Home: home[in.Mountpoint],
		}
		b.m.Mounts = append(b.m.Mounts, mt)
	}
	for i := range b.m.Mounts {
		mt := &b.m.Mounts[i]
		b.mounts[mt.ID] = mt
		b.byPoint = append(b.byPoint, mt)
	}
	// Longest mountpoint first; among stacked mounts on one mountpoint the
	// one on top (the child of the other) first.
	slices.SortStableFunc(b.byPoint, func(x, y *Mount) int {
		if d := len(y.Mountpoint) - len(x.Mountpoint); d != 0 {
			return d
		}
		if x.Mountpoint == y.Mountpoint {
			if x.Parent == y.ID {
				return -1
			}
			if y.Parent == x.ID {
				return 1
			}
		}
		return strings.Compare(x.Mountpoint, y.Mountpoint)
	})
	return nil
}

func (b *builder) readNamespaces() {
	for _, ns := range []string{"net", "mnt", "pid", "ipc", "uts", "cgroup", "user", "time"} {
		var st unix.Stat_t
		if unix.Stat(procPath(b.s.InitPID, "ns", ns), &st) == nil {
			b.nsInodes[st.Ino] = true
		}
	}
	fd, err := unix.Open(procPath(b.s.InitPID, "root"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		b.rootFD = fd
	}
}

// mountFor returns the container mount holding a container path.
func (b *builder) mountFor(path string) *Mount {
	for _, mt := range b.byPoint {
		mp := mt.Mountpoint
		if mp == "/" || path == mp || strings.HasPrefix(path, mp+"/") {
			return mt
		}
	}
	return nil
}

// inUpper reports whether a path on the overlay root mount exists in the
// upper dir (and is not a whiteout).
func (b *builder) inUpper(mt *Mount, path string) bool {
	if b.s.UpperDir == "" || mt == nil || mt.FSType != "overlay" || mt.Mountpoint != "/" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(b.s.UpperDir, path), &st); err != nil {
		return false
	}
	whiteout := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
	return !whiteout
}

// visibleInside reports whether path names a file inside the container,
// resolved in the init's root without following links out of it.
func (b *builder) visibleInside(path string) bool {
	if v, ok := b.visible[path]; ok {
		return v.ok
	}
	ok := true
	if b.rootFD >= 0 {
		fd, err := unix.Openat2(b.rootFD, strings.TrimPrefix(path, "/"), &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil {
			unix.Close(fd)
		} else {
			ok = !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR)
		}
	}
	b.visible[path] = visibility{ok: ok}
	return ok
}

// containerPath turns a host path under the rootfs mountpoint into the
// path inside the container; other paths are returned unchanged.
func (b *builder) containerPath(p string) string {
	if r := filepath.Clean(b.s.Rootfs); b.s.Rootfs != "" && r != "/" && strings.HasPrefix(p, r+"/") {
		return p[len(r):]
	}
	return p
}

func (b *builder) scanProcess(pid int) error {
	comm, err := readProc(pid, "comm")
	if err != nil {
		return fmt.Errorf("read comm of pid %d: %w", pid, err)
	}
	p := Process{PID: pid, Comm: strings.TrimSpace(string(comm))}
	status, err := readProc(pid, "status")
	if err != nil {
		return fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	ps := parseStatus(status)
	if ps.Tgid != 0 && ps.Tgid != pid {
		b.skip("pid %d is a thread of %d", pid, ps.Tgid) // given tasks instead of procs
		return nil
	}
	p.PPID, p.NSPID = ps.PPID, ps.NSPID
	if cl, err := readProc(pid, "cmdline"); err == nil {
		p.Cmdline = splitNUL(cl)
	}
	if exe, err := os.Readlink(procPath(pid, "exe")); err == nil {
		p.Exe = b.containerPath(exe)
	}
	env, err := readProc(pid, "environ")
	if err != nil && !gone(err) {
		return fmt.Errorf("read environment of pid %d: %w", pid, err)
	}
	if pid == b.s.InitPID {
		b.initEnv = splitNUL(env)
		b.m.Env = b.initEnv
	} else if e := splitNUL(env); !slices.Equal(e, b.initEnv) {
		p.Env = e
	}
	if sm, err := readProc(pid, "smaps_rollup"); err == nil {
		p.AnonBytes = parseAnonKB(sm)
	}
	var nsst unix.Stat_t
	if err := unix.Stat(procPath(pid, "ns", "net"), &nsst); err == nil {
		b.procNS[pid] = nsst.Ino
		if _, ok := b.netnsRep[nsst.Ino]; !ok {
			b.netnsRep[nsst.Ino] = pid
		}
	}
	if err := b.scanFDs(pid, p.Comm); err != nil {
		return err
	}
	if err := b.scanMaps(pid, p.Comm); err != nil {
		return err
	}
	b.m.Processes = append(b.m.Processes, p)
	return nil
}

var nsLink = regexp.MustCompile(`^[a-z_]+:\[[0-9]+\]$`)

func (b *builder) scanFDs(pid int, comm string) error {
	ents, err := os.ReadDir(procPath(pid, "fd"))
	if err != nil {
		return fmt.Errorf("read fds of pid %d: %w", pid, err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := b.addFD(pid, comm, fd); err != nil {
			if gone(err) {
				b.skip("pid %d fd %d closed during the scan", pid, fd)
				continue
			}
			return err
		}
	}
	return nil
}

func (b *builder) addFD(pid int, comm string, fd int) error {
	fdPath := procPath(pid, "fd", strconv.Itoa(fd))
	link, err := os.Readlink(fdPath)
	if err != nil {
		return fmt.Errorf("read fd %d of pid %d: %w", fd, pid, err)
	}
	raw, err := readProc(pid, "fdinfo", strconv.Itoa(fd))
	if err != nil {
		return fmt.Errorf("read fdinfo %d of pid %d: %w", fd, pid, err)
	}
	info, err := parseFdinfo(raw)
	if err != nil {
		return fmt.Errorf("fd %d of pid %d: %w", fd, pid, err)
	}
	u := User{PID: pid, Comm: comm, FD: fd, Flags: flagString(info.Flags), Pos: info.Pos, MntID: info.MntID, Locks: info.Locks}
	acc := info.Flags & unix.O_ACCMODE

	switch {
	case strings.HasPrefix(link, "pipe:["):
		st := b.handle("pipe:"+inodeOf(link), KindPipe, link)
		st.h.Inode = parseInode(link)
		st.peerLink = link
		st.pipeR = st.pipeR || acc != unix.O_WRONLY
		st.pipeW = st.pipeW || acc != unix.O_RDONLY
		st.h.Users = append(st.h.Users, u)
		return nil
	case strings.HasPrefix(link, "socket:["):
		proto := sockProto(fdPath)
		st := b.handle("socket:"+inodeOf(link), sockKind(proto), link)
		st.h.Inode = parseInode(link)
		st.h.Proto = proto
		if _, ok := b.procNS[pid]; ok && st.netns == 0 {
			st.netns = b.procNS[pid]
		}
		st.h.Users = append(st.h.Users, u)
		return nil
	case strings.HasPrefix(link, "anon_inode:"):
		name := anonName(link)
		st := b.handle(fmt.Sprintf("anon:%d:%d", pid, fd), KindAnon, link)
		st.f.Anon = name
		st.h.Users = append(st.h.Users, u)
		return nil
	case nsLink.MatchString(link):
		st := b.handle("ns:"+link, KindNS, link)
		st.h.Inode = parseInode(link)
		st.f.NSInside = b.nsInodes[st.h.Inode]
		st.h.Users = append(st.h.Users, u)
		return nil
	case !strings.HasPrefix(link, "/"):
		st := b.handle(fmt.Sprintf("other:%d:%d", pid, fd), KindUnknown, link)
		st.h.Users = append(st.h.Users, u)
		return nil
	}

	var sb unix.Stat_t
	if err := unix.Stat(fdPath, &sb); err != nil {
		return fmt.Errorf("stat fd %d of pid %d: %w", fd, pid, err)
	}
	path, deleted := strings.CutSuffix(link, " (deleted)")
	deleted = deleted || (sb.Mode&unix.S_IFMT == unix.S_IFREG && sb.Nlink == 0)
	path = b.containerPath(path)
	mt := b.mounts[info.MntID]
	kind := kindOfMode(sb.Mode, sb.Rdev)
	var key string
	switch {
	case kind == KindRegular && deleted && (strings.HasPrefix(path, "/memfd:") || strings.HasPrefix(path, "/secretmem")):
		kind, key = KindMemfd, fmt.Sprintf("memfd:%d", sb.Ino)
	case deleted:
		kind, key = KindDeleted, fmt.Sprintf("deleted:%d:%d", sb.Dev, sb.Ino)
	case mt == nil:
		key = fmt.Sprintf("outside:%d:%s", info.MntID, path)
	default:
		key = "file:" + path
	}
	st := b.handle(key, kind, path)
	if st.h.Kind == KindMapped && kind == KindRegular { // seen as a mapping first
		st.h.Kind, st.f.Kind = KindRegular, KindRegular
	}
	b.fillStat(st, &sb)
	st.f.MntID = info.MntID
	st.f.Outside = mt == nil
	if mt == nil && isMqueue(fdPath) {
		// A POSIX message queue lives on its IPC namespace's internal
		// mount, which no mountinfo lists: not a file from outside.
		st.h.FSType, st.f.FSType = "mqueue", "mqueue"
	}
	if mt != nil {
		st.h.Mount, st.h.FSType = mt.Mountpoint, mt.FSType
		st.f.Mountpoint, st.f.FSType, st.f.Travels, st.f.Home = mt.Mountpoint, mt.FSType, mt.Travels, mt.Home
		if mt.Home {
			st.h.Layer = "home"
		}
		if mt.FSType == "overlay" && mt.Mountpoint == "/" && !deleted {
			st.f.InUpper = b.inUpper(mt, path)
			st.h.Layer = layerName(st.f.InUpper)
		}
	}
	if kind == KindFIFO {
		st.pipeR = st.pipeR || acc != unix.O_WRONLY
		st.pipeW = st.pipeW || acc != unix.O_RDONLY
	}
	if kind == KindRegular {
		st.hashPaths = append(st.hashPaths, fdPath)
	}
	st.h.Users = append(st.h.Users, u)
	return nil
}

// isMqueue reports whether the file an fd link points at is on an mqueue
// file system.
func isMqueue(fdPath string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(fdPath, &fs) == nil && fs.Type == mqueueMagic
}

// mqueueMagic is MQUEUE_MAGIC of linux/magic.h, which x/sys/unix lacks.
const mqueueMagic = 0x19800202

func layerName(upper bool) string {
	if upper {
		return "upper"
	}
	return "base"
}

func (b *builder) fillStat(st *hstate, sb *unix.Stat_t) {
	switch st.h.Kind {
	case KindRegular, KindMapped, KindDeleted, KindMemfd:
		st.h.Size = sb.Size
		st.f.Size = sb.Size
		st.h.MTime = timeOf(sb.Mtim)
	case KindDir:
		st.h.MTime = timeOf(sb.Mtim)
	case KindCharDev, KindBlockDev, KindTTY:
		maj, mnr := unix.Major(sb.Rdev), unix.Minor(sb.Rdev)
		st.f.Major, st.f.Minor = maj, mnr
		t := "char"
		if st.h.Kind == KindBlockDev {
			t = "block"
		}
		st.h.Device = fmt.Sprintf("%s %d:%d", t, maj, mnr)
	}
	if st.h.Inode == 0 {
		st.h.Inode = sb.Ino
	}
}

func kindOfMode(mode uint32, rdev uint64) Kind {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return KindRegular
	case unix.S_IFDIR:
		return KindDir
	case unix.S_IFIFO:
		return KindFIFO
	case unix.S_IFSOCK:
		return KindSocket
	case unix.S_IFBLK:
		return KindBlockDev
	case unix.S_IFCHR:
		maj, mnr := unix.Major(rdev), unix.Minor(rdev)
		if isPTY(maj, mnr) || maj == 4 || (maj == 5 && mnr <= 1) {
			return KindTTY
		}
		return KindCharDev
	}
	return KindUnknown
}

// handle returns the handle under key, creating it.
func (b *builder) handle(key string, kind Kind, path string) *hstate {
	if st, ok := b.handles[key]; ok {
		return st
	}
	st := &hstate{h: Handle{ID: key, Kind: kind, Path: path}}
	st.f.Kind, st.f.Path = kind, path
	b.handles[key] = st
	return st
}

func inodeOf(link string) string {
	i := strings.IndexByte(link, '[')
	j := strings.LastIndexByte(link, ']')
	if i < 0 || j < i {
		return link
	}
	return link[i+1 : j]
}

func parseInode(link string) uint64 {
	n, _ := strconv.ParseUint(inodeOf(link), 10, 64)
	return n
}

// sockProto asks sockfs for the protocol name ("TCP", "UNIX-STREAM", …).
func sockProto(fdPath string) string {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(fdPath, "system.sockprotoname", buf)
	if err != nil || n <= 0 {
		return ""
	}
	return strings.TrimRight(string(buf[:n]), "\x00")
}

func sockKind(proto string) Kind {
	switch {
	case strings.HasPrefix(proto, "UNIX"):
		return KindUnix
	case proto == "TCP" || proto == "TCPv6" || proto == "MPTCP" || proto == "MPTCPv6":
		return KindTCP
	case proto == "UDP" || proto == "UDPv6" || proto == "UDPLITE" || proto == "UDPLITEv6":
		return KindUDP
	case proto == "NETLINK":
		return KindNetlink
	}
	return KindSocket
}

// scanMaps adds the memory-mapped files of pid, one user per file and process.
func (b *builder) scanMaps(pid int, comm string) error {
	raw, err := readProc(pid, "maps")
	if err != nil {
		return fmt.Errorf("read memory maps of pid %d: %w", pid, err)
	}
	ents, err := parseMaps(raw)
	if err != nil {
		return fmt.Errorf("memory maps of pid %d: %w", pid, err)
	}
	type group struct {
		first mapEntry
		perms []string
	}
	var order []string
	groups := map[string]*group{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Path, "/") || e.Inode == 0 {
			continue // anonymous memory, [heap], [stack], [vdso], …
		}
		k := fmt.Sprintf("%d:%d:%d:%s", e.Major, e.Minor, e.Inode, e.Path)
		g, ok := groups[k]
		if !ok {
			g = &group{first: e}
			groups[k] = g
			order = append(order, k)
		}
		if !slices.Contains(g.perms, e.Perms) {
			g.perms = append(g.perms, e.Perms)
		}
	}
	for _, k := range order {
		g := groups[k]
		e := g.first
		u := User{PID: pid, Comm: comm, FD: -1, Map: strings.Join(g.perms, ",")}
		mapPath := procPath(pid, "map_files", fmt.Sprintf("%x-%x", e.Start, e.End))
		path, deleted := strings.CutSuffix(unescapeOctal(e.Path), " (deleted)")
		path = b.containerPath(path)
		var key string
		kind := KindMapped
		switch {
		case deleted && (strings.HasPrefix(path, "/memfd:") || strings.HasPrefix(path, "/secretmem")):
			kind, key = KindMemfd, fmt.Sprintf("memfd:%d", e.Inode)
		case deleted && (strings.HasPrefix(path, "/SYSV") || path == "/dev/zero"):
			kind, key = KindMemfd, fmt.Sprintf("shmem:%d:%d", e.Minor, e.Inode)
		case deleted:
			kind, key = KindDeleted, fmt.Sprintf("deleted:%d:%d", unix.Mkdev(e.Major, e.Minor), e.Inode)
		case !b.visibleInside(path):
			key = "outside:0:" + path
		default:
			key = "file:" + path
		}
		st := b.handle(key, kind, path)
		if st.h.Size == 0 && st.h.MTime.IsZero() {
			var sb unix.Stat_t
			if err := unix.Stat(mapPath, &sb); err == nil {
				b.fillStat(st, &sb)
			} else if b.rootFD >= 0 && !deleted {
				// map_files needs CAP_SYS_ADMIN; fall back to the path.
				if err := unix.Fstatat(b.rootFD, strings.TrimPrefix(path, "/"), &sb, 0); err == nil {
					b.fillStat(st, &sb)
				}
			}
		}
		if strings.HasPrefix(key, "outside:") {
			st.f.Outside = true
		} else if kind == KindMapped || kind == KindDeleted {
			if mt := b.mountFor(path); mt != nil && st.h.Mount == "" {
				st.h.Mount, st.h.FSType = mt.Mountpoint, mt.FSType
				st.f.Mountpoint, st.f.FSType, st.f.Travels, st.f.Home = mt.Mountpoint, mt.FSType, mt.Travels, mt.Home
				if mt.Home {
					st.h.Layer = "home"
				}
				if mt.FSType == "overlay" && mt.Mountpoint == "/" && !deleted {
					st.f.InUpper = b.inUpper(mt, path)
					st.h.Layer = layerName(st.f.InUpper)
				}
			}
		}
		if kind == KindMapped {
			st.hashPaths = append(st.hashPaths, mapPath)
		}
		st.h.Users = append(st.h.Users, u)
	}
	return nil
}

// resolvePipes marks pipes and FIFOs with both ends inside, and queues the
// one-sided ones for the search of outside holders.
func (b *builder) resolvePipes() {
	for _, st := range b.handles {
		if st.h.Kind != KindPipe && st.h.Kind != KindFIFO {
			continue
		}
		st.f.PipeBothInside = st.pipeR && st.pipeW
		if st.f.PipeBothInside || st.h.Kind == KindFIFO {
			st.peerLink = ""
		}
	}
}

// netTables are the socket tables of one network namespace.
type netTables struct {
	tcp, udp map[uint64]inetSock
	unix     map[uint64]unixSock
	unixErr  error
}

func (b *builder) loadTables(pid int, nsPath string) (*netTables, error) {
	t := &netTables{tcp: map[uint64]inetSock{}, udp: map[uint64]inetSock{}}
	for _, f := range []struct {
		name string
		into map[uint64]inetSock
	}{{"tcp", t.tcp}, {"tcp6", t.tcp}, {"udp", t.udp}, {"udp6", t.udp}} {
		var raw []byte
		var err error
		if pid == 0 {
			raw, err = os.ReadFile(procRoot + "/self/net/" + f.name)
		} else {
			raw, err = readProc(pid, "net", f.name)
		}
		if err != nil {
			if gone(err) {
				continue // no IPv6, or the process left
			}
			return nil, fmt.Errorf("read %s sockets of pid %d: %w", f.name, pid, err)
		}
		rows, err := parseNetInet(raw)
		if err != nil {
			return nil, fmt.Errorf("parse %s sockets of pid %d: %w", f.name, pid, err)
		}
		for _, r := range rows {
			f.into[r.Inode] = r
		}
	}
	t.unix, t.unixErr = unixSockets(nsPath)
	return t, nil
}

func (b *builder) resolveSockets() error {
	need := false
	for _, st := range b.handles {
		if strings.HasPrefix(st.h.ID, "socket:") {
			need = true
			break
		}
	}
	if !need {
		return nil
	}
	var selfNS unix.Stat_t
	if err := unix.Stat(procRoot+"/self/ns/net", &selfNS); err != nil {
		return fmt.Errorf("stat own network namespace: %w", err)
	}
	host, err := b.loadTables(0, "")
	if err != nil {
		return err
	}
	tables := map[uint64]*netTables{selfNS.Ino: host}
	tablesOf := func(ns uint64) *netTables {
		if t, ok := tables[ns]; ok {
			return t
		}
		pid := b.netnsRep[ns]
		t, err := b.loadTables(pid, procPath(pid, "ns", "net"))
		if err != nil {
			b.skip("socket tables of pid %d: %v", pid, err)
			t = &netTables{}
		}
		if t.unixErr != nil {
			b.skip("unix sockets of pid %d: %v", pid, t.unixErr)
		}
		tables[ns] = t
		return t
	}
	for _, st := range b.handles {
		if !strings.HasPrefix(st.h.ID, "socket:") {
			continue
		}
		ino := st.h.Inode
		own := host
		if st.netns != 0 {
			own = tablesOf(st.netns)
		}
		foreign := st.netns != 0 && st.netns != selfNS.Ino
		if st.h.Kind == KindSocket && st.h.Proto == "" { // no xattr: guess from tables
			switch {
			case own.tcp[ino] != (inetSock{}) || host.tcp[ino] != (inetSock{}):
				st.h.Kind = KindTCP
			case own.udp[ino] != (inetSock{}) || host.udp[ino] != (inetSock{}):
				st.h.Kind = KindUDP
			case hasUnix(own, ino) || hasUnix(host, ino):
				st.h.Kind = KindUnix
			}
			st.f.Kind = st.h.Kind
		}
		switch st.h.Kind {
		case KindTCP, KindUDP:
			tbl, hostTbl := own.tcp, host.tcp
			if st.h.Kind == KindUDP {
				tbl, hostTbl = own.udp, host.udp
			}
			row, ok := tbl[ino]
			if !ok && foreign {
				if row, ok = hostTbl[ino]; ok {
					st.f.ForeignNet = true
				}
			}
			if !ok {
				continue // not bound or not connected
			}
			st.h.Path = fmt.Sprintf("%s %s", st.h.Path, row.Local)
			st.f.TCPState = row.State
			st.f.Remote = row.Remote
			if row.Remote.IsValid() && !row.Remote.Addr().IsUnspecified() {
				st.h.Peer = &Peer{Address: row.Remote.String(), Inside: isLocal(row.Remote.Addr()) && !st.f.ForeignNet}
				if st.h.Kind == KindTCP {
					st.h.Peer.State = row.State
				}
			} else if row.State == "LISTEN" {
				st.h.Note = "listening"
			}
		case KindUnix:
			s, ok := lookupUnix(own, ino)
			if !ok {
				s, ok = lookupUnix(host, ino)
			}
			if !ok {
				continue
			}
			if s.Name != "" {
				st.h.Path = st.h.Path + " " + s.Name
			}
			if s.Peer == 0 {
				continue
			}
			p := &Peer{Inode: s.Peer}
			if ps, ok := lookupUnix(own, s.Peer); ok && ps.Name != "" {
				p.Address = ps.Name
			} else if ps, ok := lookupUnix(host, s.Peer); ok && ps.Name != "" {
				p.Address = ps.Name
			}
			_, p.Inside = b.handles[fmt.Sprintf("socket:%d", s.Peer)]
			st.h.Peer = p
			if !p.Inside {
				st.peerLink = fmt.Sprintf("socket:[%d]", s.Peer)
			}
		}
	}
	return nil
}

func hasUnix(t *netTables, ino uint64) bool {
	_, ok := lookupUnix(t, ino)
	return ok
}

func lookupUnix(t *netTables, ino uint64) (unixSock, bool) {
	if t == nil || t.unix == nil {
		return unixSock{}, false
	}
	s, ok := t.unix[ino]
	return s, ok
}

func isLocal(a netip.Addr) bool { return a.IsLoopback() || isMappedLoopback(a) }

// findOutsideHolders looks, in every process outside the container, for
// the other ends of one-sided pipes and of unix sockets whose peer is not
// held inside, to name them in reasons.
func (b *builder) findOutsideHolders() {
	want := map[string][]*hstate{}
	for _, st := range b.handles {
		if st.peerLink != "" {
			want[st.peerLink] = append(want[st.peerLink], st)
		}
	}
	if len(want) == 0 {
		return
	}
	found, sameEnd := map[string]Peer{}, map[string]Peer{}
	// A process of the container may have been born after the PID list was
	// taken (a shell running a command substitution): whoever shares the
	// init's PID namespace is inside, whether listed or not.
	// (Only when the init has a PID namespace of its own: otherwise every
	// process would count as inside.)
	initNS, _ := os.Readlink(procPath(b.s.InitPID, "ns", "pid"))
	if hostNS, _ := os.Readlink("/proc/self/ns/pid"); initNS == hostNS {
		initNS = ""
	}
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		b.skip("list processes: %v", err)
		return
	}
	for _, pe := range procs {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil || b.pids[pid] {
			continue
		}
		fds, err := os.ReadDir(procPath(pid, "fd"))
		if err != nil {
			continue
		}
		for _, fe := range fds {
			link, err := os.Readlink(procPath(pid, "fd", fe.Name()))
			if err != nil {
				continue
			}
			if _, ok := want[link]; !ok {
				continue
			}
			if _, done := found[link]; done {
				continue
			}
			comm, _ := readProc(pid, "comm")
			ns, _ := os.Readlink(procPath(pid, "ns", "pid"))
			p := Peer{PID: pid, Comm: strings.TrimSpace(string(comm)), Inside: initNS != "" && ns == initNS}
			// A process that holds the same end of a pipe as the container
			// (e.g. the launcher that passed it in) is named only when no
			// one holds the other end.
			if st := want[link][0]; st.h.Kind == KindPipe && !holdsOtherEnd(st, pid, fe.Name()) {
				if _, ok := sameEnd[link]; !ok {
					sameEnd[link] = p
				}
				continue
			}
			found[link] = p
		}
		if len(found) == len(want) {
			break
		}
	}
	for link, p := range sameEnd {
		if _, ok := found[link]; !ok {
			found[link] = p
		}
	}
	for link, sts := range want {
		holder, ok := found[link]
		for _, st := range sts {
			switch st.h.Kind {
			case KindPipe:
				if ok { // otherwise the other end is closed: the pipe moves
					st.h.Peer = &Peer{PID: holder.PID, Comm: holder.Comm, Inode: st.h.Inode, Inside: holder.Inside}
				}
			case KindUnix:
				if ok && st.h.Peer != nil {
					st.h.Peer.PID, st.h.Peer.Comm = holder.PID, holder.Comm
					st.h.Peer.Inside = st.h.Peer.Inside || holder.Inside
				}
			}
		}
	}
}

// holdsOtherEnd reports whether fd of pid opens the end of st's pipe that
// no process of the container holds.
func holdsOtherEnd(st *hstate, pid int, fd string) bool {
	raw, err := readProc(pid, "fdinfo", fd)
	if err != nil {
		return false
	}
	info, err := parseFdinfo(raw)
	if err != nil {
		return false
	}
	acc := info.Flags & unix.O_ACCMODE
	reads, writes := acc != unix.O_WRONLY, acc != unix.O_RDONLY
	return (reads && !st.pipeR) || (writes && !st.pipeW)
}

func (b *builder) classifyAll() {
	for _, st := range b.handles {
		st.f.Kind, st.f.Proto = st.h.Kind, st.h.Proto
		st.f.Peer = st.h.Peer
		st.f.Holder = holderOf(st.h.Users)
		v := classify(st.f)
		st.h.Class, st.h.Reason, st.h.Remedy = v.Class, v.Reason, v.Remedy
		if v.Note != "" {
			if st.h.Note != "" {
				st.h.Note += "; " + v.Note
			} else {
				st.h.Note = v.Note
			}
		}
	}
}

func holderOf(us []User) string {
	if len(us) == 0 {
		return ""
	}
	sortUsers(us)
	s := fmt.Sprintf("%s (pid %d)", us[0].Comm, us[0].PID)
	others := 0
	for _, u := range us[1:] {
		if u.PID != us[0].PID {
			others++
		}
	}
	if others > 0 {
		s += fmt.Sprintf(" and %d more", others)
	}
	return s
}

// hashPresent hashes every present regular or mapped file, in parallel.
func (b *builder) hashPresent(ctx context.Context) error {
	var work []*hstate
	for _, st := range b.handles {
		if st.h.Class == Present && (st.h.Kind == KindRegular || st.h.Kind == KindMapped) {
			work = append(work, st)
		}
	}
	if len(work) == 0 {
		return nil
	}
	jobs := make(chan *hstate)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(work)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for st := range jobs {
				msg := b.hashOne(st)
				if msg != "" {
					mu.Lock()
					b.skip("%s", msg)
					mu.Unlock()
				}
			}
		}()
	}
	var err error
	for _, st := range work {
		if err = ctx.Err(); err != nil {
			break
		}
		jobs <- st
	}
	close(jobs)
	wg.Wait()
	return err
}

// lowerTwin returns the host path of the lower layer's file that the
// present file at path is (the overlay reports the real inode of a file not
// copied up), or "" when it is not, or there is no lower layer. The app's
// file is looked at through paths, the ways hashOne may read it: a magic
// link can name another file by now (the fd was closed and reused).
func (b *builder) lowerTwin(path string, paths []string) (string, unix.Stat_t) {
	var lower unix.Stat_t
	if b.s.Lower == "" {
		return "", lower
	}
	twin, err := securejoin.SecureJoin(b.s.Lower, path)
	if err != nil || unix.Lstat(twin, &lower) != nil || lower.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", lower
	}
	for _, p := range paths {
		var open unix.Stat_t
		if unix.Stat(p, &open) == nil && sameFile(&open, &lower) {
			return twin, lower
		}
	}
	return "", lower
}

// sameFile compares what an overlay shows of a lower file with that file:
// the device differs, the rest does not.
func sameFile(a, b *unix.Stat_t) bool {
	return a.Ino == b.Ino && a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim
}

// hashOne hashes a present file through its magic links, falling back to
// its path in the init's root. It returns a message when it could not.
func (b *builder) hashOne(st *hstate) string {
	var errs []error
	paths := st.hashPaths
	if b.rootFD >= 0 {
		paths = append(paths, procPath(b.s.InitPID, "root")+st.h.Path)
	}
	twin, want := b.lowerTwin(st.h.Path, paths)
	if twin != "" {
		paths = append([]string{twin}, paths...)
	}
	for _, p := range paths {
		h, sb, err := b.cache.hashFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p == twin && !sameFile(&sb, &want) {
			continue // replaced on the host since: hash what the app has
		}
		st.h.Hash = h
		if st.h.Size == 0 {
			st.h.Size = sb.Size
		}
		if st.h.MTime.IsZero() {
			st.h.MTime = timeOf(sb.Mtim)
		}
		return ""
	}
	return fmt.Sprintf("hash %s: %v", st.h.Path, errors.Join(errs...))
}
