package app

import (
	"os"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // container init bootstrap
)

// TestMain lets the test binary act as the container init that libcontainer
// re-executes when the in-process daemon starts an app.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
		panic("libcontainer.Init returned")
	}
	// Tests that need whole daemons in other namespaces run this binary as
	// the handoff command.
	if os.Getenv("HANDOFF_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}
