package loadtest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/loadtest"
)

// inProcess is a gateway.Gateway served in the test process.
type inProcess struct {
	g      *gateway.Gateway
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// errInProcess: the test process's RSS and CPU are not the gateway's.
var errInProcess = errors.New("not measurable in process")

func (p *inProcess) GRPCAddr() string            { return p.g.GRPCAddr().String() }
func (p *inProcess) HTTPAddr() string            { return p.g.HTTPAddr().String() }
func (p *inProcess) RSS() (int64, error)         { return 0, errInProcess }
func (p *inProcess) CPU() (time.Duration, error) { return 0, errInProcess }
func (p *inProcess) Stop() error {
	p.once.Do(func() { p.cancel(); p.err = <-p.done })
	return p.err
}

// Kill is Stop: in process there is no SIGKILL, so leases are released
// rather than left to expire.
func (p *inProcess) Kill() error { return p.Stop() }

func startInProcess(ctx context.Context, spec loadtest.GatewaySpec) (loadtest.Target, error) {
	cfg := config.Defaults()
	cfg.Upstream.BaseURL, cfg.Upstream.APIKey = spec.UpstreamURL, spec.UpstreamKey
	cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Watch.PollInterval, cfg.Service.Heartbeat = spec.PollInterval, spec.Heartbeat
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Auth.Mode = "none"
	cfg.Cluster.NATSURL = spec.ClusterNATSURL
	ctx, cancel := context.WithCancel(ctx)
	g, err := gateway.New(ctx, cfg, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	p := &inProcess{g: g, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- g.Serve(ctx) }()
	return p, nil
}

// smoke runs a small load test against an in-process gateway.
func smoke(t *testing.T, cfg loadtest.Config) *loadtest.Result {
	t.Helper()
	cfg.Start = startInProcess
	cfg.Log = testWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s\n%s", res.Markdown(), res.Raw())
	return res
}

// checkWatch asserts what the fan-out promises: one upstream poll per
// non-terminal batch per interval however many watch, and every watcher
// getting every change the polls saw.
func checkWatch(t *testing.T, name string, w *loadtest.WatchResult, watchers, batches int, latency bool) {
	t.Helper()
	if w == nil {
		t.Fatalf("%s: not run", name)
	}
	if w.Watchers != watchers || w.OpenErrors != 0 || len(w.Errors) != 0 {
		t.Errorf("%s: %d watchers, %d failed to open, errors %v", name, w.Watchers, w.OpenErrors, w.Errors)
	}
	p := w.Polls
	if p.NonTerminal != batches || p.Batches != batches {
		t.Errorf("%s: %d non-terminal batches, %d polled; want %d", name, p.NonTerminal, p.Batches, batches)
	}
	// One poll per batch per interval, whatever the number of watchers. A
	// machine too busy to keep the pollers' pace polls less often, never
	// more: the bound that matters is the upper one (the watchers' count
	// would be far above it), with a lower one well clear of zero.
	if got := p.PerInterval.Mean; got > float64(p.NonTerminal)+0.5 || got < float64(p.NonTerminal)/2 {
		t.Errorf("%s: %.2f polls per interval, want about %d (the non-terminal batches, not the %d watchers)", name, p.PerInterval.Mean, p.NonTerminal, watchers)
	}
	d := w.Deliveries
	if d.Observed == 0 || d.Pairs != d.Observed*watchers/batches {
		t.Errorf("%s: %d observed changes, %d (watcher, change) pairs; want %d pairs", name, d.Observed, d.Pairs, d.Observed*watchers/batches)
	}
	if d.Skipped != 0 || d.Missed != 0 || d.StaleMissed != 0 {
		t.Errorf("%s: not every watcher got every change: skipped %d, missed %d, never saw %d upstream changes", name, d.Skipped, d.Missed, d.StaleMissed)
	}
	if d.Unknown != 0 || d.ObservedMismatch != 0 {
		t.Errorf("%s: %d unknown states, %d observed_at mismatches", name, d.Unknown, d.ObservedMismatch)
	}
	if d.LatencyUpstream.N != d.Pairs || d.Staleness.N == 0 {
		t.Errorf("%s: latency samples %d, staleness samples %d", name, d.LatencyUpstream.N, d.Staleness.N)
	}
	if latency && d.Latency.N != d.Pairs {
		t.Errorf("%s: %d observed_at latency samples, want %d", name, d.Latency.N, d.Pairs)
	}
}

func TestSmokeGRPCAndNaive(t *testing.T) {
	t.Parallel()
	res := smoke(t, loadtest.Config{
		Watchers: 20, Conns: 2, Batches: 4, Naive: 20, NaiveConns: 2,
		Interval: 300 * time.Millisecond, Duration: 3 * time.Second, Settle: 200 * time.Millisecond,
		Phase: 30 * time.Second, Tick: 50 * time.Millisecond,
	})
	checkWatch(t, "gRPC", res.GRPC, 20, 4, true)
	if res.SSE != nil {
		t.Error("SSE ran with SSE: 0")
	}
	n := res.Naive
	if n == nil {
		t.Fatal("naive phase not run")
	}
	// Naive clients poll on their own: one request per client per
	// interval (fewer on a machine busy with other tests).
	if m := n.Requests.PerInterval.Mean; m < 10 || m > 22 {
		t.Errorf("naive: %.2f requests per interval, want about 20", m)
	}
	if n.Failures != 0 || n.Deliveries.StaleMissed != 0 || n.Deliveries.Staleness.N == 0 {
		t.Errorf("naive: %d failures, %d changes never seen, %d samples", n.Failures, n.Deliveries.StaleMissed, n.Deliveries.Staleness.N)
	}
	if md := res.Markdown(); !strings.Contains(md, "| clients | 20 streams on 2 connections |") {
		t.Errorf("Markdown:\n%s", md)
	}
}

func TestSmokeSSE(t *testing.T) {
	t.Parallel()
	res := smoke(t, loadtest.Config{
		Watchers: 4, Conns: 1, Batches: 2, SSE: 8, Naive: -1,
		Interval: 300 * time.Millisecond, Duration: 3 * time.Second, Settle: 200 * time.Millisecond,
		Phase: 30 * time.Second, Tick: 50 * time.Millisecond,
	})
	checkWatch(t, "gRPC", res.GRPC, 4, 2, true)
	if res.SSEError != "" {
		t.Fatalf("SSE not measured: %s", res.SSEError)
	}
	checkWatch(t, "SSE", res.SSE, 8, 2, false)
	if res.Naive != nil {
		t.Error("naive phase ran with Naive: -1")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
