package handles

import (
	"encoding/binary"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseFdinfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    fdInfo
		wantErr bool
	}{
		{"regular", "pos:\t4096\nflags:\t02100002\nmnt_id:\t27\nino:\t1311\n", fdInfo{Pos: 4096, Flags: 0o2100002, MntID: 27, Ino: 1311}, false},
		{"eventfd extra lines", "pos:\t0\nflags:\t02004002\nmnt_id:\t16\nino:\t1057\neventfd-count:                0\neventfd-id: 5\n", fdInfo{Flags: 0o2004002, MntID: 16, Ino: 1057}, false},
		{"locks", "pos:\t0\nflags:\t0100002\nmnt_id:\t30\nino:\t9978255\nlock:\t1: POSIX  ADVISORY  WRITE 22323 fe:00:9978255 0 EOF\nlock:\t1: -> POSIX  ADVISORY  WRITE 22607 fe:00:9978255 0 EOF\nlock:\t2: FLOCK  ADVISORY  READ 22323 fe:00:9978255 0 EOF\n",
			fdInfo{Flags: 0o100002, MntID: 30, Ino: 9978255, Locks: []string{"POSIX ADVISORY WRITE 0-EOF", "FLOCK ADVISORY READ 0-EOF"}}, false},
		{"missing mnt_id", "pos:\t0\nflags:\t02\n", fdInfo{}, true},
		{"bad flags", "pos:\t0\nflags:\t9x\nmnt_id:\t1\n", fdInfo{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFdinfo([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFlagString(t *testing.T) {
	tests := map[uint32]string{
		0o0:        "O_RDONLY",
		0o2100002:  "O_RDWR|O_CLOEXEC",
		0o2102001:  "O_WRONLY|O_APPEND|O_CLOEXEC",
		0o4010002:  "O_RDWR|O_SYNC",
		0o12004000: "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_PATH",
		0o100000:   "O_RDONLY", // O_LARGEFILE is left out
	}
	for in, want := range tests {
		if got := flagString(in); got != want {
			t.Errorf("flagString(%#o) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMaps(t *testing.T) {
	in := `55d0c8e00000-55d0c8e28000 r--p 00000000 fe:00 1311                       /usr/bin/Xvfb
7f1c2a000000-7f1c2a022000 r-xp 00022000 08:01 4242   /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2b000000-7f1c2b100000 rw-s 00000000 00:01 77     /memfd:pulseaudio (deleted)
7f1c2c000000-7f1c2c001000 rw-p 00000000 00:00 0 
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]
7f1c2d000000-7f1c2d001000 r--p 00000000 00:2a 9      /tmp/dir with space/f\012x
`
	got, err := parseMaps([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("got %d entries, want 6: %+v", len(got), got)
	}
	want0 := mapEntry{Start: 0x55d0c8e00000, End: 0x55d0c8e28000, Perms: "r--p", Major: 0xfe, Minor: 0, Inode: 1311, Path: "/usr/bin/Xvfb"}
	if got[0] != want0 {
		t.Errorf("entry 0 = %+v, want %+v", got[0], want0)
	}
	if got[1].Offset != 0x22000 || got[1].Major != 8 || got[1].Minor != 1 {
		t.Errorf("entry 1 = %+v", got[1])
	}
	if got[2].Path != "/memfd:pulseaudio (deleted)" || got[2].Perms != "rw-s" {
		t.Errorf("entry 2 = %+v", got[2])
	}
	if got[3].Path != "" || got[3].Inode != 0 {
		t.Errorf("anonymous entry = %+v", got[3])
	}
	if got[4].Path != "[stack]" {
		t.Errorf("stack entry = %+v", got[4])
	}
	if p := unescapeOctal(got[5].Path); p != "/tmp/dir with space/f\nx" {
		t.Errorf("escaped path = %q", p)
	}
	if _, err := parseMaps([]byte("garbage\n")); err == nil {
		t.Error("parseMaps(garbage) succeeded")
	}
}

func TestParseNetInet(t *testing.T) {
	// Rows as the kernel prints them (IPv4: one little-endian word).
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1770 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 010200C0:9C40 070200C0:0016 01 00000000:00000000 02:000A7D7A 00000000  1000        0 40001 2 0000000000000000 20 4 30 10 -1
   2: 0100007F:A000 0100007F:1770 08 00000000:00000000 00:00000000 00000000     0        0 40002 1 0000000000000000 20 4 30 10 -1
`
	rows, err := parseNetInet([]byte(tcp))
	if err != nil {
		t.Fatal(err)
	}
	want := []inetSock{
		{Local: netip.MustParseAddrPort("127.0.0.1:6000"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: "LISTEN", Inode: 31337},
		{Local: netip.MustParseAddrPort("192.0.2.1:40000"), Remote: netip.MustParseAddrPort("192.0.2.7:22"), State: "ESTABLISHED", Inode: 40001},
		{Local: netip.MustParseAddrPort("127.0.0.1:40960"), Remote: netip.MustParseAddrPort("127.0.0.1:6000"), State: "CLOSE_WAIT", Inode: 40002},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d", len(rows), len(want))
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 556 1 0000000000000000 100 0 0 10 0
`
	rows, err = parseNetInet([]byte(tcp6))
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Local != netip.MustParseAddrPort("[::1]:22") || rows[0].State != "LISTEN" {
		t.Errorf("v6 row 0 = %+v", rows[0])
	}
	if rows[1].Remote != netip.MustParseAddrPort("[::ffff:127.0.0.1]:50000") {
		t.Errorf("v6 row 1 = %+v", rows[1])
	}
	if _, err := parseNetInet([]byte("h\n 0: zz:1 00000000:0000 0A a b c d e 12\n")); err == nil {
		t.Error("bad address accepted")
	}
}

// TestParseRealNetTCP parses this machine's own tables and finds a listener
// the test opened, classifying it and a connection to it.
func TestParseRealNetTCP(t *testing.T) {
	ln, conn, peer := loopbackPair(t)
	_ = peer
	raw, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		t.Skip("no /proc/self/net/tcp:", err)
	}
	rows, err := parseNetInet(raw)
	if err != nil {
		t.Fatal(err)
	}
	lnIno, connIno := sockInode(t, ln), sockInode(t, conn)
	found := 0
	for _, r := range rows {
		switch r.Inode {
		case lnIno:
			found++
			if r.State != "LISTEN" {
				t.Errorf("listener state %s", r.State)
			}
			if v := classify(facts{Kind: KindTCP, TCPState: r.State, Remote: r.Remote}); v.Class != Moves {
				t.Errorf("listener classified %s", v.Class)
			}
		case connIno:
			found++
			if r.State != "ESTABLISHED" || !r.Remote.Addr().IsLoopback() {
				t.Errorf("connection row %+v", r)
			}
			if v := classify(facts{Kind: KindTCP, TCPState: r.State, Remote: r.Remote}); v.Class != Moves {
				t.Errorf("loopback connection classified %s", v.Class)
			}
			// The same row with a non-loopback remote blocks.
			r.Remote = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.9"), r.Remote.Port())
			if v := classify(facts{Kind: KindTCP, TCPState: r.State, Remote: r.Remote}); v.Class != Blocks || !strings.Contains(v.Reason, r.Remote.String()) {
				t.Errorf("outside connection: %+v", v)
			}
		}
	}
	if found != 2 {
		t.Errorf("found %d of 2 sockets in /proc/self/net/tcp", found)
	}
}

func TestParseStatus(t *testing.T) {
	s := parseStatus([]byte("Name:\tbash\nTgid:\t9876\nPPid:\t41\nNSpid:\t9876\t1\n"))
	if s.Tgid != 9876 || s.PPID != 41 || s.NSPID != 1 {
		t.Errorf("got %+v", s)
	}
}

func TestParseUnixDiagMsg(t *testing.T) {
	ne := binary.NativeEndian
	msg := make([]byte, 16)
	msg[0], msg[1], msg[2] = unix.AF_UNIX, unix.SOCK_STREAM, 1
	ne.PutUint32(msg[4:], 1234)
	attr := func(typ uint16, v []byte) []byte {
		b := make([]byte, 4, 4+len(v)+3)
		ne.PutUint16(b, uint16(4+len(v)))
		ne.PutUint16(b[2:], typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	peer := make([]byte, 4)
	ne.PutUint32(peer, 5678)
	msg = append(msg, attr(unixDiagName, []byte("\x00/tmp/.X11-unix/X0"))...)
	msg = append(msg, attr(unixDiagPeer, peer)...)
	s, ok := parseUnixDiagMsg(msg)
	if !ok {
		t.Fatal("not parsed")
	}
	want := unixSock{Inode: 1234, Peer: 5678, Name: "@/tmp/.X11-unix/X0", Type: unix.SOCK_STREAM, State: 1}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if _, ok := parseUnixDiagMsg(msg[:8]); ok {
		t.Error("short message parsed")
	}
	if unixName([]byte("/run/x.sock\x00")) != "/run/x.sock" {
		t.Error("path name not trimmed")
	}
}

// TestUnixSocketsOwnNetns dumps the caller's unix sockets through sock_diag
// and checks a socketpair shows each end as the other's peer.
func TestUnixSocketsOwnNetns(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var a, b unix.Stat_t
	if err := unix.Fstat(fds[0], &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(fds[1], &b); err != nil {
		t.Fatal(err)
	}
	socks, err := unixSockets("")
	if err != nil {
		t.Fatal(err)
	}
	if socks[a.Ino].Peer != b.Ino || socks[b.Ino].Peer != a.Ino {
		t.Errorf("socketpair %d<->%d: got %+v and %+v", a.Ino, b.Ino, socks[a.Ino], socks[b.Ino])
	}
}
