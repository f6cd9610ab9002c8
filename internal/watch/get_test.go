package watch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// The Get tests that need "every caller has joined the in-flight call" run
// in a synctest bubble: synctest.Wait returns once every goroutine is
// blocked, which is exactly that moment. Time in a bubble is virtual.

func TestGetCoalescing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const n = 50
		k := Key{BatchID: "batch_get"}
		gate := make(chan struct{})
		f := newFake().script(k, gated(gate, ok(running("batch_get", 1))))
		h := New(f, Options{})
		defer h.Close()

		var wg sync.WaitGroup
		got := make([]*batchv1.Batch, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { got[i], errs[i] = h.Get(context.Background(), k) })
		}
		synctest.Wait() // all n blocked: one in the fetch, the rest joined
		if c := f.Calls(k); c != 1 {
			t.Fatalf("%d fetches for %d concurrent Gets", c, n)
		}
		close(gate)
		wg.Wait()
		for i := range n {
			if errs[i] != nil || !proto.Equal(got[i], running("batch_get", 1)) {
				t.Fatalf("Get %d = %v, %v", i, got[i], errs[i])
			}
		}
		if st := h.Stats(); st.Gets != 1 || st.Coalesced != n-1 || st.CacheHits != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

// getResult is what one Get returned.
type getResult struct {
	b   *batchv1.Batch
	err error
}

// goGet runs h.Get(ctx, k) in a goroutine and returns where its result
// arrives.
func goGet(ctx context.Context, h *Hub, k Key) <-chan getResult {
	res := make(chan getResult, 1)
	go func() { b, err := h.Get(ctx, k); res <- getResult{b, err} }()
	return res
}

func TestGetCancelDoesNotCancelOthers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// leader: the Get making the call is the one cancelled; else a
		// waiter is.
		leader bool
	}{{"leader cancelled", true}, {"waiter cancelled", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				k := Key{BatchID: "batch_gc"}
				gate := make(chan struct{})
				f := newFake().script(k, gated(gate, ok(running("batch_gc", 1))))
				h := New(f, Options{})
				defer h.Close()

				ctxFirst, ctxSecond := context.Background(), context.Background()
				ctxCancelled, cancel := context.WithCancel(context.Background())
				if tc.leader {
					ctxFirst = ctxCancelled
				} else {
					ctxSecond = ctxCancelled
				}
				first := goGet(ctxFirst, h, k) // makes the call
				synctest.Wait()
				second := goGet(ctxSecond, h, k)
				synctest.Wait()
				cancelled, other := second, first
				if tc.leader {
					cancelled, other = first, second
				}

				cancel()
				synctest.Wait()
				if f.Cancelled() != 0 {
					t.Fatal("one caller's cancel cancelled the shared call")
				}
				if !tc.leader {
					// A waiter returns at once.
					select {
					case r := <-cancelled:
						if !errors.Is(r.err, context.Canceled) || r.b != nil {
							t.Fatalf("cancelled Get = %v, %v", r.b, r.err)
						}
					default:
						t.Fatal("the cancelled waiter did not return")
					}
				}
				close(gate)
				if tc.leader {
					// The leader returns its own context's error once the
					// call it made for the others ends.
					if r := <-cancelled; !errors.Is(r.err, context.Canceled) || r.b != nil {
						t.Fatalf("cancelled Get = %v, %v", r.b, r.err)
					}
				}
				if r := <-other; r.err != nil || !proto.Equal(r.b, running("batch_gc", 1)) {
					t.Fatalf("other Get = %v, %v", r.b, r.err)
				}
				if c := f.Calls(k); c != 1 {
					t.Errorf("%d fetches", c)
				}
			})
		})
	}
}

// TestGetAbandonedCallCancelled: once every caller of a shared call has
// gone, the call is cancelled, and the next Get makes a new one.
func TestGetAbandonedCallCancelled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		waiters int // Gets that join the first one's call and are cancelled too
	}{{"alone", 0}, {"with waiters", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				k := Key{BatchID: "batch_ga"}
				f := newFake().script(k, gated(make(chan struct{}), ok(running("batch_ga", 1))), ok(running("batch_ga", 2)))
				h := New(f, Options{FreshFor: -1})
				defer h.Close()

				ctx, cancel := context.WithCancel(context.Background())
				results := []<-chan getResult{goGet(ctx, h, k)}
				synctest.Wait()
				for range tc.waiters {
					results = append(results, goGet(ctx, h, k))
				}
				synctest.Wait()
				cancel()
				for i, res := range results {
					if r := <-res; !errors.Is(r.err, context.Canceled) || r.b != nil {
						t.Fatalf("Get %d = %v, %v", i, r.b, r.err)
					}
				}
				synctest.Wait()
				if n := f.Cancelled(); n != 1 {
					t.Fatalf("%d fetches cancelled, want the abandoned one", n)
				}
				b, err := h.Get(context.Background(), k)
				if err != nil || !proto.Equal(b, running("batch_ga", 2)) {
					t.Fatalf("next Get = %v, %v", b, err)
				}
				if c := f.Calls(k); c != 2 {
					t.Errorf("%d fetches, want 2", c)
				}
			})
		})
	}
}

// TestGetKeysApart: Gets of keys that differ only in where the credential
// ends and the batch id begins do not share a call.
func TestGetKeysApart(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		ka, kb := Key{Credential: "ab", BatchID: "c"}, Key{Credential: "a", BatchID: "bc"}
		f := newFake().script(ka, gated(gate, ok(running("c", 1)))).script(kb, gated(gate, ok(running("bc", 2))))
		h := New(f, Options{})
		defer h.Close()
		ra, rb := goGet(withCred(context.Background(), ka), h, ka), goGet(withCred(context.Background(), kb), h, kb)
		synctest.Wait()
		if f.Calls(ka) != 1 || f.Calls(kb) != 1 {
			t.Fatalf("fetches: %d for %v, %d for %v", f.Calls(ka), ka, f.Calls(kb), kb)
		}
		close(gate)
		if r := <-ra; r.err != nil || r.b.GetId() != "c" {
			t.Errorf("Get %v = %v, %v", ka, r.b, r.err)
		}
		if r := <-rb; r.err != nil || r.b.GetId() != "bc" {
			t.Errorf("Get %v = %v, %v", kb, r.b, r.err)
		}
	})
}

func TestGetCallTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := Key{BatchID: "batch_gt"}
		f := newFake().script(k, gated(make(chan struct{}), ok(running("batch_gt", 1))))
		h := New(f, Options{CallTimeout: 10 * time.Second})
		defer h.Close()
		// The caller has no deadline; the shared call still ends.
		if _, err := h.Get(context.Background(), k); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get = %v, want the call timeout", err)
		}
	})
}

func TestGetFreshFor(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := Key{BatchID: "batch_fresh"}
		f := newFake().script(k, ok(running("batch_fresh", 1)), ok(running("batch_fresh", 2)))
		h := New(f, Options{FreshFor: time.Minute})
		defer h.Close()
		ctx := context.Background()

		b1, _ := h.Get(ctx, k)
		time.Sleep(59 * time.Second)
		b2, _ := h.Get(ctx, k)
		if f.Calls(k) != 1 || b2 != b1 {
			t.Fatalf("a result younger than FreshFor was fetched again (%d calls)", f.Calls(k))
		}
		time.Sleep(time.Second)
		b3, _ := h.Get(ctx, k)
		if f.Calls(k) != 2 || !proto.Equal(b3, running("batch_fresh", 2)) {
			t.Fatalf("an expired result answered Get (%d calls)", f.Calls(k))
		}
		if st := h.Stats(); st.Gets != 2 || st.CacheHits != 1 {
			t.Errorf("stats %+v", st)
		}
		h.Poke(k) // drops the cached result
		h.Get(ctx, k)
		if f.Calls(k) != 3 {
			t.Errorf("Get after Poke answered from the cache")
		}
	})
}

func TestGetCacheSweep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.fallback = func(k Key, _ int) step { return ok(running(k.BatchID, 1)) }
		h := New(f, Options{FreshFor: time.Second})
		defer h.Close()
		for round := range 4 {
			for i := range 300 {
				h.Get(context.Background(), Key{BatchID: fmt.Sprintf("batch_%d_%d", round, i)})
			}
			time.Sleep(2 * time.Second)
		}
		h.mu.Lock()
		n := len(h.cache)
		h.mu.Unlock()
		if n > 2*minSweep+300 {
			t.Errorf("cache holds %d entries; expired ones are not swept", n)
		}
	})
}

func TestGetCacheDisabled(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_nocache"}
	f := newFake().script(k, ok(running("batch_nocache", 1)))
	h := newHub(t, f, func(o *Options) { slow(o); o.FreshFor = -1 })
	for range 3 {
		if _, err := h.Get(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	subscribe(t, h, k)
	if c := f.Calls(k); c != 4 {
		t.Errorf("%d fetches, want 4", c)
	}
}

func TestGetFromFreshPoll(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_gp"}
	f := newFake().script(k, ok(running("batch_gp", 1)))
	h := newHub(t, f, slow)
	s := subscribe(t, h, k)
	b, err := h.Get(context.Background(), k)
	if err != nil || b != s.Current() {
		t.Fatalf("Get = %v, %v; want the poller's batch", b, err)
	}
	if st := h.Stats(); f.Calls(k) != 1 || st.Gets != 0 || st.CacheHits != 1 {
		t.Errorf("calls %d, stats %+v", f.Calls(k), st)
	}
}

func TestGetStartsPollerFromCache(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_seed"}
	f := newFake().script(k, ok(running("batch_seed", 1)), ok(running("batch_seed", 2)))
	h := newHub(t, f, slow)
	b, err := h.Get(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	s := subscribe(t, h, k)
	if s.Current() != b || f.Calls(k) != 1 {
		t.Errorf("Subscribe after a fresh Get fetched again (%d calls)", f.Calls(k))
	}
	if st := h.Stats(); st.CacheHits != 1 || st.Pollers != 1 {
		t.Errorf("stats %+v", st)
	}
	h.Poke(k)
	select {
	case <-s.Updates():
	case <-time.After(patience):
		t.Fatal("the seeded poller does not poll")
	}
}

func TestGetErrorsNotCached(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_gerr"}
	f := newFake().script(k, fail(httpErr(503, 0)), ok(running("batch_gerr", 1)))
	h := newHub(t, f, slow)
	if _, err := h.Get(context.Background(), k); err == nil {
		t.Fatal("Get swallowed the error")
	}
	if b, err := h.Get(context.Background(), k); err != nil || b == nil {
		t.Fatalf("Get after an error = %v, %v", b, err)
	}
	if c := f.Calls(k); c != 2 {
		t.Errorf("%d fetches", c)
	}
	if _, err := h.Get(canceledCtx(), k); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a done ctx = %v", err)
	}
}

func TestGetDuringClose(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_gclose"}
	f := newFake().script(k, gated(make(chan struct{}), ok(running("batch_gclose", 1))))
	h := New(f, Options{})
	errc := make(chan error, 1)
	go func() {
		_, err := h.Get(context.Background(), k)
		errc <- err
	}()
	waitFor(t, "the fetch", func() bool { return f.Calls(k) == 1 })
	h.Close()
	if err := <-errc; !errors.Is(err, ErrShutdown) {
		t.Errorf("Get = %v, want ErrShutdown", err)
	}
	if f.Cancelled() != 1 {
		t.Error("Close did not cancel the shared call")
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
