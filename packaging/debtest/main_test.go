package debtest

import (
	"testing"

	"github.com/handoff/handoff/internal/testutil"
)

// TestMain removes the user accounts the tests made.
func TestMain(m *testing.M) { testutil.Main(m) }
