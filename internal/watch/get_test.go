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

func TestGetCancelDoesNotCancelOthers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := Key{BatchID: "batch_gc"}
		gate := make(chan struct{})
		f := newFake().script(k, gated(gate, ok(running("batch_gc", 1))))
		h := New(f, Options{})
		defer h.Close()

		ctxA, cancelA := context.WithCancel(context.Background())
		type result struct {
			b   *batchv1.Batch
			err error
		}
		resA, resB := make(chan result, 1), make(chan result, 1)
		go func() { b, err := h.Get(ctxA, k); resA <- result{b, err} }() // starts the call
		synctest.Wait()
		go func() { b, err := h.Get(context.Background(), k); resB <- result{b, err} }()
		synctest.Wait()

		cancelA()
		if r := <-resA; !errors.Is(r.err, context.Canceled) || r.b != nil {
			t.Fatalf("cancelled Get = %v, %v", r.b, r.err)
		}
		synctest.Wait()
		if f.Cancelled() != 0 {
			t.Fatal("one caller's cancel cancelled the shared call")
		}
		close(gate)
		if r := <-resB; r.err != nil || !proto.Equal(r.b, running("batch_gc", 1)) {
			t.Fatalf("other Get = %v, %v", r.b, r.err)
		}
		if c := f.Calls(k); c != 1 {
			t.Errorf("%d fetches", c)
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
