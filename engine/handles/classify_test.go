package handles

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	ext := netip.MustParseAddrPort("192.0.2.7:22")
	lo := netip.MustParseAddrPort("127.0.0.1:6000")
	lo6 := netip.MustParseAddrPort("[::1]:6000")
	mapped := netip.MustParseAddrPort("[::ffff:127.0.0.1]:80")
	hostX := &Peer{Inside: false, Address: "/tmp/.X11-unix/X0", Inode: 99, PID: 812, Comm: "Xorg"}
	tests := []struct {
		name   string
		f      facts
		class  Class
		reason string // substring of Reason (blocks) or Note (others)
		remedy string // substring of Remedy
	}{
		// a POSIX message queue, found on its IPC namespace's mount (which
		// no mountinfo lists) or by its path under /dev/mqueue
		{"posix message queue", facts{Kind: KindRegular, Path: "/q", FSType: "mqueue", Outside: true}, Blocks, "POSIX message queue /q", "mq_close"},
		{"posix message queue by path", facts{Kind: KindRegular, Path: "/dev/mqueue/q", FSType: "mqueue", Mountpoint: "/dev/mqueue"}, Blocks, "POSIX message queue", "mq_close"},
		// moves
		{"file in upper dir", facts{Kind: KindRegular, Path: "/etc/x", FSType: "overlay", Mountpoint: "/", InUpper: true}, Moves, "upper dir", ""},
		{"mapped file in upper dir", facts{Kind: KindMapped, Path: "/opt/lib.so", FSType: "overlay", Mountpoint: "/", InUpper: true}, Moves, "upper dir", ""},
		{"file on tmpfs", facts{Kind: KindRegular, Path: "/tmp/x", FSType: "tmpfs", Mountpoint: "/tmp"}, Moves, "tmpfs /tmp", ""},
		{"framebuffer sent with the image", facts{Kind: KindRegular, Path: "/tmp/.handoff/fb/Xvfb_screen0", FSType: "ext4", Mountpoint: "/tmp/.handoff/fb", Travels: true}, Moves, "sent with the image", ""},
		{"dir on tmpfs", facts{Kind: KindDir, Path: "/tmp", FSType: "tmpfs", Mountpoint: "/tmp"}, Moves, "tmpfs", ""},
		{"proc file", facts{Kind: KindRegular, Path: "/proc/1/stat", FSType: "proc", Mountpoint: "/proc"}, Moves, "kernel-provided", ""},
		{"deleted file", facts{Kind: KindDeleted, Path: "/var/tmp/x", Size: 4096}, Moves, "ghost file", ""},
		{"memfd", facts{Kind: KindMemfd, Path: "/memfd:wayland"}, Moves, "memory-backed", ""},
		{"pipe both ends inside", facts{Kind: KindPipe, PipeBothInside: true}, Moves, "both ends", ""},
		{"pipe other end closed", facts{Kind: KindPipe}, Moves, "closed", ""},
		{"pipe to a container process born after the scan", facts{Kind: KindPipe, Peer: &Peer{PID: 78, Comm: "bash", Inside: true}}, Moves, "both ends", ""},
		{"fifo both ends inside", facts{Kind: KindFIFO, Path: "/tmp/f", PipeBothInside: true, FSType: "tmpfs"}, Moves, "both ends", ""},
		{"unix peer inside", facts{Kind: KindUnix, Peer: &Peer{Inside: true, Inode: 5}}, Moves, "both ends", ""},
		{"unix listening", facts{Kind: KindUnix}, Moves, "not connected", ""},
		{"tcp listen", facts{Kind: KindTCP, TCPState: "LISTEN"}, Moves, "listening", ""},
		{"tcp loopback established", facts{Kind: KindTCP, TCPState: "ESTABLISHED", Remote: lo}, Moves, "tcp-established", ""},
		{"tcp6 loopback established", facts{Kind: KindTCP, TCPState: "ESTABLISHED", Remote: lo6}, Moves, "tcp-established", ""},
		{"tcp v4-mapped loopback", facts{Kind: KindTCP, TCPState: "ESTABLISHED", Remote: mapped}, Moves, "tcp-established", ""},
		{"tcp unbound", facts{Kind: KindTCP}, Moves, "", ""},
		{"udp unconnected", facts{Kind: KindUDP, Remote: netip.MustParseAddrPort("0.0.0.0:0")}, Moves, "", ""},
		{"netlink", facts{Kind: KindNetlink}, Moves, "", ""},
		{"packet socket", facts{Kind: KindSocket, Proto: "PACKET"}, Moves, "", ""},
		{"pty slave", facts{Kind: KindTTY, Path: "/dev/pts/0", Major: 136, Minor: 0, FSType: "devpts"}, Moves, "pseudo-terminal", ""},
		{"ptmx", facts{Kind: KindTTY, Path: "/dev/ptmx", Major: 5, Minor: 2}, Moves, "pseudo-terminal", ""},
		{"eventfd", facts{Kind: KindAnon, Anon: "eventfd"}, Moves, "", ""},
		{"epoll", facts{Kind: KindAnon, Anon: "eventpoll"}, Moves, "", ""},
		{"timerfd", facts{Kind: KindAnon, Anon: "timerfd"}, Moves, "", ""},
		{"inotify", facts{Kind: KindAnon, Anon: "inotify"}, Moves, "", ""},
		{"own namespace", facts{Kind: KindNS, Path: "net:[4026531840]", NSInside: true}, Moves, "namespace of the container", ""},

		// present
		{"base layer file", facts{Kind: KindRegular, Path: "/usr/lib/libc.so.6", FSType: "overlay", Mountpoint: "/"}, Present, "", ""},
		{"base layer mapping", facts{Kind: KindMapped, Path: "/usr/lib/libc.so.6", FSType: "overlay", Mountpoint: "/"}, Present, "", ""},
		{"base layer dir", facts{Kind: KindDir, Path: "/usr/share", FSType: "overlay", Mountpoint: "/"}, Present, "", ""},
		{"file on bind mount", facts{Kind: KindRegular, Path: "/data/x", FSType: "ext4", Mountpoint: "/data"}, Present, "", ""},
		{"/dev/null", facts{Kind: KindCharDev, Path: "/dev/null", Major: 1, Minor: 3}, Present, "standard", ""},
		{"/dev/urandom under another name", facts{Kind: KindCharDev, Path: "/dev/myrandom", Major: 1, Minor: 9}, Present, "standard", ""},
		{"/dev/tty", facts{Kind: KindTTY, Path: "/dev/tty", Major: 5, Minor: 0}, Present, "", ""},

		// blocks
		{"host file passed in", facts{Kind: KindRegular, Path: "/root/secret.txt", Outside: true, MntID: 23}, Blocks, "/root/secret.txt was opened outside the container (mount 23", "close the file"},
		{"host dir passed in", facts{Kind: KindDir, Path: "/home", Outside: true, MntID: 24}, Blocks, "opened outside", "xterm (pid 5)"},
		{"mapping not visible inside", facts{Kind: KindMapped, Path: "/opt/host.so", Outside: true}, Blocks, "opened outside", ""},
		{"host /dev/null as stdio", facts{Kind: KindCharDev, Path: "/dev/null", Major: 1, Minor: 3, Outside: true, MntID: 5}, Blocks, "opened on the host and passed in", "stdio"},
		{"host terminal", facts{Kind: KindTTY, Path: "/dev/pts/3", Major: 136, Minor: 3, Outside: true, MntID: 7}, Blocks, "terminal of the host", "without a host terminal"},
		{"pipe to host", facts{Kind: KindPipe, Peer: &Peer{PID: 77, Comm: "bash", Inode: 9}}, Blocks, "host process bash (pid 77)", "quit xterm (pid 5)"},
		{"fifo to host", facts{Kind: KindFIFO, Path: "/tmp/f", FSType: "tmpfs", Peer: &Peer{PID: 77, Comm: "cat"}}, Blocks, "named pipe /tmp/f", ""},
		{"unix to host X", facts{Kind: KindUnix, Peer: hostX}, Blocks, "host process Xorg (pid 812) at /tmp/.X11-unix/X0", "close the connection to /tmp/.X11-unix/X0"},
		{"unix peer unknown outside", facts{Kind: KindUnix, Peer: &Peer{Inode: 99}}, Blocks, "socket 99 outside the container", ""},
		{"tcp established outside", facts{Kind: KindTCP, TCPState: "ESTABLISHED", Remote: ext}, Blocks, "established TCP connection to 192.0.2.7:22", "close the connection to 192.0.2.7:22 or quit xterm (pid 5)"},
		{"tcp close-wait outside", facts{Kind: KindTCP, TCPState: "CLOSE_WAIT", Remote: ext}, Blocks, "state CLOSE_WAIT", "192.0.2.7:22"},
		{"udp connected outside", facts{Kind: KindUDP, Remote: ext}, Blocks, "UDP socket connected to 192.0.2.7:22", ""},
		{"tcp from host netns", facts{Kind: KindTCP, TCPState: "LISTEN", ForeignNet: true}, Blocks, "host's network namespace", ""},
		{"netlink from host netns", facts{Kind: KindNetlink, ForeignNet: true}, Blocks, "host's network namespace", ""},
		{"raw socket", facts{Kind: KindSocket, Proto: "RAW"}, Blocks, "RAW socket", ""},
		{"kmsg device", facts{Kind: KindCharDev, Path: "/dev/kmsg", Major: 1, Minor: 11}, Blocks, "/dev/kmsg is a device node (char 1:11)", "close the device"},
		{"gpu device", facts{Kind: KindCharDev, Path: "/dev/dri/card0", Major: 226, Minor: 0}, Blocks, "not a standard device", ""},
		{"block device", facts{Kind: KindBlockDev, Path: "/dev/vda", Major: 254, Minor: 0}, Blocks, "block device", ""},
		{"virtual console", facts{Kind: KindTTY, Path: "/dev/tty1", Major: 4, Minor: 1}, Blocks, "terminal device of this machine", ""},
		{"io_uring", facts{Kind: KindAnon, Anon: "io_uring"}, Blocks, "io_uring handle", ""},
		{"userfaultfd", facts{Kind: KindAnon, Anon: "userfaultfd"}, Blocks, "userfaultfd", ""},
		{"foreign namespace", facts{Kind: KindNS, Path: "net:[4026531840]"}, Blocks, "namespace outside", ""},
		{"unknown", facts{Kind: KindUnknown, Path: "weird"}, Blocks, "unknown kind", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.f.Holder == "" {
				tc.f.Holder = "xterm (pid 5)"
			}
			v := classify(tc.f)
			if v.Class != tc.class {
				t.Fatalf("class = %s, want %s (reason %q, note %q)", v.Class, tc.class, v.Reason, v.Note)
			}
			text := v.Note
			if v.Class == Blocks {
				text = v.Reason
				if v.Reason == "" || v.Remedy == "" {
					t.Fatalf("blocking verdict without reason or remedy: %+v", v)
				}
			} else if v.Reason != "" || v.Remedy != "" {
				t.Fatalf("non-blocking verdict with reason/remedy: %+v", v)
			}
			if !strings.Contains(text, tc.reason) {
				t.Errorf("text %q does not contain %q", text, tc.reason)
			}
			if !strings.Contains(v.Remedy, tc.remedy) {
				t.Errorf("remedy %q does not contain %q", v.Remedy, tc.remedy)
			}
		})
	}
}

func TestAnonName(t *testing.T) {
	for in, want := range map[string]string{
		"anon_inode:[eventfd]":   "eventfd",
		"anon_inode:inotify":     "inotify",
		"anon_inode:[eventpoll]": "eventpoll",
		"anon_inode:bpf-map":     "bpf",
		"anon_inode:[io_uring]":  "io_uring",
		"anon_inode:[pidfd]":     "pidfd",
	} {
		if got := anonName(in); got != want {
			t.Errorf("anonName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKindOfMode(t *testing.T) {
	mk := func(maj, mnr uint64) uint64 { return maj<<8 | mnr } // small numbers only
	tests := []struct {
		mode uint32
		rdev uint64
		want Kind
	}{
		{0o100644, 0, KindRegular},
		{0o040755, 0, KindDir},
		{0o010600, 0, KindFIFO},
		{0o140777, 0, KindSocket},
		{0o060660, mk(8, 0), KindBlockDev},
		{0o020666, mk(1, 3), KindCharDev},
		{0o020620, mk(136, 2), KindTTY},
		{0o020666, mk(5, 2), KindTTY},
		{0o020666, mk(5, 0), KindTTY},
		{0o020620, mk(4, 1), KindTTY},
		{0o000600, 0, KindUnknown},
	}
	for _, tc := range tests {
		if got := kindOfMode(tc.mode, tc.rdev); got != tc.want {
			t.Errorf("kindOfMode(%o, %x) = %s, want %s", tc.mode, tc.rdev, got, tc.want)
		}
	}
}
