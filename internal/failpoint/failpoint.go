// Package failpoint lets fault tests stop a daemon at an exact point of a
// handoff: kill it there (SIGKILL, as a crash would), or hold it there until
// the test lets it go (to cut the link at that instant). Points are named
// by the code ("out:committing", "in:running"); the environment arms them:
//
//	HANDOFF_FAILPOINTS=out:committing=kill,in:running=hold
//	HANDOFF_FAILPOINT_DIR=/tmp/dir   # hold waits for DIR/NAME.release
//
// With HANDOFF_FAILPOINTS unset, Hit costs one map lookup in an empty map.
package failpoint

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var armed = parse(os.Getenv("HANDOFF_FAILPOINTS"))

func parse(spec string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(spec, ",") {
		if name, action, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			m[name] = action
		}
	}
	return m
}

// Hit runs the action armed for point name, if any.
func Hit(name string) {
	action, ok := armed[name]
	if !ok {
		return
	}
	switch action {
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case "hold":
		dir := os.Getenv("HANDOFF_FAILPOINT_DIR")
		_ = os.WriteFile(filepath.Join(dir, name+".reached"), nil, 0o600)
		for {
			if _, err := os.Stat(filepath.Join(dir, name+".release")); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
