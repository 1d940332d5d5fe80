package handles

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHashFileReadsOnlyRegularFiles: a magic link the manifest listed may
// name a pipe or a terminal by the time it is hashed (the app reused the
// fd); reading one would wait forever, so hashFile refuses it at once.
func TestHashFileReadsOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("content"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A writer that never writes: reading the FIFO would wait for it.
	writer, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeR.Close()
	defer pipeW.Close()
	fileF, err := os.Open(regular)
	if err != nil {
		t.Fatal(err)
	}
	defer fileF.Close()
	magic := func(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }
	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"regular file", regular, true},
		{"regular file through its fd", magic(fileF), true},
		{"fifo with a silent writer", fifo, false},
		{"pipe through its fd", magic(pipeR), false},
		{"terminal master", "/dev/ptmx", false},
		{"directory", dir, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, _, err := NewHashCache().hashFile(tc.path)
				done <- err
			}()
			select {
			case err := <-done:
				if (err == nil) != tc.ok {
					t.Fatalf("hashFile(%s): %v, want ok=%v", tc.path, err, tc.ok)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("hashFile(%s) still reading after 5 s", tc.path)
			}
		})
	}
}
