package handles

import (
	"fmt"
	"net/netip"
	"strings"
)

// facts is everything classification needs to know about one handle, already
// read from /proc and the socket tables. classify is a pure function of it.
type facts struct {
	Kind  Kind
	Path  string // container path, or the kernel's name ("pipe:[12]")
	Anon  string // anon inode type: "eventfd", "eventpoll", "io_uring", …
	Proto string // socket protocol as the kernel names it ("TCP", "UNIX", …)

	Major, Minor uint32 // device nodes and terminals
	Size         int64

	// Outside: the file is on no mount of the container (its mnt_id is not in
	// the init's mountinfo, or a mapped path is not visible inside).
	Outside    bool
	MntID      int
	FSType     string // type of the container mount holding the file
	Mountpoint string
	InUpper    bool // the path exists in the overlay upper dir
	Travels    bool // on a mount the engine sends with the image
	Home       bool // in the user's home, which travels as the user's files

	NSInside bool // nsfs: one of the container's own namespaces

	// Pipes and FIFOs: both a reader and a writer are container processes.
	PipeBothInside bool
	// Sockets and pipes: the other end, nil when there is none (listening,
	// unconnected, other end closed).
	Peer *Peer
	// ForeignNet: the socket belongs to a network namespace that is not the
	// container's (it was made on the host and passed in).
	ForeignNet bool
	TCPState   string
	Remote     netip.AddrPort // connected remote address of TCP/UDP sockets

	Holder string // "xterm (pid 812)": who holds it, for remedies
}

type verdict struct {
	Class  Class
	Reason string
	Remedy string
	Note   string
}

func moves(note string) verdict   { return verdict{Class: Moves, Note: note} }
func present(note string) verdict { return verdict{Class: Present, Note: note} }
func blocks(reason, remedy string) verdict {
	return verdict{Class: Blocks, Reason: reason, Remedy: remedy}
}

// Standard device nodes every destination has (major:minor).
var standardDevices = map[[2]uint32]string{
	{1, 3}: "/dev/null", {1, 5}: "/dev/zero", {1, 7}: "/dev/full",
	{1, 8}: "/dev/random", {1, 9}: "/dev/urandom", {5, 0}: "/dev/tty",
}

func isStandardDevice(major, minor uint32) bool {
	_, ok := standardDevices[[2]uint32{major, minor}]
	return ok
}

// isPTY reports pseudo-terminal devices: /dev/ptmx and /dev/pts/N.
func isPTY(major, minor uint32) bool {
	return (major == 5 && minor == 2) || (major >= 136 && major <= 143)
}

// Anon inode types CRIU checkpoints and restores.
var dumpableAnon = map[string]bool{
	"eventfd": true, "eventpoll": true, "timerfd": true, "signalfd": true,
	"inotify": true, "fanotify": true, "pidfd": true,
}

// kernelFS are filesystems whose files the kernel provides on every machine;
// CRIU reopens them by path.
var kernelFS = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true,
	"securityfs": true, "debugfs": true, "tracefs": true, "bpf": true, "nsfs": true,
	"devpts": true,
}

// volatileFS are filesystems whose content CRIU saves with the mount.
var volatileFS = map[string]bool{"tmpfs": true, "ramfs": true}

func holderOr(f facts, def string) string {
	if f.Holder != "" {
		return f.Holder
	}
	return def
}

func peerName(p *Peer) string {
	if p == nil {
		return "a process outside the container"
	}
	var s string
	switch {
	case p.PID != 0:
		s = fmt.Sprintf("host process %s (pid %d)", p.Comm, p.PID)
	case p.Inode != 0:
		s = fmt.Sprintf("socket %d outside the container", p.Inode)
	default:
		s = "a process outside the container"
	}
	if p.Address != "" {
		s += " at " + p.Address
	}
	return s
}

// classify decides the class of one handle.
func classify(f facts) verdict {
	quit := "quit " + holderOr(f, "the program holding it")

	// POSIX message queues: CRIU checkpoints System V queues, not these
	// (it cannot even find their mount: "Can't lookup mount=N").
	if f.FSType == "mqueue" && isFileKind(f.Kind) {
		return blocks(
			fmt.Sprintf("POSIX message queue %s: CRIU cannot checkpoint POSIX message queues", f.Path),
			"close the queue in the program (mq_close) or "+quit)
	}
	// A file-system object from outside the container's mounts: CRIU cannot
	// even look its mount up ("Can't lookup mount=N for fd=…").
	if f.Outside && isFileKind(f.Kind) {
		switch {
		case f.Kind == KindTTY:
			return blocks(
				fmt.Sprintf("%s is a terminal of the host, not of the container (the program was started from a host terminal)", f.Path),
				"start the app without a host terminal (handoff run does that), or "+quit)
		case f.Kind == KindCharDev && isStandardDevice(f.Major, f.Minor):
			return blocks(
				fmt.Sprintf("%s was opened on the host and passed in (mount %d is not one of the container's mounts)", f.Path, f.MntID),
				"give the app's processes stdio opened inside the container (e.g. its own /dev/null), or "+quit)
		default:
			return blocks(
				fmt.Sprintf("%s was opened outside the container (mount %d is not one of the container's mounts), e.g. a host file passed in", f.Path, f.MntID),
				"close the file in the program or "+quit+"; then copy the file into the container if the app needs it")
		}
	}

	switch f.Kind {
	case KindRegular, KindMapped, KindDir:
		return classifyFile(f)
	case KindDeleted:
		return moves(fmt.Sprintf("deleted while open: CRIU carries its %d bytes in the image as a ghost file (the dump's ghost limit must allow it)", f.Size))
	case KindMemfd:
		return moves("memory-backed file: saved in the image")
	case KindPipe, KindFIFO:
		if f.Peer != nil && !f.Peer.Inside {
			what := "pipe"
			if f.Kind == KindFIFO {
				what = "named pipe " + f.Path
			}
			return blocks(
				fmt.Sprintf("%s whose other end is held by %s", what, peerName(f.Peer)),
				"end the program on the host that feeds or reads this pipe, or "+quit)
		}
		if f.PipeBothInside || (f.Peer != nil && f.Peer.Inside) {
			return moves("both ends inside the container")
		}
		return moves("other end closed")
	case KindUnix:
		if f.Peer != nil && !f.Peer.Inside {
			return blocks(
				fmt.Sprintf("unix socket connected to %s", peerName(f.Peer)),
				fmt.Sprintf("close the connection to %s (for a host X client or D-Bus: close that window or session), or %s", peerOf(f.Peer), quit))
		}
		if f.Peer != nil {
			return moves("both ends inside the container")
		}
		return moves("not connected (listening or unbound)")
	case KindTCP, KindUDP:
		return classifyInet(f, quit)
	case KindNetlink:
		if f.ForeignNet {
			return blocks("netlink socket of the host's network namespace, passed in", "close it in the program or "+quit)
		}
		return moves("")
	case KindSocket:
		if f.Proto == "PACKET" && !f.ForeignNet {
			return moves("")
		}
		return blocks(fmt.Sprintf("%s socket: CRIU cannot checkpoint this socket type here", protoOr(f.Proto)), "close it in the program or "+quit)
	case KindTTY:
		if isPTY(f.Major, f.Minor) {
			return moves("pseudo-terminal of the container")
		}
		if f.Major == 5 && f.Minor == 0 {
			return present("")
		}
		return blocks(fmt.Sprintf("%s is a terminal device of this machine (char %d:%d)", f.Path, f.Major, f.Minor), "close the terminal in the program or "+quit)
	case KindCharDev:
		if isStandardDevice(f.Major, f.Minor) {
			return present("standard device")
		}
		return blocks(
			fmt.Sprintf("%s is a device node (char %d:%d) that is not a standard device: the destination may lack it and its state cannot move", f.Path, f.Major, f.Minor),
			"close the device in the program or "+quit)
	case KindBlockDev:
		return blocks(
			fmt.Sprintf("%s is a block device (%d:%d): its state cannot move", f.Path, f.Major, f.Minor),
			"close the device in the program or "+quit)
	case KindAnon:
		if dumpableAnon[f.Anon] {
			return moves("")
		}
		return blocks(fmt.Sprintf("%s handle: CRIU cannot checkpoint it", f.Anon), quit)
	case KindNS:
		if f.NSInside {
			return moves("namespace of the container")
		}
		return blocks(fmt.Sprintf("%s refers to a namespace outside the container", f.Path), "close it in the program or "+quit)
	}
	return blocks(fmt.Sprintf("unknown kind of handle %q", f.Path), quit)
}

func isFileKind(k Kind) bool {
	switch k {
	case KindRegular, KindMapped, KindDir, KindDeleted, KindFIFO, KindTTY, KindCharDev, KindBlockDev:
		return true
	}
	return false
}

func protoOr(p string) string {
	if p == "" {
		return "unknown"
	}
	return p
}

func peerOf(p *Peer) string {
	if p != nil && p.Address != "" {
		return p.Address
	}
	return "its peer"
}

func classifyFile(f facts) verdict {
	switch {
	case f.Travels:
		return moves(fmt.Sprintf("on %s, which is sent with the image", f.Mountpoint))
	case f.Home:
		return moves("in the user's home: it travels with the user's files")
	case volatileFS[f.FSType]:
		return moves(fmt.Sprintf("on the container's %s %s: saved in the image", f.FSType, f.Mountpoint))
	case kernelFS[f.FSType]:
		return moves(fmt.Sprintf("kernel-provided (%s): reopened by path on restore", f.FSType))
	case f.InUpper:
		return moves("in the container's upper dir")
	}
	return present("")
}

func classifyInet(f facts, quit string) verdict {
	proto := "TCP"
	if f.Kind == KindUDP {
		proto = "UDP"
	}
	if f.ForeignNet {
		return blocks(
			fmt.Sprintf("%s socket of the host's network namespace, passed into the container", proto),
			"close it in the program or "+quit)
	}
	remote := f.Remote
	connected := remote.IsValid() && !remote.Addr().IsUnspecified()
	if !connected || remote.Addr().IsLoopback() || isMappedLoopback(remote.Addr()) {
		switch {
		case f.Kind == KindTCP && f.TCPState == "ESTABLISHED":
			return moves("loopback connection inside the container (needs CRIU --tcp-established)")
		case f.TCPState == "LISTEN":
			return moves("listening inside the container")
		}
		return moves("")
	}
	if f.Kind == KindUDP {
		return blocks(
			fmt.Sprintf("UDP socket connected to %s, outside the container", remote),
			fmt.Sprintf("stop the exchange with %s or %s", remote, quit))
	}
	state := "established "
	if f.TCPState != "ESTABLISHED" {
		state = ""
	}
	reason := fmt.Sprintf("%sTCP connection to %s, outside the container", state, remote)
	if f.TCPState != "ESTABLISHED" && f.TCPState != "" {
		reason += " (state " + f.TCPState + ")"
	}
	return blocks(reason, fmt.Sprintf("close the connection to %s or %s", remote, quit))
}

func isMappedLoopback(a netip.Addr) bool {
	return a.Is4In6() && a.Unmap().IsLoopback()
}

// anonName extracts the type of an anon inode link target:
// "anon_inode:[eventfd]" → "eventfd", "anon_inode:inotify" → "inotify".
func anonName(link string) string {
	s := strings.TrimPrefix(link, "anon_inode:")
	s = strings.TrimPrefix(s, "[")
	s = strings.TrimSuffix(s, "]")
	if i := strings.IndexAny(s, "-:"); i > 0 && strings.HasPrefix(s, "bpf") {
		return s[:i]
	}
	return s
}
