package rest

import (
	"testing"

	"github.com/batchgate/batchgate/internal/testutil"
)

// TestMain fails the package when a test leaves a goroutine behind: watch
// handlers, gRPC streams and HTTP connections must all end with their test.
func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m)
}
