package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Accounts is a workstation's own user database: passwd, group and a
// directory of homes that the workstation's processes see instead of the
// machine's, through a mount namespace of their own that binds them over
// /etc/passwd, /etc/group and /home (see Wrap). Two workstations on one
// machine can so have the same user with other ids and other homes, or
// share one homes directory as if it were NFS.
type Accounts struct {
	Dir   string // holds passwd, group and, unless shared, home/
	Homes string // the directory bound over /home
}

// NewAccounts makes a user database under dir with the machine's system
// accounts and groups (ids below 1000, nobody, the handoff group).
func NewAccounts(t testing.TB, dir string) *Accounts {
	t.Helper()
	a := &Accounts{Dir: dir, Homes: filepath.Join(dir, "home")}
	if err := os.MkdirAll(a.Homes, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "group"} {
		data, err := os.ReadFile("/etc/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Split(line, ":")
			if len(fields) < 3 {
				continue
			}
			id, err := strconv.Atoi(fields[2])
			if err == nil && (id < 1000 || id == 65534 || fields[0] == "handoff") {
				keep = append(keep, line)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(strings.Join(keep, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// ShareHomes makes a use other's homes directory, as two machines that
// mount the same home over the network.
func (a *Accounts) ShareHomes(other *Accounts) { a.Homes = other.Homes }

// Add makes a user with uid (its own group has the same id) and, unless it
// exists in a shared homes directory, its home. It returns the home's path
// on the machine's own file system.
func (a *Accounts) Add(t testing.TB, name string, uid int) string {
	t.Helper()
	appendLine := func(f, line string) {
		fh, err := os.OpenFile(filepath.Join(a.Dir, f), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if _, err := fmt.Fprintln(fh, line); err != nil {
			t.Fatal(err)
		}
	}
	appendLine("passwd", fmt.Sprintf("%s:x:%d:%d:%s:/home/%s:/bin/bash", name, uid, uid, name, name))
	appendLine("group", fmt.Sprintf("%s:x:%d:", name, uid))
	home := filepath.Join(a.Homes, name)
	if _, err := os.Stat(home); err != nil {
		if err := os.Mkdir(home, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(home, uid, uid); err != nil {
		t.Fatal(err)
	}
	return home
}

// Wrap returns the command line that runs cmd with these accounts: in a
// mount namespace of its own whose /etc/passwd, /etc/group and /home are
// this database's. /etc is an overlay with the two files on top, not two
// file binds: useradd and userdel on the machine (other tests) rename new
// files over /etc/passwd, and the kernel detaches mounts from a file
// renamed over in any namespace. The two files are links to the
// database's own, so that accounts added later show.
func (a *Accounts) Wrap(cmd ...string) []string {
	script := fmt.Sprintf("mkdir -p %[1]q/etc %[1]q/etc-work && ln -sf %[1]q/passwd %[1]q/group %[1]q/etc/ && "+
		"mount -t overlay -o lowerdir=/etc,upperdir=%[1]q/etc,workdir=%[1]q/etc-work overlay /etc && "+
		"mount --bind %[2]q /home && exec \"$@\"", a.Dir, a.Homes)
	return append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"}, cmd...)
}
