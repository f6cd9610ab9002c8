package service_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/ownership"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// multiStream is a WatchBatches server stream that records its events.
type multiStream struct {
	grpc.ServerStream
	ctx    context.Context
	mu     sync.Mutex
	events []*batchv1.WatchBatchesResponse
	sent   chan struct{}
}

func newMultiStream(ctx context.Context) *multiStream {
	return &multiStream{ctx: ctx, sent: make(chan struct{}, 1)}
}

func (f *multiStream) Context() context.Context     { return f.ctx }
func (f *multiStream) SetHeader(metadata.MD) error  { return nil }
func (f *multiStream) SendHeader(metadata.MD) error { return nil }
func (f *multiStream) SetTrailer(metadata.MD)       {}
func (f *multiStream) SendMsg(any) error            { return fmt.Errorf("SendMsg: use Send") }

func (f *multiStream) Send(ev *batchv1.WatchBatchesResponse) error {
	f.mu.Lock()
	f.events = append(f.events, proto.Clone(ev).(*batchv1.WatchBatchesResponse))
	f.mu.Unlock()
	select {
	case f.sent <- struct{}{}:
	default:
	}
	return nil
}

func (f *multiStream) Events() []*batchv1.WatchBatchesResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*batchv1.WatchBatchesResponse(nil), f.events...)
}

// progress is a fetcher whose batches advance one step a fetch along their
// script; an id without a script is unknown (404). It counts fetches.
type progress struct {
	mu      sync.Mutex
	scripts map[string][]batchv1.BatchStatus
	owner   map[string]string
	calls   map[string]int
}

func newProgress() *progress {
	return &progress{scripts: map[string][]batchv1.BatchStatus{}, owner: map[string]string{}, calls: map[string]int{}}
}

func (p *progress) GetBatch(_ context.Context, id string) (*batchv1.Batch, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.calls[id]
	p.calls[id]++
	s, ok := p.scripts[id]
	if !ok {
		return nil, &upstream.Error{HTTPStatus: 404, Type: "invalid_request_error", Message: "No batch found"}
	}
	b := &batchv1.Batch{Id: id, Status: s[min(n, len(s)-1)], RequestCounts: &batchv1.RequestCounts{Total: 10, Completed: int64(min(n, 10))}}
	if o := p.owner[id]; o != "" {
		b.Metadata = &batchv1.Metadata{Pairs: map[string]string{ownership.MetaCaller: o}}
	}
	return b, nil
}

func (p *progress) Calls(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[id]
}

const (
	stInProgress = batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS
	stCompleted  = batchv1.BatchStatus_BATCH_STATUS_COMPLETED
	stFailed     = batchv1.BatchStatus_BATCH_STATUS_FAILED
)

func newMultiService(t *testing.T, f watch.Fetcher, opts service.Options) (*service.Service, *watch.Hub) {
	t.Helper()
	hub := watch.New(f, watch.Options{PollInterval: 5 * time.Millisecond, Jitter: -1})
	t.Cleanup(hub.Close)
	return service.New(hub, opts), hub
}

// checkStream checks what every WatchBatches stream must hold: sequences
// 1, 2, ...; each batch's events start with a SNAPSHOT or an ERROR and end
// with its one terminal event; heartbeats name no batch. It returns the
// events by batch id.
func checkStream(t *testing.T, events []*batchv1.WatchBatchesResponse) map[string][]*batchv1.WatchBatchesResponse {
	t.Helper()
	by := map[string][]*batchv1.WatchBatchesResponse{}
	for i, ev := range events {
		if ev.GetSequence() != uint64(i+1) || ev.GetObservedAtUnixMs() == 0 {
			t.Fatalf("event %d: sequence %d, observed %d", i, ev.GetSequence(), ev.GetObservedAtUnixMs())
		}
		id := ev.GetBatchId()
		if ev.GetType() == batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT {
			if id != "" || ev.GetBatch() != nil || ev.GetTerminal() {
				t.Fatalf("heartbeat %v", ev)
			}
			continue
		}
		prev := by[id]
		if len(prev) > 0 && prev[len(prev)-1].GetTerminal() {
			t.Fatalf("event %v after the terminal event of %s", ev, id)
		}
		first := len(prev) == 0
		switch ev.GetType() {
		case batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT:
			if !first || ev.GetBatch().GetId() != id {
				t.Fatalf("snapshot %v (first %v)", ev, first)
			}
		case batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE:
			if first || ev.GetBatch().GetId() != id {
				t.Fatalf("change %v (first %v)", ev, first)
			}
		case batchv1.WatchEventType_WATCH_EVENT_TYPE_ERROR:
			if !ev.GetTerminal() || ev.GetBatch() != nil || ev.GetError() == nil {
				t.Fatalf("error event %v", ev)
			}
		default:
			t.Fatalf("event type %v", ev.GetType())
		}
		by[id] = append(prev, ev)
	}
	return by
}

func TestWatchBatchesMix(t *testing.T) {
	t.Parallel()
	f := newProgress()
	f.scripts["batch_run"] = []batchv1.BatchStatus{stInProgress, stInProgress, stInProgress, stCompleted}
	f.scripts["batch_fails"] = []batchv1.BatchStatus{stInProgress, stFailed}
	f.scripts["batch_done"] = []batchv1.BatchStatus{stCompleted}
	svc, hub := newMultiService(t, f, service.Options{Heartbeat: time.Hour})
	ids := []string{"batch_run", "batch_unknown", "batch_done", "batch_run", "batch_fails", "batch_done", "batch_unknown"}
	fs := newMultiStream(context.Background())
	if err := svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: ids}, fs); err != nil {
		t.Fatalf("WatchBatches: %v, want OK once every batch ended", err)
	}
	by := checkStream(t, fs.Events())
	if len(by) != 4 {
		t.Fatalf("events for %d batches, want 4 (duplicates folded): %v", len(by), fs.Events())
	}
	for id, want := range map[string]batchv1.BatchStatus{"batch_run": stCompleted, "batch_fails": stFailed, "batch_done": stCompleted} {
		evs := by[id]
		last := evs[len(evs)-1]
		if !last.GetTerminal() || last.GetBatch().GetStatus() != want {
			t.Errorf("%s ends with %v, want terminal %v", id, last, want)
		}
	}
	if n := len(by["batch_done"]); n != 1 {
		t.Errorf("already terminal batch: %d events, want its terminal snapshot only", n)
	}
	if n := len(by["batch_run"]); n < 2 {
		t.Errorf("batch_run: %d events, want a snapshot and changes", n)
	}
	unknown := by["batch_unknown"]
	if len(unknown) != 1 {
		t.Fatalf("unknown batch: %v, want one ERROR event", unknown)
	}
	we := unknown[0].GetError()
	if codes.Code(we.GetCode()) != codes.NotFound || we.GetHttpStatus() != 404 || we.GetType() == "" || we.GetMessage() == "" {
		t.Errorf("unknown batch's error %v, want NOT_FOUND / 404 with the envelope's type and message", we)
	}
	// Each batch was fetched by its one poller: a folded duplicate costs
	// nothing, an unknown one a single call.
	if n := f.Calls("batch_unknown"); n != 1 {
		t.Errorf("unknown batch fetched %d times, want 1", n)
	}
	if n := f.Calls("batch_run"); n != 4 {
		t.Errorf("batch_run fetched %d times, want 4 (one per step)", n)
	}
	if st := hub.Stats(); st.Watchers != 0 {
		t.Errorf("%d watchers left", st.Watchers)
	}
}

func TestWatchBatchesInvalid(t *testing.T) {
	t.Parallel()
	f := newProgress()
	svc, _ := newMultiService(t, f, service.Options{})
	many := make([]string, service.MaxWatchBatches+1)
	for i := range many {
		many[i] = fmt.Sprintf("batch_%d", i)
	}
	tests := []struct {
		name string
		ids  []string
		msg  string
	}{
		{"none", nil, "at least one"},
		{"a bad id", []string{"batch_a", "batch_b", "bad/id"}, "batch_ids[2]"},
		{"an empty id", []string{"batch_a", ""}, "batch_ids[1]"},
		{"too many", many, "at most 1000"},
	}
	for _, tt := range tests {
		fs := newMultiStream(context.Background())
		err := svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: tt.ids}, fs)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.msg) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT with %q", tt.name, err, tt.msg)
		}
		if len(fs.Events()) != 0 {
			t.Errorf("%s: events were sent", tt.name)
		}
	}
	for id := range f.calls {
		t.Errorf("%s was fetched for an invalid request", id)
	}
	// 1,500 ids that fold to 2 are fine.
	f.scripts["batch_x"] = []batchv1.BatchStatus{stCompleted}
	f.scripts["batch_y"] = []batchv1.BatchStatus{stCompleted}
	dups := make([]string, 1500)
	for i := range dups {
		dups[i] = []string{"batch_x", "batch_y"}[i%2]
	}
	fs := newMultiStream(context.Background())
	if err := svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: dups}, fs); err != nil || len(fs.Events()) != 2 {
		t.Fatalf("1,500 ids folding to 2: %v, %d events", err, len(fs.Events()))
	}
}

func TestWatchBatchesScopeAndOwnership(t *testing.T) {
	t.Parallel()
	f := newProgress()
	f.scripts["batch_alice"] = []batchv1.BatchStatus{stCompleted}
	f.owner["batch_alice"] = "alice"
	f.scripts["batch_bob"] = []batchv1.BatchStatus{stCompleted}
	f.owner["batch_bob"] = "bob"
	svc, _ := newMultiService(t, f, service.Options{Caller: func(ctx context.Context) callinfo.Caller {
		c, _ := ctx.Value(callerKey{}).(callinfo.Caller)
		return c
	}})
	fs := newMultiStream(as(alice))
	if err := svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: []string{"batch_alice", "batch_bob"}}, fs); err != nil {
		t.Fatal(err)
	}
	by := checkStream(t, fs.Events())
	if ev := by["batch_alice"]; len(ev) != 1 || ev[0].GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
		t.Errorf("alice's own batch: %v", ev)
	}
	if ev := by["batch_bob"]; len(ev) != 1 || codes.Code(ev[0].GetError().GetCode()) != codes.NotFound || ev[0].GetBatch() != nil {
		t.Errorf("bob's batch, watched by alice: %v, want a NOT_FOUND error event without the batch", ev)
	}
	// Without the read scope, nothing starts.
	fs = newMultiStream(as(callinfo.Caller{Name: "w", Scopes: callinfo.ScopeWrite}))
	if err := svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: []string{"batch_alice"}}, fs); status.Code(err) != codes.PermissionDenied {
		t.Errorf("without read scope: %v", err)
	}
}

func TestWatchBatchesHeartbeatMaxAgeShutdown(t *testing.T) {
	t.Parallel()
	f := newProgress()
	f.scripts["batch_p"] = []batchv1.BatchStatus{stInProgress}
	f.scripts["batch_q"] = []batchv1.BatchStatus{stInProgress}
	t.Run("max age", func(t *testing.T) {
		t.Parallel()
		svc, hub := newMultiService(t, f, service.Options{Heartbeat: 5 * time.Millisecond, MaxAge: 200 * time.Millisecond})
		fs := newMultiStream(context.Background())
		err := svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: []string{"batch_p", "batch_q"}}, fs)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("err %v, want UNAVAILABLE at max age", err)
		}
		evs := fs.Events()
		checkStream(t, evs)
		beats := 0
		for _, ev := range evs[2:] {
			if ev.GetType() == batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT {
				beats++
			}
		}
		if beats == 0 {
			t.Fatalf("no heartbeat in %v", evs)
		}
		if st := hub.Stats(); st.Watchers != 0 {
			t.Errorf("%d watchers left", st.Watchers)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		t.Parallel()
		svc, hub := newMultiService(t, f, service.Options{Heartbeat: time.Hour})
		fs := newMultiStream(context.Background())
		errc := make(chan error, 1)
		go func() {
			errc <- svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: []string{"batch_p", "batch_q"}}, fs)
		}()
		for len(fs.Events()) < 2 {
			<-fs.sent
		}
		hub.CloseWatches()
		if err := <-errc; status.Code(err) != codes.Unavailable {
			t.Fatalf("err %v, want UNAVAILABLE on shutdown", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		svc, hub := newMultiService(t, f, service.Options{Heartbeat: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		fs := newMultiStream(ctx)
		errc := make(chan error, 1)
		go func() {
			errc <- svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: []string{"batch_p", "batch_q"}}, fs)
		}()
		<-fs.sent
		cancel()
		if err := <-errc; status.Code(err) != codes.Canceled {
			t.Fatalf("err %v, want CANCELED", err)
		}
		if st := hub.Stats(); st.Watchers != 0 {
			t.Errorf("stats %+v after the stream ended", st)
		}
	})
}

// TestWatchBatchesManyBatchesOneGoroutine: 300 batches are followed to
// their end by the stream's goroutine alone once they are subscribed.
func TestWatchBatchesManyBatches(t *testing.T) {
	t.Parallel()
	f := newProgress()
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("batch_m%d", i)
		f.scripts[ids[i]] = []batchv1.BatchStatus{stInProgress, stInProgress, stCompleted}
	}
	svc, hub := newMultiService(t, f, service.Options{Heartbeat: time.Hour})
	fs := newMultiStream(context.Background())
	if err := svc.WatchBatches(&batchv1.WatchBatchesRequest{BatchIds: ids}, fs); err != nil {
		t.Fatal(err)
	}
	by := checkStream(t, fs.Events())
	for _, id := range ids {
		evs := by[id]
		if len(evs) == 0 || evs[len(evs)-1].GetBatch().GetStatus() != stCompleted {
			t.Fatalf("%s: %v", id, evs)
		}
	}
	if st := hub.Stats(); st.Watchers != 0 {
		t.Errorf("%d watchers left", st.Watchers)
	}
}
