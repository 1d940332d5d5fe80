package handles

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procRoot is where procfs is mounted; tests never change it, it only keeps
// paths in one place.
const procRoot = "/proc"

func procPath(pid int, rest ...string) string {
	return procRoot + "/" + strconv.Itoa(pid) + "/" + strings.Join(rest, "/")
}

// gone reports errors that mean the process or fd vanished during the scan.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT)
}

// fdInfo is the parsed content of /proc/PID/fdinfo/FD.
type fdInfo struct {
	Pos   int64
	Flags uint32
	MntID int
	Ino   uint64
	// Locks are the file locks held through this fd, as the kernel lists
	// them ("POSIX ADVISORY WRITE 0-EOF").
	Locks []string
}

func parseFdinfo(b []byte) (fdInfo, error) {
	var fi fdInfo
	seen := 0
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		val := string(bytes.TrimSpace(v))
		var err error
		switch string(k) {
		case "pos":
			fi.Pos, err = strconv.ParseInt(val, 10, 64)
			seen++
		case "flags":
			var f uint64
			f, err = strconv.ParseUint(val, 8, 32)
			fi.Flags = uint32(f)
			seen++
		case "mnt_id":
			fi.MntID, err = strconv.Atoi(val)
			seen++
		case "ino":
			fi.Ino, err = strconv.ParseUint(val, 10, 64)
		case "lock":
			if l := lockString(val); l != "" {
				fi.Locks = append(fi.Locks, l)
			}
		}
		if err != nil {
			return fi, fmt.Errorf("fdinfo field %s=%q: %w", k, val, err)
		}
	}
	if seen < 3 {
		return fi, fmt.Errorf("fdinfo lacks pos, flags or mnt_id: %q", b)
	}
	return fi, nil
}

// lockString shortens a lock line of fdinfo, "1: POSIX  ADVISORY  WRITE
// 812 fe:00:9978255 0 EOF", to what matters to a reader: "POSIX ADVISORY
// WRITE 0-EOF". The holder's pid and the inode are this machine's.
func lockString(line string) string {
	f := strings.Fields(line)
	if len(f) > 0 && strings.HasSuffix(f[0], ":") {
		f = f[1:]
	}
	if len(f) < 7 || f[0] == "->" { // "->": a lock waiting for this one
		return ""
	}
	return fmt.Sprintf("%s %s %s %s-%s", f[0], f[1], f[2], f[5], f[6])
}

var openFlagNames = []struct {
	bit  uint32
	name string
}{
	{unix.O_APPEND, "O_APPEND"}, {unix.O_NONBLOCK, "O_NONBLOCK"}, {unix.O_DSYNC, "O_DSYNC"},
	{unix.O_DIRECT, "O_DIRECT"}, {unix.O_DIRECTORY, "O_DIRECTORY"}, {unix.O_NOATIME, "O_NOATIME"},
	{unix.O_CLOEXEC, "O_CLOEXEC"}, {unix.O_PATH, "O_PATH"},
}

// flagString renders open flags, e.g. "O_RDWR|O_APPEND|O_CLOEXEC".
// O_LARGEFILE, always set on 64-bit, is left out.
func flagString(f uint32) string {
	var parts []string
	switch f & unix.O_ACCMODE {
	case unix.O_RDONLY:
		parts = append(parts, "O_RDONLY")
	case unix.O_WRONLY:
		parts = append(parts, "O_WRONLY")
	default:
		parts = append(parts, "O_RDWR")
	}
	if f&unix.O_SYNC == unix.O_SYNC {
		parts = append(parts, "O_SYNC")
		f &^= unix.O_SYNC
	}
	for _, n := range openFlagNames {
		if f&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, "|")
}

// mapEntry is one line of /proc/PID/maps.
type mapEntry struct {
	Start, End uint64
	Perms      string
	Offset     uint64
	Major      uint32
	Minor      uint32
	Inode      uint64
	Path       string // may end in " (deleted)"; "[heap]" etc. for specials
}

func parseMaps(b []byte) ([]mapEntry, error) {
	var out []mapEntry
	for line := range bytes.Lines(b) {
		line = bytes.TrimRight(line, "\n")
		if len(line) == 0 {
			continue
		}
		// addr perms offset dev inode [path]; path may contain spaces.
		f := make([]string, 0, 6)
		rest := string(line)
		for len(f) < 5 {
			rest = strings.TrimLeft(rest, " ")
			i := strings.IndexByte(rest, ' ')
			if i < 0 {
				f = append(f, rest)
				rest = ""
				break
			}
			f = append(f, rest[:i])
			rest = rest[i+1:]
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("maps line %q: too few fields", line)
		}
		var e mapEntry
		lo, hi, ok := strings.Cut(f[0], "-")
		var err1, err2, err3, err4 error
		if !ok {
			return nil, fmt.Errorf("maps line %q: bad range", line)
		}
		e.Start, err1 = strconv.ParseUint(lo, 16, 64)
		e.End, err2 = strconv.ParseUint(hi, 16, 64)
		e.Perms = f[1]
		e.Offset, err3 = strconv.ParseUint(f[2], 16, 64)
		e.Inode, err4 = strconv.ParseUint(f[4], 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return nil, fmt.Errorf("maps line %q: %w", line, err)
		}
		maj, mnr, ok := strings.Cut(f[3], ":")
		if !ok {
			return nil, fmt.Errorf("maps line %q: bad device", line)
		}
		ma, err1 := strconv.ParseUint(maj, 16, 32)
		mi, err2 := strconv.ParseUint(mnr, 16, 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("maps line %q: %w", line, err)
		}
		e.Major, e.Minor = uint32(ma), uint32(mi)
		e.Path = strings.TrimLeft(rest, " ")
		out = append(out, e)
	}
	return out, nil
}

// inetSock is one row of /proc/PID/net/{tcp,tcp6,udp,udp6}.
type inetSock struct {
	Local, Remote netip.AddrPort
	State         string
	Inode         uint64
}

var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
	"09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}

// parseNetInet parses /proc/net/tcp-style tables (IPv4 or IPv6 rows).
func parseNetInet(b []byte) ([]inetSock, error) {
	var out []inetSock
	first := true
	for line := range bytes.Lines(b) {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 10 {
			continue
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("net row %q: %w", strings.TrimSpace(string(line)), err)
		}
		remote, err := parseHexAddrPort(f[2])
		if err != nil {
			return nil, fmt.Errorf("net row %q: %w", strings.TrimSpace(string(line)), err)
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("net row %q: inode: %w", strings.TrimSpace(string(line)), err)
		}
		st := tcpStates[strings.ToUpper(f[3])]
		if st == "" {
			st = f[3]
		}
		out = append(out, inetSock{Local: local, Remote: remote, State: st, Inode: ino})
	}
	return out, nil
}

// parseHexAddrPort parses "0100007F:0016" (IPv4) or the 32-hex-digit IPv6
// form; the address is in host (little-endian) order per 32-bit word.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q: no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", s, err)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: bad hex", s)
	}
	for i := 0; i < len(raw); i += 4 { // each 32-bit word is little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// procStatus holds the fields of /proc/PID/status we use.
type procStatus struct {
	Tgid  int
	PPID  int
	NSPID int // innermost PID namespace
}

func parseStatus(b []byte) procStatus {
	var s procStatus
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := strings.Fields(string(v))
		if len(f) == 0 {
			continue
		}
		switch string(k) {
		case "Tgid":
			s.Tgid, _ = strconv.Atoi(f[0])
		case "PPid":
			s.PPID, _ = strconv.Atoi(f[0])
		case "NSpid":
			s.NSPID, _ = strconv.Atoi(f[len(f)-1])
		}
	}
	return s
}

// parseAnonKB returns the "Anonymous:" line of smaps_rollup in bytes.
func parseAnonKB(b []byte) int64 {
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			f := strings.Fields(string(v))
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// splitNUL splits a NUL-separated /proc file (environ, cmdline).
func splitNUL(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// readProc reads a small /proc file.
func readProc(pid int, rest ...string) ([]byte, error) {
	return os.ReadFile(procPath(pid, rest...))
}

// unescapeOctal undoes the octal escapes ("\012") of paths in maps.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
