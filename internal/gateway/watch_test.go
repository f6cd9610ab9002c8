package gateway_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
)

// clock is a settable clock for the simulator: batches move only when a
// test advances it.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }
func fastWatch(c *config.Config) {
	c.Watch.PollInterval = 100 * time.Millisecond
	c.Upstream.MaxAttempts = 1
}
func quietHeartbeat(c *config.Config) { c.Service.Heartbeat = time.Hour }
func slowPolls(c *config.Config)      { c.Watch.PollInterval = time.Hour }
func withMaxAge(d time.Duration) func(*config.Config) {
	return func(c *config.Config) { c.Service.MaxAge = d }
}

const phase = time.Minute

// watcher receives one WatchBatch stream's events in the background.
type watcher struct {
	events chan *batchv1.WatchBatchResponse
	done   chan error // the stream's final error; io.EOF for OK
	cancel context.CancelFunc
}

func (e *env) watch(t *testing.T, id string) *watcher {
	t.Helper()
	return e.watchCtx(t, t.Context(), id)
}

// watchCtx opens a gRPC watch under parent (which may carry metadata).
func (e *env) watchCtx(t *testing.T, parent context.Context, id string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(parent)
	stream, err := e.Client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id})
	if err != nil {
		cancel()
		t.Fatalf("WatchBatch: %v", err)
	}
	t.Cleanup(cancel)
	return pumpWatch(stream, cancel)
}

// pumpWatch reads stream in the background; cancel ends its context.
func pumpWatch(stream batchv1.BatchService_WatchBatchClient, cancel context.CancelFunc) *watcher {
	events, done := testutil.Pump(stream, 64)
	return &watcher{events: events, done: done, cancel: cancel}
}

const waitLimit = 10 * time.Second

func (w *watcher) next(t *testing.T) *batchv1.WatchBatchResponse {
	t.Helper()
	ev, err := testutil.Next(w.events, w.done, waitLimit)
	if err != nil {
		t.Fatalf("stream ended (%v) while an event was expected", err)
	}
	return ev
}

// end waits for the stream to end and returns its status (OK for a clean
// end). It fails on any event received first.
func (w *watcher) end(t *testing.T) *status.Status {
	t.Helper()
	ev, err := testutil.Next(w.events, w.done, waitLimit)
	switch {
	case err == nil:
		t.Fatalf("unexpected event %v", ev)
	case errors.Is(err, testutil.ErrNoMessage):
		t.Fatal("stream did not end")
	case errors.Is(err, io.EOF):
		return status.New(codes.OK, "")
	}
	return status.Convert(err)
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchTerminalBatch(t *testing.T) {
	t.Parallel()
	e := start(t, fastWatch)
	for _, id := range []string{simulator.DemoCompleted, simulator.DemoFailed, simulator.DemoExpired, simulator.DemoCancelled} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			w := e.watch(t, id)
			ev := w.next(t)
			if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || !ev.GetTerminal() || ev.GetSequence() != 1 || ev.GetBatch().GetId() != id {
				t.Fatalf("first event = %v, want a terminal snapshot of %s", ev, id)
			}
			if st := w.end(t); st.Code() != codes.OK {
				t.Fatalf("stream ended with %v, want OK", st)
			}
		})
	}
}

// TestWatchLifecycle walks a batch through its statuses and checks that
// the stream sends a snapshot, then one change per distinct state and
// nothing for identical polls, and ends after the terminal change.
func TestWatchLifecycle(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, fastWatch, quietHeartbeat)
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})
	w := e.watch(t, b.ID)

	ev := w.next(t)
	if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_VALIDATING {
		t.Fatalf("first event = %v, want a validating snapshot", ev)
	}
	if ev.GetObservedAtUnixMs() == 0 {
		t.Error("observed_at_unix_ms not set")
	}
	seq := ev.GetSequence()

	// Identical polls send nothing: let the poller poll a few times.
	before := e.Sim.BatchRequests(b.ID)
	waitFor(t, "three more polls", func() bool { return e.Sim.BatchRequests(b.ID) >= before+3 })
	select {
	case ev := <-w.events:
		t.Fatalf("an unchanged batch produced event %v", ev)
	default:
	}

	want := []batchv1.BatchStatus{
		batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS,
		batchv1.BatchStatus_BATCH_STATUS_FINALIZING,
		batchv1.BatchStatus_BATCH_STATUS_COMPLETED,
	}
	for _, status := range want {
		clk.Advance(phase)
		ev := w.next(t)
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE || ev.GetBatch().GetStatus() != status {
			t.Fatalf("event = %v, want a change to %v", ev, status)
		}
		if ev.GetSequence() != seq+1 {
			t.Errorf("sequence = %d, want %d", ev.GetSequence(), seq+1)
		}
		seq = ev.GetSequence()
		if got := ev.GetTerminal(); got != (status == batchv1.BatchStatus_BATCH_STATUS_COMPLETED) {
			t.Errorf("terminal = %v on %v", got, status)
		}
	}
	if st := w.end(t); st.Code() != codes.OK {
		t.Fatalf("stream ended with %v, want OK", st)
	}
	waitFor(t, "the poller to stop", func() bool { return e.GW.HubStats().Pollers == 0 })
}

func TestWatchHeartbeat(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, slowPolls, func(c *config.Config) { c.Service.Heartbeat = 20 * time.Millisecond })
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})
	w := e.watch(t, b.ID)
	if ev := w.next(t); ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
		t.Fatalf("first event = %v", ev)
	}
	for i := uint64(2); i <= 4; i++ {
		ev := w.next(t)
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT || ev.GetBatch() != nil || ev.GetSequence() != i || ev.GetTerminal() {
			t.Fatalf("event %d = %v, want a heartbeat without a batch", i, ev)
		}
	}
}

// TestWatchSharedPoller puts many watchers on one batch and checks that
// the gateway polls the upstream for the batch, not for each watcher.
func TestWatchSharedPoller(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, fastWatch, quietHeartbeat)
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})
	const n = 25
	ws := make([]*watcher, n)
	for i := range ws {
		ws[i] = e.watch(t, b.ID)
		w := ws[i]
		if ev := w.next(t); ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
			t.Fatalf("watcher %d: first event %v", i, ev)
		}
	}
	if st := e.GW.HubStats(); st.Pollers != 1 || st.Watchers != n {
		t.Fatalf("hub stats %+v, want 1 poller and %d watchers", st, n)
	}
	polls0, reqs0 := e.GW.HubStats().Polls, e.Sim.BatchRequests(b.ID)
	waitFor(t, "ten polls", func() bool { return e.GW.HubStats().Polls >= polls0+10 })
	polls, reqs := e.GW.HubStats().Polls-polls0, e.Sim.BatchRequests(b.ID)-reqs0
	// Every upstream request for the batch is one poll of the one poller
	// (give or take the poll in flight when the counters were read); naive
	// watchers would have made n requests per interval.
	if reqs < int64(polls)-1 || reqs > int64(polls)+1 {
		t.Fatalf("%d upstream requests for %d polls with %d watchers", reqs, polls, n)
	}

	// One change reaches everyone, then the terminal one ends every stream.
	clk.Advance(3 * phase)
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			ev := <-w.events
			if !ev.GetTerminal() || ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_COMPLETED {
				t.Errorf("watcher %d: event %v, want terminal completed", i, ev)
			}
			if err := <-w.done; !errors.Is(err, io.EOF) {
				t.Errorf("watcher %d ended with %v", i, err)
			}
		})
	}
	wg.Wait()
}

func TestWatchLateJoinerNeedsNoUpstreamCall(t *testing.T) {
	t.Parallel()
	e := start(t, slowPolls, quietHeartbeat)
	first := e.watch(t, simulator.DemoValidating)
	a := first.next(t)
	reqs := e.Sim.BatchRequests(simulator.DemoValidating)
	late := e.watch(t, simulator.DemoValidating)
	b := late.next(t)
	if got := e.Sim.BatchRequests(simulator.DemoValidating); got != reqs {
		t.Fatalf("late joiner caused %d upstream requests", got-reqs)
	}
	if b.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || b.GetBatch().GetId() != a.GetBatch().GetId() {
		t.Fatalf("late snapshot = %v", b)
	}
	// GetBatch is answered from the poller's fresh result too.
	if _, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoValidating}); err != nil {
		t.Fatal(err)
	}
	if got := e.Sim.BatchRequests(simulator.DemoValidating); got != reqs {
		t.Fatalf("GetBatch of a watched batch caused %d upstream requests", got-reqs)
	}
}

func TestWatchCancelStopsPoller(t *testing.T) {
	t.Parallel()
	e := start(t, fastWatch, quietHeartbeat)
	w1, w2 := e.watch(t, simulator.DemoValidating), e.watch(t, simulator.DemoValidating)
	w1.next(t)
	w2.next(t)
	w1.cancel()
	waitFor(t, "one watcher", func() bool { return e.GW.HubStats().Watchers == 1 })
	if p := e.GW.HubStats().Pollers; p != 1 {
		t.Fatalf("pollers = %d with one watcher left", p)
	}
	w2.cancel()
	waitFor(t, "no poller", func() bool { st := e.GW.HubStats(); return st.Watchers == 0 && st.Pollers == 0 })
	reqs := e.Sim.BatchRequests(simulator.DemoValidating)
	time.Sleep(300 * time.Millisecond) // three poll intervals
	if got := e.Sim.BatchRequests(simulator.DemoValidating); got != reqs {
		t.Fatalf("%d upstream requests after the last watcher left", got-reqs)
	}
}

// TestWatchSurvivesTransientFaults checks that 503s and 429s keep streams
// open and that the terminal event still reaches every watcher.
func TestWatchSurvivesTransientFaults(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, fastWatch, quietHeartbeat)
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})
	ws := []*watcher{e.watch(t, b.ID), e.watch(t, b.ID), e.watch(t, b.ID)}
	for _, w := range ws {
		w.next(t)
	}
	reqs := e.Sim.BatchRequests(b.ID)
	e.Sim.InjectFaults(b.ID,
		simulator.Fault{Status: 503}, simulator.Fault{Status: 429, RetryAfter: "0"}, simulator.Fault{Status: 502},
		simulator.Fault{Reset: true}, simulator.Fault{Status: 500})
	waitFor(t, "the faults to be served", func() bool { return e.Sim.BatchRequests(b.ID) >= reqs+5 })
	clk.Advance(3 * phase)
	for i, w := range ws {
		ev := w.next(t)
		if !ev.GetTerminal() || ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
			t.Fatalf("watcher %d: event %v, want the terminal change", i, ev)
		}
		if st := w.end(t); st.Code() != codes.OK {
			t.Fatalf("watcher %d ended with %v", i, st)
		}
	}
}

func TestWatchErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		id     string
		cfg    []func(*config.Config)
		faults []simulator.Fault // injected after the snapshot
		code   codes.Code
		reason string
	}{
		{name: "invalid id", id: "no/such", code: codes.InvalidArgument},
		{name: "unknown batch", id: "batch_unknown", code: codes.NotFound},
		{name: "batch vanishes", id: simulator.DemoValidating, faults: []simulator.Fault{{Status: 404}},
			code: codes.NotFound},
		{name: "key revoked", id: simulator.DemoValidating, faults: []simulator.Fault{{Status: 401, Type: "invalid_api_key"}},
			code: codes.Unauthenticated},
		{name: "failure budget spent", id: simulator.DemoValidating, cfg: []func(*config.Config){func(c *config.Config) { c.Watch.FailureBudget = 300 * time.Millisecond }},
			faults: repeat(simulator.Fault{Status: 503}, 1000), code: codes.Unavailable},
		{name: "max age", id: simulator.DemoValidating, cfg: []func(*config.Config){withMaxAge(200 * time.Millisecond)},
			code: codes.Unavailable, reason: apierr.ReasonStreamMaxAge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, append([]func(*config.Config){fastWatch, quietHeartbeat}, tt.cfg...)...)
			w := e.watch(t, tt.id)
			if tt.code == codes.InvalidArgument || tt.code == codes.NotFound && tt.faults == nil {
				if st := w.end(t); st.Code() != tt.code {
					t.Fatalf("stream ended with %v, want %v before any event", st, tt.code)
				}
				return
			}
			if ev := w.next(t); ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
				t.Fatalf("first event %v", ev)
			}
			e.Sim.InjectFaults(tt.id, tt.faults...)
			st := w.end(t)
			if st.Code() != tt.code {
				t.Fatalf("stream ended with %v, want %v", st, tt.code)
			}
			if tt.reason != "" {
				if info := errorInfo(st); info == nil || info.GetReason() != tt.reason {
					t.Fatalf("ErrorInfo = %v, want reason %s", info, tt.reason)
				}
			}
		})
	}
}

// TestWatchShutdown ends live streams with UNAVAILABLE when the gateway
// shuts down, and Serve returns.
func TestWatchShutdown(t *testing.T) {
	t.Parallel()
	e := start(t, fastWatch, quietHeartbeat)
	ws := []*watcher{e.watch(t, simulator.DemoValidating), e.watch(t, simulator.DemoProgress)}
	for _, w := range ws {
		w.next(t)
	}
	e.Stop()
	for i, w := range ws {
		st := w.end(t)
		if st.Code() != codes.Unavailable {
			t.Fatalf("watcher %d ended with %v, want UNAVAILABLE", i, st)
		}
		if info := errorInfo(st); info == nil || info.GetReason() != apierr.ReasonShuttingDown {
			t.Errorf("watcher %d: ErrorInfo %v, want %s", i, info, apierr.ReasonShuttingDown)
		}
	}
}
