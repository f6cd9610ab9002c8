package simulator

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when goroutines outlive the tests (servers,
// connections, fault delays).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
