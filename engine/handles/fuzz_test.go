package handles

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParse feeds a peer's handles manifest to what the destination does
// with it: Parse, then Missing against a small root holding a file, a
// directory, symlinks, a FIFO and device nodes. Whatever the manifest
// says, checking it must end (a FIFO must not be opened), and only the
// root's own files and standard devices may count as held.
func FuzzParse(f *testing.F) {
	root := f.TempDir()
	data := []byte("libc bytes")
	for _, dir := range []string{"usr/lib", "dev", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/libc.so"), data, 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("/etc/shadow", filepath.Join(root, "etc/shadow")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		f.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "usr/lib/fifo"), 0o644); err != nil {
		f.Fatal(err)
	}
	// Device nodes need root; without them the rest still runs.
	_ = unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
	_ = unix.Mknod(filepath.Join(root, "dev/sda"), unix.S_IFBLK|0o600, int(unix.Mkdev(8, 0)))
	held := map[string]bool{"/": true, "/usr": true, "/usr/lib": true, "/usr/lib/libc.so": true, "/dev": true, "/dev/null": true, "/etc": true}

	// A manifest of real processes: this one and its children would do,
	// but this process alone has files, sockets and maps enough.
	if m, err := Build(context.Background(), Scope{PIDs: []int{os.Getpid()}, InitPID: os.Getpid()}, NewHashCache()); err == nil {
		if b, err := json.Marshal(m); err == nil {
			f.Add(b)
		}
	}
	if golden, err := os.ReadFile("testdata/manifest.golden.json"); err == nil {
		f.Add(golden)
	}
	ours := &Manifest{Version: Version, Handles: []Handle{
		{ID: "file:/usr/lib/libc.so", Kind: KindMapped, Class: Present, Path: "/usr/lib/libc.so", Size: int64(len(data)), Hash: HashBytes(data)},
		{ID: "file:/lib/libc.so", Kind: KindMapped, Class: Present, Path: "/lib/libc.so", Size: int64(len(data)), Hash: HashBytes(data)},
		{ID: "file:/usr/lib/fifo", Kind: KindRegular, Class: Present, Path: "/usr/lib/fifo", Hash: HashBytes(data)},
		{ID: "file:/etc/shadow", Kind: KindRegular, Class: Present, Path: "/etc/shadow", Size: 1, Hash: HashBytes(data)},
		{ID: "file:/dev/null", Kind: KindCharDev, Class: Present, Path: "/dev/null", Device: "char 1:3"},
		{ID: "file:/dev/sda", Kind: KindBlockDev, Class: Present, Path: "/dev/sda"},
		{ID: "dir:/usr", Kind: KindDir, Class: Present, Path: "/usr"},
	}}
	if b, err := json.Marshal(ours); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		for _, r := range m.Required() {
			if r.check() != nil {
				t.Fatalf("Parse let %+v through", r)
			}
		}
		// What it writes, it reads again, asking for the same files.
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatalf("a parsed manifest does not parse again: %v", err)
		}
		if len(m2.Required()) != len(m.Required()) {
			t.Fatalf("%d requirements became %d", len(m.Required()), len(m2.Required()))
		}
		lacks := map[string]bool{}
		for _, r := range m.Missing(LocalChecker(root, nil, "/etc")) {
			lacks[r.Path] = true
		}
		for _, r := range m.Required() {
			if !lacks[r.Path] && !held[r.Path] {
				t.Fatalf("%s counts as held, but root holds no such file", r.Path)
			}
		}
	})
}
