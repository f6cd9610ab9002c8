package watch

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/upstream"
)

func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m)
}

// patience bounds every wait in these tests. It is generous on purpose: it
// only matters when a test is about to fail.
const patience = 10 * time.Second

// credKey carries the credential a fake fetch is made with, as the
// gateway's contexts carry the API key.
type credKey struct{}

// withCred puts k's credential in ctx, for the fake fetcher: Get callers
// pass it in their ctx, pollers get it from credPoll.
func withCred(ctx context.Context, k Key) context.Context {
	return context.WithValue(ctx, credKey{}, k.Credential)
}

// credPoll is the tests' Options.PollContext: a fresh context with k's
// credential.
func credPoll(_ context.Context, k Key) context.Context {
	return withCred(context.Background(), k)
}

// step is one scripted answer of fakeFetcher.
type step struct {
	b   *batchv1.Batch
	err error
	// gate, when set, holds the fetch until it is closed (then the step
	// answers) or the fetch's ctx is done (then it returns ctx.Err()).
	gate chan struct{}
}

// fakeFetcher answers GetBatch from a script per Key (the credential comes
// from the ctx, via withCred) and counts calls. After its script runs out a
// Key repeats its last step; a Key without a script gets fallback.
type fakeFetcher struct {
	mu          sync.Mutex
	scripts     map[Key][]step
	fallback    func(k Key, n int) step
	onCall      func(k Key, n int)        // called before answering, outside mu
	onCtx       func(ctx context.Context) // called with each fetch's ctx, outside mu
	calls       map[Key]int
	inflight    map[Key]int
	maxInflight map[Key]int
	cancelled   int // gated fetches ended by their ctx
}

func newFake() *fakeFetcher {
	return &fakeFetcher{
		scripts:     make(map[Key][]step),
		calls:       make(map[Key]int),
		inflight:    make(map[Key]int),
		maxInflight: make(map[Key]int),
	}
}

func (f *fakeFetcher) ctxHook() func(context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.onCtx
}

// script sets k's answers.
func (f *fakeFetcher) script(k Key, steps ...step) *fakeFetcher {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scripts[k] = steps
	return f
}

func (f *fakeFetcher) GetBatch(ctx context.Context, batchID string) (*batchv1.Batch, error) {
	cred, _ := ctx.Value(credKey{}).(string)
	k := Key{Credential: cred, BatchID: batchID}
	f.mu.Lock()
	n := f.calls[k]
	f.calls[k]++
	f.inflight[k]++
	f.maxInflight[k] = max(f.maxInflight[k], f.inflight[k])
	var st step
	if s := f.scripts[k]; len(s) > 0 {
		st = s[min(n, len(s)-1)]
	} else if f.fallback != nil {
		st = f.fallback(k, n)
	} else {
		st = step{err: &upstream.Error{HTTPStatus: 404, Type: "not_found_error"}}
	}
	onCall := f.onCall
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight[k]--
		f.mu.Unlock()
	}()
	if onCall != nil {
		onCall(k, n)
	}
	if onCtx := f.ctxHook(); onCtx != nil {
		onCtx(ctx)
	}
	if st.gate != nil {
		select {
		case <-st.gate:
		case <-ctx.Done():
			f.mu.Lock()
			f.cancelled++
			f.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	if st.err != nil {
		return nil, st.err
	}
	return proto.Clone(st.b).(*batchv1.Batch), nil
}

// Calls returns how many fetches k has had.
func (f *fakeFetcher) Calls(k Key) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[k]
}

// MaxInflight returns the most fetches k ever had at once.
func (f *fakeFetcher) MaxInflight(k Key) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInflight[k]
}

// Cancelled returns how many gated fetches ended because their ctx did.
func (f *fakeFetcher) Cancelled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancelled
}

// ok, fail and gated build script steps.
func ok(b *batchv1.Batch) step { return step{b: b} }
func fail(err error) step      { return step{err: err} }
func gated(gate chan struct{}, s step) step {
	s.gate = gate
	return s
}

// batch returns a batch with the given status and completed count.
func batch(id string, st batchv1.BatchStatus, completed int64) *batchv1.Batch {
	return &batchv1.Batch{
		Id:             id,
		Object:         "batch",
		Endpoint:       "/v1/chat/completions",
		Status:         st,
		UpstreamStatus: strings.ToLower(strings.TrimPrefix(st.String(), "BATCH_STATUS_")),
		InputFileId:    "file_in",
		RequestCounts:  &batchv1.RequestCounts{Total: 10, Completed: completed},
	}
}

const (
	inProgress = batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS
	completed  = batchv1.BatchStatus_BATCH_STATUS_COMPLETED
)

func running(id string, n int64) *batchv1.Batch { return batch(id, inProgress, n) }
func done(id string) *batchv1.Batch             { return batch(id, completed, 10) }

func httpErr(status int, retryAfter time.Duration) error {
	return &upstream.Error{HTTPStatus: status, RetryAfter: retryAfter}
}

// newHub returns a hub over f with 5ms polls and withCred, closed when the
// test ends. mutate, when set, adjusts the options first.
func newHub(t testing.TB, f Fetcher, mutate func(*Options)) *Hub {
	t.Helper()
	opts := Options{PollInterval: 5 * time.Millisecond, PollContext: credPoll}
	if mutate != nil {
		mutate(&opts)
	}
	h := New(f, opts)
	t.Cleanup(h.Close)
	return h
}

// slow makes polls rare, so that only the test triggers fetches.
func slow(o *Options) { o.PollInterval = time.Hour }

// waitFor polls cond until it holds, failing the test after patience.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitDone waits for s to end and returns its Err.
func waitDone(t testing.TB, s *Subscription) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(patience):
		t.Fatal("timed out waiting for the subscription to end")
		return nil
	}
}

// subscribe subscribes or fails the test; the subscription is closed when
// the test ends.
func subscribe(t testing.TB, h *Hub, k Key) *Subscription {
	t.Helper()
	s, err := h.Subscribe(context.Background(), k)
	if err != nil {
		t.Fatalf("Subscribe(%v): %v", k, err)
	}
	t.Cleanup(s.Close)
	return s
}

// ready reports whether ch is ready.
func ready(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
