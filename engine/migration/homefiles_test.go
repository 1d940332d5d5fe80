package migration

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/handoff/handoff/engine"
)

func homeTar(t *testing.T, entries map[string]string, hdr func(*tar.Header)) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, content := range entries {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}
		if hdr != nil {
			hdr(h)
		}
		tw.WriteHeader(h)
		tw.Write([]byte(content))
	}
	tw.Close()
	return &b
}

func listed(path, content string) engine.HomeFile {
	sum := xxh3.HashString128(content).Bytes()
	return engine.HomeFile{Path: path, Size: int64(len(content)), Hash: hex.EncodeToString(sum[:])}
}

// TestStageHomeFilesTakesOnlyWhatWasAskedFor: a source (or a peer posing as
// one) may send only the listed files the destination asked for, whole.
func TestStageHomeFilesTakesOnlyWhatWasAskedFor(t *testing.T) {
	files := []engine.HomeFile{listed("notes.txt", "hello"), listed("docs/a.txt", "aaa")}
	need := map[string]bool{"notes.txt": true}
	tests := []struct {
		name    string
		body    *bytes.Buffer
		wantErr string
	}{
		{"the file asked for", homeTar(t, map[string]string{"notes.txt": "hello"}, nil), ""},
		{"a file not asked for", homeTar(t, map[string]string{"notes.txt": "hello", "docs/a.txt": "aaa"}, nil), "not asked for"},
		{"a file not listed", homeTar(t, map[string]string{"../../etc/passwd": "x"}, nil), "not asked for"},
		{"damaged", homeTar(t, map[string]string{"notes.txt": "hellp"}, nil), "damaged"},
		{"other size", homeTar(t, map[string]string{"notes.txt": "hello!"}, nil), "not the listed"},
		{"a link", homeTar(t, map[string]string{"notes.txt": ""}, func(h *tar.Header) { h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, "/etc/shadow", 0 }), "not the listed"},
		{"missing", homeTar(t, map[string]string{}, nil), "did not come"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "home")
			err := stageHomeFiles(tt.body, dir, files, need)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if data, _ := os.ReadFile(filepath.Join(dir, "notes.txt")); string(data) != "hello" {
					t.Fatalf("staged %q", data)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 1 {
				t.Fatalf("something was written beside the staging dir: %v", ents)
			}
		})
	}
}
