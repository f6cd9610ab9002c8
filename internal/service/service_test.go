package service_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/fanout"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// fakeHub records the keys it is asked for and answers Get from a
// function; Subscribe goes to a real hub over the same function.
type fakeHub struct {
	mu   sync.Mutex
	keys []watch.Key
	get  func(watch.Key) (*batchv1.Batch, error)
	hub  *watch.Hub
}

func newFakeHub(t *testing.T, get func(watch.Key) (*batchv1.Batch, error)) *fakeHub {
	f := &fakeHub{get: get}
	f.hub = watch.New(fetchFunc(func(_ context.Context, id string) (*batchv1.Batch, error) {
		return get(watch.Key{BatchID: id})
	}), watch.Options{PollInterval: time.Hour})
	t.Cleanup(f.hub.Close)
	return f
}

type fetchFunc func(context.Context, string) (*batchv1.Batch, error)

func (f fetchFunc) GetBatch(ctx context.Context, id string) (*batchv1.Batch, error) {
	return f(ctx, id)
}

func (f *fakeHub) Get(_ context.Context, k watch.Key) (*batchv1.Batch, error) {
	f.mu.Lock()
	f.keys = append(f.keys, k)
	f.mu.Unlock()
	return f.get(k)
}

func (f *fakeHub) Subscribe(ctx context.Context, k watch.Key) (*watch.Subscription, error) {
	f.mu.Lock()
	f.keys = append(f.keys, k)
	f.mu.Unlock()
	return f.hub.Subscribe(ctx, k)
}

type credKey struct{}

func TestGetBatch(t *testing.T) {
	t.Parallel()
	done := &batchv1.Batch{Id: "batch_ok", Status: batchv1.BatchStatus_BATCH_STATUS_COMPLETED}
	tests := []struct {
		name string
		id   string
		err  error
		code codes.Code
		gets int
	}{
		{"found", "batch_ok", nil, codes.OK, 1},
		{"invalid id never reaches the hub", "bad/id", nil, codes.InvalidArgument, 0},
		{"empty id", "", nil, codes.InvalidArgument, 0},
		{"upstream 404", "batch_x", &upstream.Error{HTTPStatus: 404}, codes.NotFound, 1},
		{"upstream down", "batch_x", upstream.ErrUnreachable, codes.Unavailable, 1},
		{"hub shut down", "batch_x", watch.ErrShutdown, codes.Unavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newFakeHub(t, func(watch.Key) (*batchv1.Batch, error) {
				if tt.err != nil {
					return nil, tt.err
				}
				return done, nil
			})
			svc := service.New(h, service.Options{
				Credential: func(ctx context.Context) string { s, _ := ctx.Value(credKey{}).(string); return s },
			})
			ctx := context.WithValue(context.Background(), credKey{}, "cred-hash-1")
			resp, err := svc.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: tt.id})
			if status.Code(err) != tt.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tt.code)
			}
			if tt.code == codes.OK && resp.GetBatch() != done {
				t.Fatalf("batch %v", resp.GetBatch())
			}
			if len(h.keys) != tt.gets {
				t.Fatalf("hub asked %d times, want %d", len(h.keys), tt.gets)
			}
			if tt.gets > 0 && h.keys[0] != (watch.Key{Credential: "cred-hash-1", BatchID: tt.id}) {
				t.Fatalf("hub key %+v: the call's credential must key the cache", h.keys[0])
			}
		})
	}
}

// fakeStream is a WatchBatch server stream that records events.
type fakeStream struct {
	grpc.ServerStream
	ctx    context.Context
	mu     sync.Mutex
	events []*batchv1.WatchBatchResponse
	sent   chan struct{}
}

func (f *fakeStream) Context() context.Context     { return f.ctx }
func (f *fakeStream) SetHeader(metadata.MD) error  { return nil }
func (f *fakeStream) SendHeader(metadata.MD) error { return nil }
func (f *fakeStream) SetTrailer(metadata.MD)       {}

// SendMsg takes what the service sends: a *fanout.Event, whose batch
// encoding is shared by its watchers.
func (f *fakeStream) SendMsg(m any) error {
	ev, ok := m.(*fanout.Event)
	if !ok {
		return fmt.Errorf("sent %T, want *fanout.Event", m)
	}
	return f.Send(ev.Message())
}

func (f *fakeStream) Send(ev *batchv1.WatchBatchResponse) error {
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.mu.Unlock()
	select {
	case f.sent <- struct{}{}:
	default:
	}
	return nil
}

func TestWatchBatchTerminalSnapshot(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t, func(k watch.Key) (*batchv1.Batch, error) {
		return &batchv1.Batch{Id: k.BatchID, Status: batchv1.BatchStatus_BATCH_STATUS_EXPIRED}, nil
	})
	svc := service.New(h, service.Options{})
	fs := &fakeStream{ctx: context.Background(), sent: make(chan struct{}, 1)}
	if err := svc.WatchBatch(&batchv1.WatchBatchRequest{BatchId: "batch_e"}, fs); err != nil {
		t.Fatalf("WatchBatch: %v", err)
	}
	if len(fs.events) != 1 || !fs.events[0].GetTerminal() || fs.events[0].GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT ||
		fs.events[0].GetSequence() != 1 || fs.events[0].GetObservedAtUnixMs() == 0 {
		t.Fatalf("events %v, want one terminal snapshot", fs.events)
	}
	if got, want := fs.events[0].GetTag(), wire.Tag(fs.events[0].GetBatch()); got != want || got == "" {
		t.Fatalf("snapshot tag %q, want wire.Tag's %q", got, want)
	}
}

func TestWatchBatchHeartbeatsAndMaxAge(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t, func(k watch.Key) (*batchv1.Batch, error) {
		return &batchv1.Batch{Id: k.BatchID, Status: batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS}, nil
	})
	svc := service.New(h, service.Options{Heartbeat: 5 * time.Millisecond, MaxAge: 200 * time.Millisecond})
	fs := &fakeStream{ctx: context.Background(), sent: make(chan struct{}, 1)}
	err := svc.WatchBatch(&batchv1.WatchBatchRequest{BatchId: "batch_p"}, fs)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v, want UNAVAILABLE at max age", err)
	}
	if len(fs.events) < 2 {
		t.Fatalf("%d events, want a snapshot and heartbeats", len(fs.events))
	}
	for i, ev := range fs.events[1:] {
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT || ev.GetBatch() != nil || ev.GetSequence() != uint64(i+2) {
			t.Fatalf("event %d: %v, want a heartbeat with sequence %d", i+2, ev, i+2)
		}
	}
}

func TestWatchBatchCancelled(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t, func(k watch.Key) (*batchv1.Batch, error) {
		return &batchv1.Batch{Id: k.BatchID, Status: batchv1.BatchStatus_BATCH_STATUS_VALIDATING}, nil
	})
	svc := service.New(h, service.Options{Heartbeat: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	fs := &fakeStream{ctx: ctx, sent: make(chan struct{}, 1)}
	errc := make(chan error, 1)
	go func() { errc <- svc.WatchBatch(&batchv1.WatchBatchRequest{BatchId: "batch_v"}, fs) }()
	<-fs.sent
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("err %v, want CANCELED", err)
	}
	if st := h.hub.Stats(); st.Watchers != 0 {
		t.Fatalf("%d watchers left after the stream ended", st.Watchers)
	}
}

// progressHub is a fake hub whose batch the test changes: set replaces it
// and pokes the poller, so that watchers see the change at once.
type progressHub struct {
	*fakeHub
	mu sync.Mutex
	b  *batchv1.Batch
}

func newProgressHub(t *testing.T, b *batchv1.Batch) *progressHub {
	p := &progressHub{b: b}
	p.fakeHub = newFakeHub(t, func(watch.Key) (*batchv1.Batch, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return proto.Clone(p.b).(*batchv1.Batch), nil
	})
	return p
}

func (p *progressHub) set(b *batchv1.Batch) {
	p.mu.Lock()
	p.b = b
	p.mu.Unlock()
	p.hub.Poke(watch.Key{BatchID: b.GetId()})
}

func progressBatch(id string, status batchv1.BatchStatus, completed int64) *batchv1.Batch {
	return &batchv1.Batch{
		Id: id, Object: "batch", Status: status, UpstreamStatus: wire.StatusString(status),
		RequestCounts: &batchv1.RequestCounts{Total: 10, Completed: completed},
	}
}

// snapshot returns a copy of the events sent so far.
func (f *fakeStream) snapshot() []*batchv1.WatchBatchResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*batchv1.WatchBatchResponse(nil), f.events...)
}

// waitEvents waits until fs has sent at least n events and returns them.
func waitEvents(t *testing.T, fs *fakeStream, n int) []*batchv1.WatchBatchResponse {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if evs := fs.snapshot(); len(evs) >= n {
			return evs
		}
		select {
		case <-fs.sent:
		case <-time.After(time.Millisecond):
		case <-deadline:
			t.Fatalf("%d events after 5s, want %d: %v", len(fs.snapshot()), n, fs.snapshot())
		}
	}
}

// TestWatchBatchResumeCurrent: resuming with the current state's tag
// starts with a heartbeat, not a snapshot; heartbeats follow until the
// batch changes, and then the changes, each with its own tag.
func TestWatchBatchResumeCurrent(t *testing.T) {
	t.Parallel()
	first := progressBatch("batch_r", batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, 1)
	h := newProgressHub(t, first)
	svc := service.New(h, service.Options{Heartbeat: 5 * time.Millisecond})
	fs := &fakeStream{ctx: context.Background(), sent: make(chan struct{}, 1)}
	errc := make(chan error, 1)
	go func() {
		errc <- svc.WatchBatch(&batchv1.WatchBatchRequest{BatchId: "batch_r", ResumeTag: wire.Tag(first)}, fs)
	}()
	evs := waitEvents(t, fs, 3)
	for i, ev := range evs[:3] {
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT || ev.GetBatch() != nil || ev.GetTag() != "" || ev.GetSequence() != uint64(i+1) {
			t.Fatalf("event %d: %v, want a heartbeat with sequence %d and no tag", i+1, ev, i+1)
		}
	}
	second := progressBatch("batch_r", batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, 5)
	h.set(second)
	done := progressBatch("batch_r", batchv1.BatchStatus_BATCH_STATUS_COMPLETED, 10)
	for {
		evs = waitEvents(t, fs, len(evs)+1)
		if ev := evs[len(evs)-1]; ev.GetType() == batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
			if ev.GetTag() != wire.Tag(second) || !proto.Equal(ev.GetBatch(), second) || ev.GetTerminal() {
				t.Fatalf("first change %v, want the second state with tag %s", ev, wire.Tag(second))
			}
			break
		}
	}
	h.set(done)
	if err := <-errc; err != nil {
		t.Fatalf("WatchBatch: %v", err)
	}
	evs = fs.snapshot()
	last := evs[len(evs)-1]
	if last.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE || !last.GetTerminal() || last.GetTag() != wire.Tag(done) {
		t.Fatalf("last event %v, want the terminal change tagged %s", last, wire.Tag(done))
	}
	for _, ev := range evs {
		if ev.GetType() == batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
			t.Fatalf("a resumed stream sent a snapshot: %v", ev)
		}
	}
}

// TestWatchBatchResumeStale: a tag that is not the current state's (an
// older state's, or anything else) gets the current state as a snapshot.
func TestWatchBatchResumeStale(t *testing.T) {
	t.Parallel()
	old := progressBatch("batch_s", batchv1.BatchStatus_BATCH_STATUS_VALIDATING, 0)
	cur := progressBatch("batch_s", batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, 3)
	h := newProgressHub(t, cur)
	for _, tag := range []string{wire.Tag(old), "bt1_AAAAAAAAAAAAAAAAAAAAAA", "not a tag", `"` + wire.Tag(cur) + `"`} {
		svc := service.New(h, service.Options{Heartbeat: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		fs := &fakeStream{ctx: ctx, sent: make(chan struct{}, 1)}
		errc := make(chan error, 1)
		go func() { errc <- svc.WatchBatch(&batchv1.WatchBatchRequest{BatchId: "batch_s", ResumeTag: tag}, fs) }()
		ev := waitEvents(t, fs, 1)[0]
		cancel()
		<-errc
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || ev.GetTag() != wire.Tag(cur) || !proto.Equal(ev.GetBatch(), cur) {
			t.Fatalf("resume_tag %q: first event %v, want the current snapshot tagged %s", tag, ev, wire.Tag(cur))
		}
	}
}

// TestWatchBatchResumeTerminal: resuming a terminal batch with its tag
// ends at once with OK and no event (nothing new will come); with another
// tag it gets the one terminal snapshot.
func TestWatchBatchResumeTerminal(t *testing.T) {
	t.Parallel()
	done := progressBatch("batch_t", batchv1.BatchStatus_BATCH_STATUS_FAILED, 0)
	h := newProgressHub(t, done)
	svc := service.New(h, service.Options{})

	fs := &fakeStream{ctx: context.Background(), sent: make(chan struct{}, 1)}
	if err := svc.WatchBatch(&batchv1.WatchBatchRequest{BatchId: "batch_t", ResumeTag: wire.Tag(done)}, fs); err != nil {
		t.Fatalf("WatchBatch: %v", err)
	}
	if evs := fs.snapshot(); len(evs) != 0 {
		t.Fatalf("events %v, want none", evs)
	}

	fs = &fakeStream{ctx: context.Background(), sent: make(chan struct{}, 1)}
	stale := progressBatch("batch_t", batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, 0)
	if err := svc.WatchBatch(&batchv1.WatchBatchRequest{BatchId: "batch_t", ResumeTag: wire.Tag(stale)}, fs); err != nil {
		t.Fatalf("WatchBatch: %v", err)
	}
	if evs := fs.snapshot(); len(evs) != 1 || !evs[0].GetTerminal() || evs[0].GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || evs[0].GetTag() != wire.Tag(done) {
		t.Fatalf("events %v, want one terminal snapshot tagged %s", evs, wire.Tag(done))
	}
}
