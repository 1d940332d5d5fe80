package engine

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func tarOf(t testing.TB, entries ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("abc")[:h.Size])
		}
	}
	tw.Close()
	return &b
}

// sameIDs maps owners unchanged, as between two machines with the same ids.
func sameIDs(uid, gid int) (int, int) { return uid, gid }

func getxattr(path, name string) (string, error) {
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func TestExtractUpperRefusesHostileEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries []*tar.Header
	}{
		{"absolute", []*tar.Header{{Name: "/etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"dotdot", []*tar.Header{{Name: "a/../../x", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"dot", []*tar.Header{{Name: "a/./x", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"device", []*tar.Header{{Name: "dev/sda", Typeflag: tar.TypeBlock, Devmajor: 8}}},
		{"char device", []*tar.Header{{Name: "dev/mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1}}},
		{"hard link", []*tar.Header{{Name: "x", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}}},
		{"fifo", []*tar.Header{{Name: "p", Typeflag: tar.TypeFifo}}},
		{"too deep", []*tar.Header{{Name: strings.Repeat("d/", maxUpperDepth+1) + "x", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"file through a file", []*tar.Header{
			{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644},
			{Name: "f/x", Typeflag: tar.TypeReg, Mode: 0o644},
		}},
		{"file over a link", []*tar.Header{
			{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
			{Name: "l", Typeflag: tar.TypeReg, Mode: 0o644},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "upper")
			err := extractUpperTar(tarOf(t, tt.entries...), root, sameIDs)
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// A sparse tar of a few kilobytes claims a gigabyte; Go's reader would
// fill the holes with zeros, so it is refused before a byte is written.
// GNU tar makes the archives, in both of its sparse formats.
func TestExtractUpperRefusesSparse(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatal("GNU tar is part of every Debian system: ", err)
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), 1<<30)
	f.Close()
	for _, format := range []string{"gnu", "posix"} {
		t.Run(format, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "sparse.tar")
			if out, err := exec.Command("tar", "--sparse", "--format="+format, "-C", dir, "-cf", archive, "big").CombinedOutput(); err != nil {
				t.Fatalf("tar: %v %s", err, out)
			}
			if st, _ := os.Stat(archive); st.Size() > 64<<10 {
				t.Fatalf("the archive is %d bytes: not sparse", st.Size())
			}
			data, _ := os.ReadFile(archive)
			root := filepath.Join(t.TempDir(), "upper")
			err := extractUpperTar(bytes.NewReader(data), root, sameIDs)
			if err == nil || !strings.Contains(err.Error(), "sparse") {
				t.Fatalf("err = %v, want a sparse refusal", err)
			}
			if _, err := os.Stat(filepath.Join(root, "big")); err == nil {
				t.Fatal("the sparse file was written")
			}
		})
	}
}

// A symlink pointing out of the root must not let a later entry write
// through it: every entry is placed through an os.Root.
func TestExtractUpperSymlinkCannotEscape(t *testing.T) {
	for _, link := range []string{"", "../../..", "/tmp"} {
		t.Run(link, func(t *testing.T) {
			outside := t.TempDir()
			target := link
			if target == "" {
				target = outside
			}
			root := filepath.Join(t.TempDir(), "upper")
			_ = extractUpperTar(tarOf(t,
				&tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: target},
				&tar.Header{Name: "evil/owned", Typeflag: tar.TypeReg, Mode: 0o644},
				&tar.Header{Name: "evil/dir/", Typeflag: tar.TypeDir, Mode: 0o755},
			), root, sameIDs)
			if _, err := os.Stat(filepath.Join(outside, "owned")); err == nil {
				t.Fatal("an archive wrote outside its root through a symlink")
			}
			if _, err := os.Stat(filepath.Join(outside, "dir")); err == nil {
				t.Fatal("an archive made a directory outside its root through a symlink")
			}
		})
	}
}

func TestExtractUpperStripsSetID(t *testing.T) {
	root := filepath.Join(t.TempDir(), "upper")
	if err := extractUpperTar(tarOf(t, &tar.Header{Name: "sh", Typeflag: tar.TypeReg, Mode: 0o4755 | 0o2000}), root, sameIDs); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "sh"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 || st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestUpperRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "root/notes"), 0o755)
	os.WriteFile(filepath.Join(src, "root/notes/todo.txt"), []byte("unsaved work"), 0o600)
	os.Symlink("todo.txt", filepath.Join(src, "root/notes/link"))
	// A link the app planted to the host's secrets travels as a link: its
	// target's content never goes.
	os.Symlink("/etc/shadow", filepath.Join(src, "root/shadow"))
	if err := unix.Mknod(filepath.Join(src, "root/deleted"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(src, "opaque"), 0o755)
	if err := unix.Lsetxattr(filepath.Join(src, "opaque"), opaqueXattr, []byte("y"), 0); err != nil {
		t.Skipf("cannot set trusted xattrs here (need root): %v", err)
	}
	os.Chown(filepath.Join(src, "root/notes/todo.txt"), 5000, 5001)
	// Times to the nanosecond: vim compares them with what it wrote.
	written := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	for _, p := range []string{"root/notes/todo.txt", "root/notes"} {
		if err := os.Chtimes(filepath.Join(src, p), written, written); err != nil {
			t.Fatal(err)
		}
	}
	// The X server's socket lives in the upper dir's /tmp; CRIU binds it anew.
	os.Mkdir(filepath.Join(src, "tmp"), 0o777)
	l, err := net.Listen("unix", filepath.Join(src, "tmp/X1"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var b bytes.Buffer
	// Host 5000:5001 is 1000:1000 inside; on the other machine, 7000:7001.
	toIn := func(uid, gid int) (int, int) { return uid - 4000, gid - 4000 }
	if err := writeUpperTar(src, &b, "/", nil, toIn); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "upper")
	toOut := func(uid, gid int) (int, int) { return uid + 6000, gid + 6000 }
	if err := extractUpperTar(&b, dst, toOut); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "root/notes/todo.txt")); string(data) != "unsaved work" {
		t.Fatalf("file content %q", data)
	}
	var own unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "root/notes/todo.txt"), &own); err != nil || own.Uid != 7000 || own.Gid != 7001 {
		t.Fatalf("owner %d:%d, want 7000:7001 (%v)", own.Uid, own.Gid, err)
	}
	for _, p := range []string{"root/notes/todo.txt", "root/notes"} {
		if st, err := os.Stat(filepath.Join(dst, p)); err != nil || !st.ModTime().Equal(written) {
			t.Errorf("%s modified at %v, want %v (%v)", p, st.ModTime(), written, err)
		}
	}
	if l, _ := os.Readlink(filepath.Join(dst, "root/notes/link")); l != "todo.txt" {
		t.Fatalf("symlink %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "root/shadow")); l != "/etc/shadow" {
		t.Fatalf("planted link %q, want it kept as a link", l)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "root/deleted"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout not kept: %v %o", err, st.Mode)
	}
	if v, err := getxattr(filepath.Join(dst, "opaque"), opaqueXattr); err != nil || v != "y" {
		t.Fatalf("opaque marker not kept: %q %v", v, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "tmp/X1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a socket file travelled: %v", err)
	}
}

// F1 of the security review: an app is root in its container and can plant
// links in its upper dir before a handoff (or a peer can send them); the
// engine's own writes into the upper dir must never follow them out.
func TestPrepareUpperIgnoresPlantedLinks(t *testing.T) {
	outside := t.TempDir()
	os.Chmod(outside, 0o700)
	for _, d := range []string{"tmpdir", "handoffdir", "etcdir", "homedir"} {
		os.Mkdir(filepath.Join(outside, d), 0o700)
	}
	upper := filepath.Join(t.TempDir(), "upper")
	os.MkdirAll(filepath.Join(upper, "tmp"), 0o755)
	for link, target := range map[string]string{
		"tmp/.handoff": filepath.Join(outside, "handoffdir"),
		".handoff":     filepath.Join(outside, "handoffdir"),
		"etc":          filepath.Join(outside, "etcdir"),
		"home":         filepath.Join(outside, "homedir"),
		"root":         outside,
	} {
		if err := os.Symlink(target, filepath.Join(upper, link)); err != nil {
			t.Fatal(err)
		}
	}
	u := User{Name: "alice", UID: 1000, GID: 1000, Home: "/home/alice", Shell: "/bin/sh"}
	h := hostIDs{UID: 1000, GID: 1000, Root: 1 << 30, Home: "/home/alice"}
	if err := prepareUpper(upper, upperLayout{user: u, host: h, base: "/"}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(outside, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, _ := d.Info()
		if p != outside && !strings.HasSuffix(p, "dir") {
			t.Errorf("the engine wrote %s outside the app's upper dir", p)
		}
		if d.IsDir() && info.Mode().Perm() != 0o700 {
			t.Errorf("the engine changed the mode of %s to %v", p, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// And the upper dir now has real directories where the links were.
	for _, p := range []string{"tmp/.handoff", ".handoff", "etc", "home"} {
		st, err := os.Lstat(filepath.Join(upper, p))
		if err != nil || !st.IsDir() {
			t.Errorf("%s is not a directory now: %v", p, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(upper, "etc/passwd")); err != nil || !strings.Contains(string(data), "alice:x:1000:1000::/home/alice:/bin/sh") {
		t.Errorf("passwd: %v %q", err, data)
	}
}

// The source reads the upper dir the app wrote: a link where a file was
// must not make it archive the link's target.
func TestWriteUpperNeverFollowsLinks(t *testing.T) {
	src := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)
	os.Mkdir(filepath.Join(src, "tmp"), 0o777)
	os.Symlink(secret, filepath.Join(src, "tmp/innocent"))
	os.Symlink(filepath.Dir(secret), filepath.Join(src, "dir"))
	var b bytes.Buffer
	if err := writeUpperTar(src, &b, "/", nil, sameIDs); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Bytes(), []byte("host secret")) {
		t.Fatal("the archive holds the content of a file outside the upper dir")
	}
}

// FuzzExtractUpper unpacks arbitrary bytes as an upper dir: whatever it
// does, nothing may land outside the root, and nothing may panic.
func FuzzExtractUpper(f *testing.F) {
	f.Add(tarOf(f, &tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644}).Bytes())
	f.Add(tarOf(f,
		&tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../outside"},
		&tar.Header{Name: "evil/x", Typeflag: tar.TypeReg, Mode: 0o644},
	).Bytes())
	f.Add(tarOf(f,
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX, PAXRecords: map[string]string{paxXattrPrefix + opaqueXattr: "y"}},
		&tar.Header{Name: "d/w", Typeflag: tar.TypeChar},
	).Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "upper")
		_ = extractUpperTar(bytes.NewReader(data), root, sameIDs)
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "upper" {
				t.Fatalf("extraction made %s beside the root", e.Name())
			}
		}
	})
}
