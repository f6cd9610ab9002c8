package batchctl_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/batchctl"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
)

// TestMain runs the test binary as batchctl when asked to (the pty test
// re-executes it so), and the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv("BATCHCTL_TEST_AS_MAIN") == "1" {
		os.Exit(batchctl.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

// phase is the simulator's Phase: a created batch validates, runs and
// finalizes for one each.
const phase = time.Minute

// clock is the simulator's fake clock: nothing moves until a test
// advances it.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// run moves the clock on by a tenth of a phase every 20 ms until the test
// ends or stop is called.
func (c *clock) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				c.Advance(phase / 10)
			}
		}
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// start starts a gateway on a simulator on clk, polling every 100 ms.
func start(t *testing.T, clk *clock) *gatewaytest.Env {
	t.Helper()
	return gatewaytest.Start(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}},
		func(c *config.Config) { c.Watch.PollInterval = 100 * time.Millisecond })
}

// result is one run of batchctl.
type result struct {
	code           int
	stdout, stderr string
}

// run runs batchctl against e with args, the streams captured.
func run(ctx context.Context, e *gatewaytest.Env, args ...string) result {
	var out, errb bytes.Buffer
	code := batchctl.Main(ctx, append([]string{"-addr", e.GW.GRPCAddr().String()}, args...), strings.NewReader(""), &out, &errb, noEnv)
	return result{code, out.String(), errb.String()}
}

// runAsync runs batchctl in the background with its stdout in a buffer the
// test can read while it runs.
func runAsync(ctx context.Context, e *gatewaytest.Env, args ...string) (*testutil.SyncBuffer, <-chan result) {
	out, errb := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	done := make(chan result, 1)
	go func() {
		code := batchctl.Main(ctx, append([]string{"-addr", e.GW.GRPCAddr().String()}, args...), strings.NewReader(""), out, errb, noEnv)
		done <- result{code, out.String(), errb.String()}
	}()
	return out, done
}

func noEnv(string) string { return "" }

// waitFor waits until buf holds s.
func waitFor(t *testing.T, buf *testutil.SyncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", s, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for a background run's end.
func wait(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("batchctl did not end")
		return result{}
	}
}

// input is a JSONL input file of n requests, the ones whose custom id
// starts with "fail" failing (the simulator's rule).
func input(customIDs ...string) []byte {
	var b bytes.Buffer
	for _, id := range customIDs {
		fmt.Fprintf(&b, `{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}`+"\n", id)
	}
	return b.Bytes()
}

// createBatch uploads an input of customIDs and creates a batch of it over
// gRPC, not through batchctl.
func createBatch(t *testing.T, e *gatewaytest.Env, customIDs ...string) string {
	t.Helper()
	ctx := t.Context()
	up, err := batchv1.NewFileServiceClient(e.Conn).UploadFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Metadata{
		Metadata: &batchv1.UploadFileMetadata{Filename: "in.jsonl", Purpose: "batch"}}}); err != nil {
		t.Fatal(err)
	}
	if err := up.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Chunk{Chunk: input(customIDs...)}}); err != nil {
		t.Fatal(err)
	}
	f, err := up.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.Client.CreateBatch(ctx, &batchv1.CreateBatchRequest{InputFileId: f.GetId(), Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetBatch().GetId()
}
