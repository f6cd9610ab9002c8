package testutil

import (
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakWait is how long VerifyTestMain lets goroutines that are already
// ending (a client's read loop after its server closed the connection,
// a stream's last send) finish before it calls them leaked. goleak's own
// wait, under half a second, is too short on a loaded two-core CI
// machine with -race.
const leakWait = 10 * time.Second

// VerifyTestMain runs the package's tests and then fails the run if
// goroutines are left over, as goleak.VerifyTestMain does, with two
// differences: it first closes the idle keep-alive connections of
// http.DefaultTransport (which the helpers and SDK clients share, and
// whose pool outlives the tests that filled it), and it waits up to
// leakWait for goroutines on their way out. A goroutine still there
// after that is reported with its stack and the run exits 1.
func VerifyTestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := findLeaks(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks is goleak.Find retried until it passes or leakWait is over
// (goleak v1.3.0 has no option to retry for longer).
func findLeaks() error {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	deadline := time.Now().Add(leakWait)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
