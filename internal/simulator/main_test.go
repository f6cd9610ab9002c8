package simulator

import (
	"testing"

	"github.com/batchgate/batchgate/internal/testutil"
)

// TestMain fails the run when goroutines outlive the tests (servers,
// connections, fault delays).
func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m)
}
