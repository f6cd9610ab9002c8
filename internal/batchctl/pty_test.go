package batchctl_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyOutput runs the test binary as batchctl with args on a pseudo-terminal
// of 24x140 and returns its exit status and everything it wrote.
func ptyOutput(t *testing.T, during func(), args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "BATCHCTL_TEST_AS_MAIN=1")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 140})
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	var (
		mu  sync.Mutex
		out bytes.Buffer
	)
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil { // EIO once the child is gone
				return
			}
		}
	}()
	if during != nil {
		during()
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		werr = <-waited
		t.Errorf("batchctl on the pty did not end")
	}
	_ = f.Close()
	<-read
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	} else if werr != nil && !errors.Is(werr, io.EOF) {
		t.Fatalf("wait: %v", werr)
	}
	mu.Lock()
	defer mu.Unlock()
	return code, out.String()
}

// TestWatchTerminal watches two batches on a pseudo-terminal: the bars are
// redrawn in place (cursor up, erase down) and the summary ends the
// output, exit 0.
func TestWatchTerminal(t *testing.T) {
	clk := newClock()
	e := start(t, clk)
	a := createBatch(t, e, "req-1", "fail-2", "req-3", "req-4")
	b := createBatch(t, e, "req-1")
	code, out := ptyOutput(t, func() {
		time.Sleep(300 * time.Millisecond) // a few frames before anything moves
		clk.run(t)
	}, "-addr", e.GW.GRPCAddr().String(), "watch", a, b)
	if code != 0 {
		t.Fatalf("exit %d:\n%q", code, out)
	}
	if !strings.Contains(out, "\x1b[") || !regexp.MustCompile(`\x1b\[\d+A\x1b\[J`).MatchString(out) {
		t.Errorf("no redraw (cursor up, erase) in:\n%q", out)
	}
	// A bar of each batch, with its status and counts.
	for _, re := range []string{
		regexp.QuoteMeta(a) + ` +validating +\[ +\] +0/4 +0% +0 failed`,
		regexp.QuoteMeta(a) + ` +completed +\[x+=+\] +4/4 100% +1 failed`,
		regexp.QuoteMeta(b) + ` +completed +\[=+\] +1/1 100% +0 failed`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no %s in:\n%q", re, out)
		}
	}
	last := out[strings.LastIndex(out, "\x1b[J")+len("\x1b[J"):]
	i := strings.Index(last, "summary: 2 batches: 2 completed")
	if i < 0 {
		t.Fatalf("the output does not end with the summary:\n%q", out)
	}
	if tail := last[i:]; strings.Contains(tail, "\x1b") || !strings.Contains(tail, a+"  completed") {
		t.Errorf("summary: %q", tail)
	}
}
