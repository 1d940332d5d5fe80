// Package testutil holds what tests that start containers share: the
// container-init re-exec, a state dir the apps' containers can reach, and
// real user accounts for the apps to run as.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // container init bootstrap
)

// The main goroutine keeps the main thread, as the handoff command's does
// (see its init): a libcontainer goroutine that ends on the main thread
// after entering a container's mount namespace would leave the whole test
// binary there.
func init() { runtime.LockOSThread() }

// Main runs the tests, unless libcontainer re-executed the test binary to
// be a container's init (`/proc/self/exe init`): then it becomes that init.
// Call it from TestMain of every package whose tests start containers. The
// user accounts the tests made are removed when they end.
func Main(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
		panic("libcontainer.Init returned")
	}
	code := m.Run()
	removeUsers()
	os.Exit(code)
}

// StateDir returns an empty directory for an engine's state that apps'
// containers can pass through (t.TempDir's parent is private to root), and
// removes it when the test ends.
func StateDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

var users struct {
	sync.Mutex
	made  []string // account names, removed by removeUsers
	homes []string
	app   string // the account AppUser returns
}

// AppUser returns the name of a regular user account the apps of this test
// binary run as: made on first use, with a home of its own, and removed
// when the binary ends.
func AppUser(t testing.TB) string {
	t.Helper()
	users.Lock()
	name := users.app
	users.Unlock()
	if name != "" {
		return name
	}
	name = NewUser(t, "")
	users.Lock()
	users.app = name
	users.Unlock()
	return name
}

// NewUser makes a regular user account (useradd) with a home of its own
// under home (a new directory when empty), and returns its name. The
// account and home are removed when the test binary ends.
func NewUser(t testing.TB, home string) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "ho" + hex.EncodeToString(b[:])
	if home == "" {
		dir, err := os.MkdirTemp("", "hohome-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		users.Lock()
		users.homes = append(users.homes, dir)
		users.Unlock()
		home = filepath.Join(dir, name)
	}
	out, err := exec.Command("useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash",
		"--comment", "Handoff test user", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	users.Lock()
	users.made = append(users.made, name)
	users.Unlock()
	return name
}

func removeUsers() {
	users.Lock()
	defer users.Unlock()
	for _, name := range users.made {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: userdel %s: %v: %s\n", name, err, out)
		}
	}
	for _, dir := range users.homes {
		_ = os.RemoveAll(dir)
	}
	users.made, users.homes, users.app = nil, nil, ""
}
