package app

import (
	"os"
	"testing"

	"github.com/handoff/handoff/internal/testutil"
)

func TestMain(m *testing.M) {
	// Tests that need whole daemons in other namespaces run this binary as
	// the handoff command.
	if os.Getenv("HANDOFF_TEST_MAIN") == "1" && (len(os.Args) < 2 || os.Args[1] != "init") {
		os.Exit(Main(os.Args[1:]))
	}
	testutil.Main(m)
}
