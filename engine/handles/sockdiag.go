package handles

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// unixSock is one unix socket as sock_diag reports it.
type unixSock struct {
	Inode uint64
	Peer  uint64 // inode of the peer socket, 0 if none
	Name  string // bound path, "@name" for abstract, "" if unbound
	Type  uint8  // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	State uint8  // TCP_* numbering: 1 established, 10 listen, 7 close
}

// uapi/linux/unix_diag.h
const (
	udiagShowName = 0x1
	udiagShowPeer = 0x4
	unixDiagName  = 0
	unixDiagPeer  = 2
)

// unixSockets dumps the unix sockets of the network namespace at nsPath
// (e.g. /proc/PID/ns/net; "" means the caller's own) through sock_diag,
// keyed by inode. Entering another namespace needs CAP_SYS_ADMIN.
func unixSockets(nsPath string) (map[uint64]unixSock, error) {
	fd, err := diagSocketIn(nsPath)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	for attempt := 0; ; attempt++ {
		socks, interrupted, err := dumpUnix(fd)
		if err != nil {
			return nil, err
		}
		if !interrupted || attempt == 2 {
			return socks, nil
		}
	}
}

// diagSocketIn makes a NETLINK_SOCK_DIAG socket in the netns at nsPath. A
// socket keeps the namespace it was made in, so only its creation happens on
// a thread switched into the namespace; the thread switches back, and is
// thrown away (left locked) if that fails.
func diagSocketIn(nsPath string) (int, error) {
	mk := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	}
	if nsPath == "" {
		fd, err := mk()
		if err != nil {
			return -1, fmt.Errorf("open sock_diag socket: %w", err)
		}
		return fd, nil
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("open own netns: %w", err)}
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("open netns %s: %w", nsPath, err)}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("enter netns %s: %w", nsPath, err)}
			return
		}
		fd, mkErr := mk()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// The thread stays in the wrong namespace: keep it locked so
			// the runtime discards it when this goroutine ends.
			if mkErr == nil {
				unix.Close(fd)
			}
			ch <- result{-1, fmt.Errorf("return from netns %s: %w", nsPath, err)}
			return
		}
		runtime.UnlockOSThread()
		if mkErr != nil {
			ch <- result{-1, fmt.Errorf("open sock_diag socket in %s: %w", nsPath, mkErr)}
			return
		}
		ch <- result{fd, nil}
	}()
	r := <-ch
	return r.fd, r.err
}

func dumpUnix(fd int) (map[uint64]unixSock, bool, error) {
	const hdrLen = unix.SizeofNlMsghdr
	req := make([]byte, hdrLen+24)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // seq
	body := req[hdrLen:]
	body[0] = unix.AF_UNIX
	ne.PutUint32(body[4:], ^uint32(0)) // all states
	ne.PutUint32(body[12:], udiagShowName|udiagShowPeer)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, false, fmt.Errorf("send unix diag request: %w", err)
	}
	socks := make(map[uint64]unixSock)
	interrupted := false
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, false, fmt.Errorf("receive unix diag reply: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, false, fmt.Errorf("parse unix diag reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return socks, interrupted, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(ne.Uint32(m.Data)); e != 0 {
						return nil, false, fmt.Errorf("unix diag: %w", syscall.Errno(-e))
					}
				}
				continue
			}
			s, ok := parseUnixDiagMsg(m.Data)
			if ok {
				socks[s.Inode] = s
			}
		}
	}
}

// parseUnixDiagMsg decodes struct unix_diag_msg and its attributes.
func parseUnixDiagMsg(b []byte) (unixSock, bool) {
	const msgLen = 16
	if len(b) < msgLen || b[0] != unix.AF_UNIX {
		return unixSock{}, false
	}
	ne := binary.NativeEndian
	s := unixSock{Type: b[1], State: b[2], Inode: uint64(ne.Uint32(b[4:]))}
	attrs := b[msgLen:]
	for len(attrs) >= 4 {
		l := int(ne.Uint16(attrs[0:]))
		t := ne.Uint16(attrs[2:])
		if l < 4 || l > len(attrs) {
			break
		}
		v := attrs[4:l]
		switch t {
		case unixDiagName:
			s.Name = unixName(v)
		case unixDiagPeer:
			if len(v) >= 4 {
				s.Peer = uint64(ne.Uint32(v))
			}
		}
		adv := (l + 3) &^ 3
		if adv > len(attrs) {
			break
		}
		attrs = attrs[adv:]
	}
	return s, true
}

// unixName renders a sockaddr_un path: abstract names (leading NUL) as
// "@name", with further NULs shown as "@" like ss(8) does.
func unixName(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if v[0] == 0 {
		return "@" + strings.ReplaceAll(string(v[1:]), "\x00", "@")
	}
	return strings.TrimRight(string(v), "\x00")
}

// HostUnixSockets counts the unix sockets the processes pids hold that
// belong to the caller's network namespace. In an app with a network
// namespace of its own, those are the app's ends of connections a host
// client made: the kernel puts a connection's accepted socket in the
// client's namespace. A process that ended is skipped.
func HostUnixSockets(pids []int) (int, error) {
	host, err := unixSockets("")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range pids {
		fds, err := os.ReadDir(procPath(pid, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(procPath(pid, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err == nil {
				if _, ok := host[ino]; ok {
					n++
				}
			}
		}
	}
	return n, nil
}
