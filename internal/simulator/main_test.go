package simulator

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run when goroutines outlive the tests (servers,
// connections, fault delays). It is a small stand-in for goleak, which is
// not a dependency of this module.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := verifyNoLeaks(5 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// verifyNoLeaks waits up to timeout for every goroutine but the caller to
// end, as goleak.VerifyTestMain does.
func verifyNoLeaks(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		leaked := otherGoroutines()
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked %d goroutine(s):\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(delay)
	}
}

// otherGoroutines returns the stacks of all goroutines but the calling one,
// less those the runtime and testing package keep for themselves.
func otherGoroutines() []string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := strings.Split(strings.TrimSpace(string(buf)), "\n\n")
	var out []string
	for _, st := range stacks[1:] { // the first is the calling goroutine
		if strings.Contains(st, "os/signal.signal_recv") ||
			strings.Contains(st, "os/signal.loop") ||
			strings.Contains(st, "runtime.ensureSigM") {
			continue
		}
		out = append(out, st)
	}
	return out
}
