package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv("HANDOFF_MAIN_TEST") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestQuietUnderCLocale: every command used to print "Fyne error: Error
// parsing user locale C" twice under LANG=C.UTF-8 (see internal/cleanlocale).
func TestQuietUnderCLocale(t *testing.T) {
	for _, env := range [][]string{
		{"LANG=C.UTF-8"},
		{"LANG=en_US.UTF-8", "LC_ALL=C.UTF-8"},
		{"LANG=C"},
		{"LANG=POSIX.UTF-8"},
	} {
		t.Run(strings.Join(env, " "), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "version")
			cmd.Env = append([]string{"HANDOFF_MAIN_TEST=1", "PATH=" + os.Getenv("PATH")}, env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("handoff version: %v\n%s", err, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), "handoff ") {
				t.Errorf("stdout %q", stdout.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("handoff version printed on stderr:\n%s", stderr.String())
			}
		})
	}
}
