package handles

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

// sampleManifest is a small but complete manifest: one handle of each class
// and most kinds, in scrambled order.
func sampleManifest() *Manifest {
	mt := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	return &Manifest{
		Version: Version, InitPID: 4242,
		Display: Display{Width: 1280, Height: 800, Depth: 24},
		Env:     []string{"PATH=/usr/bin:/bin", "DISPLAY=:1", "HANDOFF_APP=notes"},
		Mounts: []Mount{
			{ID: 815, Parent: 812, Mountpoint: "/tmp", FSType: "tmpfs", Source: "tmpfs", Root: "/", Options: "rw,nosuid,nodev", Configured: "tmpfs"},
			{ID: 812, Parent: 790, Mountpoint: "/", FSType: "overlay", Source: "overlay", Root: "/", Options: "rw,relatime", Configured: "overlay"},
			{ID: 813, Parent: 812, Mountpoint: "/dev", FSType: "tmpfs", Source: "tmpfs", Root: "/", Options: "rw,nosuid", Configured: "tmpfs"},
		},
		Processes: []Process{
			{PID: 4250, NSPID: 2, PPID: 4242, Comm: "xterm", Exe: "/usr/bin/xterm", Cmdline: []string{"xterm"}, AnonBytes: 2 << 20},
			{PID: 4242, NSPID: 1, PPID: 4200, Comm: "Xvfb", Exe: "/usr/bin/Xvfb", Cmdline: []string{"Xvfb", ":1"}, AnonBytes: 9 << 20},
		},
		Handles: []Handle{
			{ID: "socket:20068", Kind: KindUnix, Class: Blocks, Path: "socket:[20068]", Proto: "UNIX-STREAM", Inode: 20068,
				Peer:   &Peer{Address: "/tmp/.X11-unix/X0", Inode: 19340, PID: 812, Comm: "Xorg"},
				Reason: "unix socket connected to host process Xorg (pid 812) at /tmp/.X11-unix/X0",
				Remedy: "close the connection to /tmp/.X11-unix/X0 (for a host X client or D-Bus: close that window or session), or quit xterm (pid 4250)",
				Users:  []User{{PID: 4250, Comm: "xterm", FD: 3, Flags: "O_RDWR|O_CLOEXEC", MntID: 15}}},
			{ID: "file:/usr/lib/x86_64-linux-gnu/libc.so.6", Kind: KindMapped, Class: Present, Path: "/usr/lib/x86_64-linux-gnu/libc.so.6",
				Mount: "/", FSType: "overlay", Layer: "base", Size: 1926232, MTime: mt, Inode: 1234,
				Hash:  strings.Repeat("ab", 16),
				Users: []User{{PID: 4250, Comm: "xterm", FD: -1, Map: "r--p,r-xp"}, {PID: 4242, Comm: "Xvfb", FD: -1, Map: "r--p,r-xp"}}},
			{ID: "file:/tmp/.handoff/fb/Xvfb_screen0", Kind: KindRegular, Class: Moves, Path: "/tmp/.handoff/fb/Xvfb_screen0",
				Mount: "/tmp", FSType: "tmpfs", Size: 4096000, MTime: mt, Inode: 7, Note: "on the container's tmpfs /tmp: saved in the image",
				Users: []User{{PID: 4242, Comm: "Xvfb", FD: 5, Flags: "O_RDWR", Pos: 0, MntID: 815}, {PID: 4242, Comm: "Xvfb", FD: -1, Map: "rw-s"}}},
			{ID: "file:/dev/null", Kind: KindCharDev, Class: Present, Path: "/dev/null", Mount: "/dev", FSType: "tmpfs", Device: "char 1:3", Inode: 3, Note: "standard device",
				Users: []User{{PID: 4250, Comm: "xterm", FD: 0, Flags: "O_RDWR", MntID: 813}, {PID: 4242, Comm: "Xvfb", FD: 0, Flags: "O_RDWR", MntID: 813}}},
			{ID: "socket:30001", Kind: KindTCP, Class: Blocks, Path: "socket:[30001] 10.0.0.2:40000", Proto: "TCP", Inode: 30001,
				Peer:   &Peer{Address: "192.0.2.7:22", State: "ESTABLISHED"},
				Reason: "established TCP connection to 192.0.2.7:22, outside the container",
				Remedy: "close the connection to 192.0.2.7:22 or quit xterm (pid 4250)",
				Users:  []User{{PID: 4250, Comm: "xterm", FD: 7, Flags: "O_RDWR|O_NONBLOCK|O_CLOEXEC", MntID: 9}}},
			{ID: "anon:4242:3", Kind: KindAnon, Class: Moves, Path: "anon_inode:[eventpoll]",
				Users: []User{{PID: 4242, Comm: "Xvfb", FD: 3, Flags: "O_RDWR|O_CLOEXEC", MntID: 16}}},
			{ID: "deleted:2049:77", Kind: KindDeleted, Class: Moves, Path: "/var/tmp/cache.db", Mount: "/", FSType: "overlay", Size: 8192, MTime: mt, Inode: 77,
				Note:  "deleted while open: CRIU carries its 8192 bytes in the image as a ghost file (the dump's ghost limit must allow it)",
				Users: []User{{PID: 4250, Comm: "xterm", FD: 9, Flags: "O_RDWR", Pos: 100, MntID: 812}}},
			{ID: "pipe:555", Kind: KindPipe, Class: Moves, Path: "pipe:[555]", Inode: 555, Note: "both ends inside the container",
				Users: []User{{PID: 4250, Comm: "xterm", FD: 5, Flags: "O_WRONLY"}, {PID: 4242, Comm: "Xvfb", FD: 4, Flags: "O_RDONLY"}}},
		},
		Skipped: []string{"pid 4251 exited during the scan"},
	}
}

func TestGoldenJSON(t *testing.T) {
	m := sampleManifest()
	got, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "manifest.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenJSON -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("JSON differs from %s (run with -update if the change is intended):\n%s", golden, got)
	}
	// The golden file reads back into an equal manifest.
	var back Manifest
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	again, err := json.MarshalIndent(&back, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(again, '\n'), want) {
		t.Error("golden JSON does not round-trip")
	}
	if back.Version != 1 || back.Summary.Blocks != 2 || back.Summary.Present != 2 || back.Summary.Moves != 4 {
		t.Errorf("summary %+v", back.Summary)
	}
}

// TestJSONDeterministic shuffles every list and marshals both as a value
// and as a pointer: the bytes never change, and marshaling does not modify
// the manifest.
func TestJSONDeterministic(t *testing.T) {
	want, err := json.Marshal(sampleManifest())
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		m := sampleManifest()
		r.Shuffle(len(m.Handles), func(i, j int) { m.Handles[i], m.Handles[j] = m.Handles[j], m.Handles[i] })
		r.Shuffle(len(m.Mounts), func(i, j int) { m.Mounts[i], m.Mounts[j] = m.Mounts[j], m.Mounts[i] })
		for _, h := range m.Handles {
			r.Shuffle(len(h.Users), func(i, j int) { h.Users[i], h.Users[j] = h.Users[j], h.Users[i] })
		}
		before := slices.Clone(m.Handles)
		var got []byte
		if i%2 == 0 {
			got, err = json.Marshal(m)
		} else {
			got, err = json.Marshal(*m)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: JSON differs", i)
		}
		for k := range before {
			if before[k].ID != m.Handles[k].ID {
				t.Fatal("MarshalJSON reordered the caller's manifest")
			}
		}
	}
}

func TestBlockingAndSummary(t *testing.T) {
	m := sampleManifest()
	m.Summarize()
	b := m.Blocking()
	if len(b) != 2 || b[0].ID != "socket:20068" && b[0].ID != "socket:30001" {
		t.Fatalf("blocking = %v", b)
	}
	for _, h := range b {
		if h.Class != Blocks || h.Reason == "" || h.Remedy == "" {
			t.Errorf("blocking handle %+v", h)
		}
	}
	s := m.Summary
	if s.Blocks != 2 || s.Present != 2 || s.Moves != 4 || s.PresentBytes != 1926232 || s.GhostMax != 8192 || s.AnonBytes != 11<<20 {
		t.Errorf("summary %+v", s)
	}
}

func TestMissing(t *testing.T) {
	m := sampleManifest()
	libc := "/usr/lib/x86_64-linux-gnu/libc.so.6"
	req := m.Required()
	if len(req) != 2 || req[0].Path != "/dev/null" || req[1].Path != libc || req[1].Hash == "" {
		t.Fatalf("required = %+v", req)
	}
	tests := []struct {
		name string
		has  map[string]string // path → hash the destination holds
		want []string
	}{
		{"has everything", map[string]string{"/dev/null": "", libc: strings.Repeat("ab", 16)}, nil},
		{"different libc", map[string]string{"/dev/null": "", libc: strings.Repeat("cd", 32)}, []string{libc}},
		{"nothing", map[string]string{}, []string{"/dev/null", libc}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := m.Missing(func(r Requirement) bool {
				h, ok := tc.has[r.Path]
				return ok && (r.Hash == "" || h == r.Hash)
			})
			var paths []string
			for _, r := range got {
				paths = append(paths, r.Path)
			}
			if !slices.Equal(paths, tc.want) {
				t.Errorf("missing = %v, want %v", paths, tc.want)
			}
		})
	}
}

func TestLocalChecker(t *testing.T) {
	root := t.TempDir()
	for _, dir := range []string{"usr/lib", "var/lib/handoff", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := []byte("libc bytes")
	for _, file := range []string{"usr/lib/libc.so", "var/lib/handoff/identity.key"} {
		if err := os.WriteFile(filepath.Join(root, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A link pointing out of root must not be followed out of it, and
	// one inside it is not followed either.
	if err := os.Symlink("/etc/hostname", filepath.Join(root, "usr/lib/escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("libc.so", filepath.Join(root, "usr/lib/libc.so.6")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	// Opening a FIFO for reading waits for a writer; a device is the
	// driver's. Neither may be opened.
	if err := unix.Mkfifo(filepath.Join(root, "usr/lib/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, dev := range map[string]uint64{"null": unix.Mkdev(1, 3), "loop0": unix.Mkdev(7, 0)} {
		if err := unix.Mknod(filepath.Join(root, "dev", name), unix.S_IFCHR|0o600, int(dev)); err != nil {
			t.Skipf("make device nodes (needs root): %v", err)
		}
	}
	good := HashBytes(data)
	size := int64(len(data))
	cache := NewHashCache()
	has := LocalChecker(root, cache, "/var/lib/handoff")
	tests := []struct {
		name string
		r    Requirement
		want bool
	}{
		{"same content", Requirement{Path: "/usr/lib/libc.so", Size: size, Hash: good}, true},
		{"other content", Requirement{Path: "/usr/lib/libc.so", Size: size, Hash: strings.Repeat("0", 32)}, false},
		{"other size", Requirement{Path: "/usr/lib/libc.so", Size: size + 1, Hash: good}, false},
		{"any content", Requirement{Path: "/usr/lib/libc.so"}, true},
		{"a directory", Requirement{Path: "/usr/lib"}, true},
		{"missing", Requirement{Path: "/usr/lib/nope.so"}, false},
		{"link out of root", Requirement{Path: "/usr/lib/escape"}, false},
		{"link in root", Requirement{Path: "/usr/lib/libc.so.6", Size: size, Hash: good}, false},
		{"link on the way", Requirement{Path: "/lib/libc.so", Size: size, Hash: good}, false},
		{"dot-dot", Requirement{Path: "/../../etc/hostname"}, false},
		{"not clean", Requirement{Path: "/usr/lib/../lib/libc.so"}, false},
		{"relative", Requirement{Path: "usr/lib/libc.so"}, false},
		{"excluded dir", Requirement{Path: "/var/lib/handoff/identity.key", Size: size, Hash: good}, false},
		{"fifo with a hash", Requirement{Path: "/usr/lib/fifo", Hash: good}, false},
		{"fifo", Requirement{Path: "/usr/lib/fifo"}, false},
		{"standard device", Requirement{Path: "/dev/null", Kind: KindCharDev}, true},
		{"standard device with a hash", Requirement{Path: "/dev/null", Hash: good}, false},
		{"other device", Requirement{Path: "/dev/loop0", Kind: KindCharDev}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan bool, 1)
			go func() { got <- has(tc.r) }()
			select {
			case g := <-got:
				if g != tc.want {
					t.Errorf("has(%s, %.8s) = %v, want %v", tc.r.Path, tc.r.Hash, g, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("has(%s) hung", tc.r.Path)
			}
		})
	}
	if has(Requirement{Path: "/usr/lib/libc.so", Size: size, Hash: good}); cache.Len() != 1 {
		t.Errorf("cache holds %d hashes, want 1", cache.Len())
	}
	if hits, _, _ := cache.Stats(); hits == 0 {
		t.Error("second lookup did not hit the cache")
	}
}

// TestLocalCheckerLeavesTheKernelAlone: files of /proc and /sys are not
// looked at, whatever the peer says they hold (/proc/kcore is a regular
// file of 128 TiB of kernel memory).
func TestLocalCheckerLeavesTheKernelAlone(t *testing.T) {
	cache := NewHashCache()
	has := LocalChecker("/", cache)
	for _, p := range []string{"/proc/kcore", "/proc/self/environ", "/proc/1/status", "/sys/kernel/mm/transparent_hugepage/enabled", "/proc", "/proc/self/fd/0"} {
		info, err := os.Stat(p)
		if err != nil {
			continue
		}
		r := Requirement{Path: p, Size: info.Size()}
		if info.Mode().IsRegular() {
			r.Hash = strings.Repeat("0", 32)
		}
		if has(r) {
			t.Errorf("%s counts as held locally", p)
		}
	}
	if _, misses, bytes := cache.Stats(); misses != 0 || bytes != 0 {
		t.Errorf("hashed %d kernel files (%d bytes)", misses, bytes)
	}
}

func TestWriteTable(t *testing.T) {
	m := sampleManifest()
	m.Summarize()
	var b bytes.Buffer
	if err := WriteTable(&b, m); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"BLOCKS THE MOVE (2)", "PID", "COMM", "FD", "KIND", "CLASS", "PATH/PEER", "SIZE",
		"why: established TCP connection to 192.0.2.7:22", "fix: close the connection to 192.0.2.7:22",
		"MUST BE PRESENT ON THE DESTINATION (2, 1.8 MiB)", "4242 +1", "mem",
		"MOVES WITH THE APP (4)", "2 processes, 8 handles: 2 block",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "BLOCKS") > strings.Index(out, "MUST BE PRESENT") || strings.Index(out, "MUST BE PRESENT") > strings.Index(out, "MOVES WITH") {
		t.Errorf("groups out of order:\n%s", out)
	}
	if strings.Contains(out, "nothing blocks") {
		t.Error("claims nothing blocks")
	}
}

func TestParse(t *testing.T) {
	good, err := json.Marshal(sampleManifest())
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(good)
	if err != nil || len(m.Handles) != 8 {
		t.Fatalf("Parse(good) = %v, %v", m, err)
	}
	present := func(path, hash string, size int) string {
		return fmt.Sprintf(`{"version": 1, "handles": [{"id": "x", "kind": "regular", "class": "present", "path": %q, "hash": %q, "size": %d}]}`, path, hash, size)
	}
	if _, err := Parse([]byte(present("/usr/lib/libc.so", strings.Repeat("ab", 16), 10))); err != nil {
		t.Errorf("a good requirement is refused: %v", err)
	}
	for _, bad := range []string{`{"version": 2}`, `{"version": 0}`, `{"version": "1"}`, `not json`,
		present("/usr/lib/../../etc/shadow", "", 0), present("/usr/lib//libc.so", "", 0), present("/usr/lib/libc.so", "not hex", 0),
		present("/usr/lib/libc.so", strings.Repeat("AB", 16), 0), present("/usr/lib/libc.so", "ab", 0), present("/usr/lib/libc.so", "", -1)} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%s) succeeded", bad)
		}
	}
}

func TestSharedLocks(t *testing.T) {
	locked := []User{{PID: 7, FD: 3, Locks: []string{"POSIX ADVISORY WRITE 0-EOF"}}}
	open := []User{{PID: 7, FD: 4}}
	m := &Manifest{
		Mounts: []Mount{{Mountpoint: "/", FSType: "overlay"}, {Mountpoint: "/home/u", FSType: "ext4", Home: true}, {Mountpoint: "/tmp", FSType: "tmpfs"}},
		Handles: []Handle{
			{ID: "file:/home/u/.mozilla/lock", Kind: KindRegular, Class: Moves, Path: "/home/u/.mozilla/lock", Mount: "/home/u", FSType: "ext4", Users: locked},
			{ID: "file:/home/u/notes.txt", Kind: KindRegular, Class: Moves, Path: "/home/u/notes.txt", Mount: "/home/u", FSType: "ext4", Users: open},
			{ID: "file:/srv/data", Kind: KindRegular, Class: Present, Path: "/srv/data", Mount: "/srv", FSType: "nfs4", Users: locked},
			{ID: "file:/var/lib/x.db", Kind: KindRegular, Class: Present, Path: "/var/lib/x.db", Mount: "/", FSType: "overlay", Users: locked},
			{ID: "file:/tmp/x.lock", Kind: KindRegular, Class: Moves, Path: "/tmp/x.lock", Mount: "/tmp", FSType: "tmpfs", Users: locked},
		},
	}
	var got []string
	for _, h := range m.SharedLocks() {
		got = append(got, h.Path)
	}
	// Locked files of the home and of other persistent mounts another
	// machine may share; not an unlocked one, nor the app's own root's or
	// tmpfs's, which no other machine sees.
	want := []string{"/home/u/.mozilla/lock", "/srv/data"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("shared locks %v, want %v", got, want)
	}
}
