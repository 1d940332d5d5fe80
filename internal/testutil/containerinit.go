// Package testutil holds what tests that start containers share.
package testutil

import (
	"os"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // container init bootstrap
)

// Main runs the tests, unless libcontainer re-executed the test binary to
// be a container's init (`/proc/self/exe init`): then it becomes that init.
// Call it from TestMain of every package whose tests start containers.
func Main(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
		panic("libcontainer.Init returned")
	}
	os.Exit(m.Run())
}
