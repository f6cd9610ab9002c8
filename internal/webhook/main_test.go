package webhook

import (
	"testing"

	"github.com/batchgate/batchgate/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }
