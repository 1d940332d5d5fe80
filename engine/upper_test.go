package engine

import (
	"archive/tar"
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func tarOf(t *testing.T, entries ...*tar.Header) *bytes.Buffer {
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

func TestExtractUpperRefusesHostileEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries []*tar.Header
	}{
		{"absolute", []*tar.Header{{Name: "/etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"dotdot", []*tar.Header{{Name: "a/../../x", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"device", []*tar.Header{{Name: "dev/sda", Typeflag: tar.TypeBlock, Devmajor: 8}}},
		{"char device", []*tar.Header{{Name: "dev/mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1}}},
		{"hard link", []*tar.Header{{Name: "x", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}}},
		{"fifo", []*tar.Header{{Name: "p", Typeflag: tar.TypeFifo}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "upper")
			err := extractUpperTar(tarOf(t, tt.entries...), root)
			if !errors.Is(err, ErrUnsafeArchive) {
				t.Fatalf("err = %v, want ErrUnsafeArchive", err)
			}
		})
	}
}

// A symlink pointing out of the root must not let a later entry write
// through it: securejoin resolves the link inside the root.
func TestExtractUpperSymlinkCannotEscape(t *testing.T) {
	outside := t.TempDir()
	root := filepath.Join(t.TempDir(), "upper")
	err := extractUpperTar(tarOf(t,
		&tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside},
		&tar.Header{Name: "evil/owned", Typeflag: tar.TypeReg, Mode: 0o644},
	), root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "owned")); err == nil {
		t.Fatal("an archive wrote outside its root through a symlink")
	}
}

func TestUpperRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "root/notes"), 0o755)
	os.WriteFile(filepath.Join(src, "root/notes/todo.txt"), []byte("unsaved work"), 0o600)
	os.Symlink("todo.txt", filepath.Join(src, "root/notes/link"))
	if err := unix.Mknod(filepath.Join(src, "root/deleted"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(src, "opaque"), 0o755)
	if err := unix.Lsetxattr(filepath.Join(src, "opaque"), opaqueXattr, []byte("y"), 0); err != nil {
		t.Skipf("cannot set trusted xattrs here (need root): %v", err)
	}
	// The X server's socket lives in the upper dir's /tmp; CRIU binds it anew.
	os.Mkdir(filepath.Join(src, "tmp"), 0o777)
	l, err := net.Listen("unix", filepath.Join(src, "tmp/X1"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var b bytes.Buffer
	if err := writeUpperTar(src, &b, "/", nil); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "upper")
	if err := extractUpperTar(&b, dst); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "root/notes/todo.txt")); string(data) != "unsaved work" {
		t.Fatalf("file content %q", data)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "root/notes/link")); l != "todo.txt" {
		t.Fatalf("symlink %q", l)
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
