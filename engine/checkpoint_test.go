package engine

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCriuLogErrors(t *testing.T) {
	tests := []struct {
		name, log, want string
	}{
		{"none", "(00.1) Dumping processes\n(00.2) Writing image\n", ""},
		{"noise only", "(00.06) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n", ""},
		{"cause after noise",
			"(00.06) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n" +
				"(10.06) Error (compel/src/lib/infect.c:262): Unseizable non-zombie 22804 found, state D, err -1/4\n",
			"Unseizable non-zombie 22804 found, state D, err -1/4"},
		{"at most three",
			"Error (a.c:1): one\nError (a.c:2): two\nError (a.c:3): three\nError (a.c:4): four\n",
			"one; two; three"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dump.log")
			if err := os.WriteFile(path, []byte(tt.log), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := criuLogErrors(path); got != tt.want {
				t.Errorf("criuLogErrors = %q, want %q", got, tt.want)
			}
		})
	}
	if got := criuLogErrors(filepath.Join(t.TempDir(), "missing.log")); got != "" {
		t.Errorf("missing log gave %q", got)
	}
}

func TestIsTransientDumpError(t *testing.T) {
	for cause, want := range map[string]bool{
		"Unseizable non-zombie 22804 found, state D, err -1/4":                                      true,
		"sk unix: Can't dump in-flight socket":                                                      true,
		"Can't dump half of stream unix connection":                                                 false,
		"tty: ctty inheritance detected sid/pgrp 14 (ctty pid_real 20716 pty pid_real 20664)":       true,
		"skqueue: Control messages in queue, not supported; Dump files (pid: 14266) failed with -1": true,
		"": false,
	} {
		if got := isTransientDumpError(cause); got != want {
			t.Errorf("isTransientDumpError(%q) = %v, want %v", cause, got, want)
		}
	}
}
