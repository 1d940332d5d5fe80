package migration

import (
	"testing"

	"github.com/handoff/handoff/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
