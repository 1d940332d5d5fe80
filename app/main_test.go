package app

import (
	"os"
	"strings"
	"testing"

	"github.com/handoff/handoff/engine/migration"

	"github.com/handoff/handoff/internal/testutil"
)

func TestMain(m *testing.M) {
	// Tests that need whole daemons in other namespaces run this binary as
	// the handoff command.
	if os.Getenv("HANDOFF_TEST_MAIN") == "1" && (len(os.Args) < 2 || os.Args[1] != "init") {
		// A daemon told its CPU lacks features it has: the refusal path
		// of a handoff, with the source's real features.
		if lacks := strings.Fields(os.Getenv("HANDOFF_TEST_CPU_LACKS")); len(lacks) > 0 {
			platformHook = func(p *migration.Platform) { p.CPU = p.CPU.Without(lacks...) }
		}
		os.Exit(Main(os.Args[1:]))
	}
	testutil.Main(m)
}
