package watch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/wire"
)

func TestSubscribeSnapshot(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_snap"}
	f := newFake().script(k, ok(running("batch_snap", 3)))
	h := newHub(t, f, slow)

	s := subscribe(t, h, k)
	if !proto.Equal(s.Current(), running("batch_snap", 3)) {
		t.Fatalf("Current = %v", s.Current())
	}
	if b, v := s.Latest(); v != 1 || b != s.Current() {
		t.Errorf("Latest = %v, %d; want Current, 1", b, v)
	}
	if ready(s.Updates()) || ready(s.Done()) || s.Err() != nil {
		t.Error("a fresh subscription is already updated or done")
	}
	st := h.Stats()
	if f.Calls(k) != 1 || st.Polls != 1 || st.Pollers != 1 || st.Watchers != 1 || st.CacheHits != 0 {
		t.Errorf("calls %d, stats %+v", f.Calls(k), st)
	}
}

func TestManySubscribersOneFetchPerPoll(t *testing.T) {
	t.Parallel()
	const n = 50
	k := Key{BatchID: "batch_many"}
	gate := make(chan struct{})
	f := newFake()
	f.fallback = func(_ Key, i int) step {
		if i == 0 {
			return gated(gate, ok(running("batch_many", 0)))
		}
		return ok(running("batch_many", int64(i)))
	}
	h := newHub(t, f, nil)

	subs := make([]*Subscription, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { subs[i], errs[i] = h.Subscribe(context.Background(), k) })
	}
	// All n wait on the one first fetch.
	waitFor(t, "all subscribers to wait", func() bool { return h.Stats().Watchers == n })
	if c := f.Calls(k); c != 1 {
		t.Fatalf("%d first fetches for %d subscribers, want 1", c, n)
	}
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("subscriber %d: %v", i, errs[i])
		}
		defer subs[i].Close()
		if !proto.Equal(subs[i].Current(), running("batch_many", 0)) {
			t.Fatalf("subscriber %d got %v", i, subs[i].Current())
		}
	}
	waitFor(t, "ten more polls", func() bool { return h.Stats().Polls >= 11 })
	for _, s := range subs {
		s.Close()
	}
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
	st := h.Stats()
	if uint64(f.Calls(k)) != st.Polls {
		t.Errorf("fetcher saw %d calls, hub made %d polls", f.Calls(k), st.Polls)
	}
	if m := f.MaxInflight(k); m != 1 {
		t.Errorf("%d concurrent fetches of one key", m)
	}
	if st.Watchers != 0 {
		t.Errorf("Watchers = %d after every Close", st.Watchers)
	}
}

func TestLateJoinerNoFetch(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_late"}
	f := newFake().script(k, ok(running("batch_late", 1)), ok(running("batch_late", 2)))
	h := newHub(t, f, slow)

	first := subscribe(t, h, k)
	h.Poke(k) // second poll: version 2
	waitFor(t, "the second version", func() bool { _, v := first.Latest(); return v == 2 })

	late := subscribe(t, h, k)
	if c := f.Calls(k); c != 2 {
		t.Errorf("late joiner caused a fetch: %d calls", c)
	}
	if !proto.Equal(late.Current(), running("batch_late", 2)) {
		t.Errorf("late joiner got %v", late.Current())
	}
	if _, v := late.Latest(); v != 2 || ready(late.Updates()) {
		t.Errorf("late joiner at version %d, updated %v", v, ready(late.Updates()))
	}
	if st := h.Stats(); st.CacheHits != 1 || st.Watchers != 2 || st.Pollers != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestIdenticalPollsWakeNobody(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_same"}
	f := newFake().script(k, ok(running("batch_same", 1)))
	h := newHub(t, f, nil)

	s := subscribe(t, h, k)
	upd := s.Updates()
	waitFor(t, "ten polls", func() bool { return h.Stats().Polls >= 10 })
	if ready(upd) || ready(s.Updates()) {
		t.Error("identical polls woke the subscriber")
	}
	if _, v := s.Latest(); v != 1 {
		t.Errorf("version %d after identical polls, want 1", v)
	}
}

func TestVersionsCountChangesOnly(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_ver"}
	a, b := running("batch_ver", 1), running("batch_ver", 2)
	f := newFake().script(k, ok(a), ok(a), ok(a), ok(b), ok(b), ok(done("batch_ver")))
	h := newHub(t, f, nil)

	fast, lazy := subscribe(t, h, k), subscribe(t, h, k)
	var versions []uint64
	for loop := true; loop; {
		select {
		case <-fast.Updates():
			_, v := fast.Latest()
			versions = append(versions, v)
		case <-fast.Done():
			loop = false
		case <-time.After(patience):
			t.Fatal("timed out")
		}
	}
	if err := fast.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
	if b, v := fast.Latest(); v != 3 || !wire.IsTerminal(b) {
		t.Errorf("final Latest version %d, terminal %v; want 3, true", v, wire.IsTerminal(b))
	}
	// The fast watcher saw versions in order, never one twice.
	for i := 1; i < len(versions); i++ {
		if versions[i] <= versions[i-1] {
			t.Errorf("versions not increasing: %v", versions)
		}
	}
	// The lazy watcher never read; it just skips to the terminal batch.
	if err := waitDone(t, lazy); err != nil {
		t.Errorf("lazy Err = %v", err)
	}
	if !ready(lazy.Updates()) {
		t.Error("the lazy watcher is not told about the terminal batch")
	}
	if b, v := lazy.Latest(); v != 3 || !wire.IsTerminal(b) || ready(lazy.Updates()) {
		t.Errorf("lazy Latest = %v, %d", b, v)
	}
	if c := f.Calls(k); c != 6 {
		t.Errorf("%d fetches, want 6", c)
	}
}

func TestTerminalEndsSubscriptionsAndPoller(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_term"}
	f := newFake().script(k, ok(running("batch_term", 1)), ok(running("batch_term", 5)), ok(done("batch_term")))
	h := newHub(t, f, nil)

	subs := []*Subscription{subscribe(t, h, k), subscribe(t, h, k), subscribe(t, h, k)}
	for i, s := range subs {
		if err := waitDone(t, s); err != nil {
			t.Errorf("sub %d: Err = %v", i, err)
		}
		if b, _ := s.Latest(); !proto.Equal(b, done("batch_term")) {
			t.Errorf("sub %d: Latest = %v", i, b)
		}
	}
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
	if st := h.Stats(); st.Watchers != 0 {
		t.Errorf("Watchers = %d", st.Watchers)
	}
	if c := f.Calls(k); c != 3 {
		t.Errorf("%d fetches, want 3", c)
	}
	// Closing an ended subscription changes nothing.
	subs[0].Close()
	if err := subs[0].Err(); err != nil {
		t.Errorf("Err after Close of an ended subscription = %v", err)
	}
}

func TestTerminalOnFirstFetch(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_first_term"}
	f := newFake().script(k, ok(done("batch_first_term")))
	h := newHub(t, f, func(o *Options) { o.FreshFor = time.Hour })

	s := subscribe(t, h, k)
	if !wire.IsTerminal(s.Current()) {
		t.Fatalf("Current = %v", s.Current())
	}
	if !ready(s.Done()) || s.Err() != nil {
		t.Errorf("done %v, Err %v; want done with nil Err", ready(s.Done()), s.Err())
	}
	if ready(s.Updates()) {
		t.Error("Updates ready for the batch Current already returned")
	}
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })

	// A later subscriber gets the cached terminal batch: no fetch, no poller.
	s2 := subscribe(t, h, k)
	if !wire.IsTerminal(s2.Current()) || !ready(s2.Done()) || s2.Err() != nil {
		t.Errorf("second subscriber: %v, done %v, Err %v", s2.Current(), ready(s2.Done()), s2.Err())
	}
	if st := h.Stats(); f.Calls(k) != 1 || st.Pollers != 0 || st.CacheHits != 1 || st.Watchers != 0 {
		t.Errorf("calls %d, stats %+v", f.Calls(k), st)
	}
	s2.Close()
	if err := s2.Err(); err != nil {
		t.Errorf("Err after Close = %v", err)
	}
}

func TestTerminalFirstFetchAlwaysDone(t *testing.T) {
	t.Parallel()
	// Regression: Subscribe must never return a terminal Current with the
	// subscription not yet done (the poller publishing and ending in two
	// steps allowed that).
	f := newFake()
	f.fallback = func(k Key, _ int) step { return ok(done(k.BatchID)) }
	h := newHub(t, f, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				s, err := h.Subscribe(context.Background(), Key{BatchID: fmt.Sprintf("batch_t%d_%d", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				if !ready(s.Done()) || s.Err() != nil || !wire.IsTerminal(s.Current()) {
					t.Errorf("terminal snapshot, done %v, Err %v", ready(s.Done()), s.Err())
				}
				s.Close()
			}
		})
	}
	wg.Wait()
}

func TestLastCloseStopsPoller(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_close"}
	gate := make(chan struct{}) // never opened
	f := newFake().script(k, ok(running("batch_close", 1)), gated(gate, ok(running("batch_close", 2))))
	h := newHub(t, f, nil)

	a, b := subscribe(t, h, k), subscribe(t, h, k)
	waitFor(t, "the second poll to be in flight", func() bool { return f.Calls(k) == 2 })

	a.Close()
	a.Close() // idempotent
	if err := waitDone(t, a); !errors.Is(err, ErrClosed) {
		t.Errorf("closed sub Err = %v, want ErrClosed", err)
	}
	if ready(b.Done()) || f.Cancelled() != 0 {
		t.Fatal("closing one of two subscribers stopped the poller")
	}
	if st := h.Stats(); st.Watchers != 1 || st.Pollers != 1 {
		t.Errorf("stats %+v", st)
	}

	b.Close()
	waitFor(t, "the in-flight fetch to be cancelled", func() bool { return f.Cancelled() == 1 })
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
	if st := h.Stats(); st.Watchers != 0 {
		t.Errorf("Watchers = %d", st.Watchers)
	}
}

func TestTransientErrorsKeepSubscriptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{"503 with Retry-After", httpErr(503, 2*time.Millisecond)},
		{"429 with Retry-After", httpErr(429, 3*time.Millisecond)},
		{"500", httpErr(500, 0)},
		{"408", httpErr(408, 0)},
		{"409", httpErr(409, 0)},
		{"unreachable", fmt.Errorf("dial: %w", upstream.ErrUnreachable)},
		{"timeout", upstream.ErrTimeout},
		{"malformed", upstream.ErrMalformedResponse},
		{"caller deadline", fmt.Errorf("upstream: %w", context.DeadlineExceeded)},
		{"nil batch, nil error", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := "batch_transient"
			k := Key{BatchID: id}
			e := fail(tt.err)
			if tt.err == nil {
				e = step{} // (nil, nil)
			}
			f := newFake().script(k, ok(running(id, 1)), e, e, e, ok(running(id, 2)), e, ok(done(id)))
			h := newHub(t, f, nil)

			subs := []*Subscription{subscribe(t, h, k), subscribe(t, h, k), subscribe(t, h, k)}
			for i, s := range subs {
				if err := waitDone(t, s); err != nil {
					t.Fatalf("sub %d ended with %v", i, err)
				}
				if b, v := s.Latest(); !wire.IsTerminal(b) || v != 3 {
					t.Errorf("sub %d: Latest %v version %d", i, b, v)
				}
			}
			if c := f.Calls(k); c != 7 {
				t.Errorf("%d fetches, want 7", c)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	// With a Retry-After far beyond the poll interval the poller must not
	// retry before it; the subscription stays alive meanwhile.
	k := Key{BatchID: "batch_ra"}
	clock := Key{BatchID: "batch_clock"} // its 5ms polls measure time passing
	f := newFake().script(k, ok(running("batch_ra", 1)), fail(httpErr(503, time.Hour)), ok(done("batch_ra")))
	f.script(clock, ok(running("batch_clock", 1)))
	h := newHub(t, f, nil)
	s := subscribe(t, h, k)
	waitFor(t, "the 503", func() bool { return f.Calls(k) == 2 })
	subscribe(t, h, clock)
	waitFor(t, "twenty poll intervals", func() bool { return f.Calls(clock) >= 20 })
	if c := f.Calls(k); c != 2 || ready(s.Done()) {
		t.Errorf("%d fetches, done %v: the poller did not wait for Retry-After", c, ready(s.Done()))
	}
	// A poke overrides the wait (a webhook says the batch changed).
	h.Poke(k)
	if err := waitDone(t, s); err != nil {
		t.Errorf("Err = %v", err)
	}
}

func TestFailureBudget(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_budget"}
	f := newFake().script(k, ok(running("batch_budget", 1)), fail(httpErr(503, 0)))
	h := newHub(t, f, func(o *Options) { o.FailureBudget = 30 * time.Millisecond })

	s := subscribe(t, h, k)
	err := waitDone(t, s)
	if !errors.Is(err, ErrFailureBudget) {
		t.Fatalf("Err = %v, want ErrFailureBudget", err)
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.HTTPStatus != 503 {
		t.Errorf("Err %v does not carry the last upstream error", err)
	}
	if b, _ := s.Latest(); !proto.Equal(b, running("batch_budget", 1)) {
		t.Errorf("Latest = %v", b)
	}
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
	if f.Calls(k) < 3 {
		t.Errorf("only %d fetches: the poller did not retry", f.Calls(k))
	}
}

func TestFailureBudgetResetsOnSuccess(t *testing.T) {
	t.Parallel()
	// Failures separated by successes never add up to the budget, although
	// the whole run (30 poll intervals) is three times as long.
	k := Key{BatchID: "batch_reset"}
	var steps []step
	for i := range 30 {
		steps = append(steps, ok(running("batch_reset", int64(i))), fail(httpErr(503, 0)), fail(httpErr(503, 0)))
	}
	steps = append(steps, ok(done("batch_reset")))
	f := newFake().script(k, steps...)
	h := newHub(t, f, func(o *Options) {
		o.PollInterval = 10 * time.Millisecond
		o.FailureBudget = 100 * time.Millisecond
	})
	s := subscribe(t, h, k)
	if err := waitDone(t, s); err != nil {
		t.Fatalf("Err = %v", err)
	}
	if c := f.Calls(k); c != len(steps) {
		t.Errorf("%d fetches, want %d", c, len(steps))
	}
}

func TestPermanentErrorEndsAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int // 0: not an *upstream.Error
	}{
		{"404", httpErr(404, 0), 404},
		{"401", httpErr(401, 0), 401},
		{"403", httpErr(403, 0), 403},
		{"400", httpErr(400, 0), 400},
		{"402", httpErr(402, 0), 402},
		{"invalid id", fmt.Errorf("x: %w", upstream.ErrInvalidBatchID), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := Key{BatchID: "batch_perm"}
			f := newFake().script(k, ok(running("batch_perm", 1)), fail(tt.err), ok(running("batch_perm", 2)))
			h := newHub(t, f, nil)
			a, b := subscribe(t, h, k), subscribe(t, h, k)
			for _, s := range []*Subscription{a, b} {
				err := waitDone(t, s)
				if !errors.Is(err, tt.err) {
					t.Fatalf("Err = %v, want %v", err, tt.err)
				}
				var ue *upstream.Error
				if tt.status != 0 && (!errors.As(err, &ue) || ue.HTTPStatus != tt.status) {
					t.Errorf("Err %v: no *upstream.Error with status %d", err, tt.status)
				}
			}
			waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
			if c := f.Calls(k); c != 2 {
				t.Errorf("%d fetches, want 2 (no retry)", c)
			}
			if st := h.Stats(); st.Watchers != 0 {
				t.Errorf("Watchers = %d", st.Watchers)
			}
		})
	}
}

func TestFirstFetchErrorReturned(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{"404", httpErr(404, 0)},
		{"503", httpErr(503, time.Second)},
		{"unreachable", fmt.Errorf("dial: %w", upstream.ErrUnreachable)},
		{"malformed", upstream.ErrMalformedResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := Key{BatchID: "batch_ffe"}
			f := newFake().script(k, fail(tt.err), ok(running("batch_ffe", 1)))
			h := newHub(t, f, slow)

			s, err := h.Subscribe(context.Background(), k)
			if !errors.Is(err, tt.err) || s != nil {
				t.Fatalf("Subscribe = %v, %v; want nil, %v", s, err, tt.err)
			}
			waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
			if st := h.Stats(); st.Watchers != 0 {
				t.Errorf("Watchers = %d", st.Watchers)
			}
			// The error is not cached: the next Subscribe fetches again.
			s2 := subscribe(t, h, k)
			if !proto.Equal(s2.Current(), running("batch_ffe", 1)) || f.Calls(k) != 2 {
				t.Errorf("retry: %v after %d fetches", s2.Current(), f.Calls(k))
			}
		})
	}
}

func TestSubscribeContextEndsWait(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_ctx"}
	gate := make(chan struct{})
	f := newFake().script(k, gated(gate, ok(running("batch_ctx", 1))))
	h := newHub(t, f, nil)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := h.Subscribe(ctx, k)
		errc <- err
	}()
	waitFor(t, "the first fetch", func() bool { return f.Calls(k) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe = %v, want context.Canceled", err)
	}
	waitFor(t, "the fetch to be cancelled", func() bool { return f.Cancelled() == 1 })
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
	if st := h.Stats(); st.Watchers != 0 {
		t.Errorf("Watchers = %d", st.Watchers)
	}
	if _, err := h.Subscribe(ctx, k); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a done ctx = %v", err)
	}
}

// reqKey marks a Subscribe's context in TestPollContextValuesNotCancellation.
type reqKey struct{}

// TestPollContextValuesNotCancellation: a poller's fetches see what
// Options.PollContext made of the Subscribe's context, and go on after
// that context ended, even when PollContext returns it.
func TestPollContextValuesNotCancellation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		poll func(ctx context.Context, k Key) context.Context
	}{
		{"fresh context", func(ctx context.Context, _ Key) context.Context {
			return context.WithValue(context.Background(), reqKey{}, ctx.Value(reqKey{}))
		}},
		{"the Subscribe context itself", func(ctx context.Context, _ Key) context.Context { return ctx }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := Key{BatchID: "batch_fc"}
			f := newFake().script(k, ok(running("batch_fc", 1)))
			var mu sync.Mutex
			var seen []any
			h := newHub(t, f, func(o *Options) {
				o.PollContext = tt.poll
			})
			f.onCtx = func(ctx context.Context) {
				mu.Lock()
				seen = append(seen, ctx.Value(reqKey{}))
				mu.Unlock()
			}
			ctx, cancel := context.WithCancel(context.WithValue(context.Background(), reqKey{}, "req-1"))
			s, err := h.Subscribe(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cancel() // bounds only the Subscribe call
			n := f.Calls(k)
			waitFor(t, "polls after the Subscribe ctx ended", func() bool { return f.Calls(k) >= n+3 })
			if ready(s.Done()) {
				t.Fatalf("subscription ended with %v", s.Err())
			}
			mu.Lock()
			defer mu.Unlock()
			for i, v := range seen {
				if v != "req-1" {
					t.Fatalf("fetch %d saw value %v", i, v)
				}
			}
		})
	}
}

func TestPoke(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_poke"}
	f := newFake().script(k, ok(running("batch_poke", 1)), ok(done("batch_poke")))
	h := newHub(t, f, slow)

	h.Poke(k) // no poller: a no-op
	h.Poke(Key{BatchID: "nobody"})
	if f.Calls(k) != 0 {
		t.Fatal("Poke without a poller fetched")
	}
	s := subscribe(t, h, k)
	if c := f.Calls(k); c != 1 {
		t.Fatalf("%d fetches", c)
	}
	h.Poke(k)
	select {
	case <-s.Updates():
	case <-time.After(patience):
		t.Fatal("Poke did not poll")
	}
	if b, v := s.Latest(); !wire.IsTerminal(b) || v != 2 {
		t.Errorf("Latest = %v, %d", b, v)
	}
	if err := waitDone(t, s); err != nil {
		t.Errorf("Err = %v", err)
	}
}

// TestPokeBatch: a webhook knows only the batch id; every credential's
// poller of that batch polls at once, and no other batch's.
func TestPokeBatch(t *testing.T) {
	t.Parallel()
	ka, kb := Key{Credential: "a", BatchID: "batch_hook"}, Key{Credential: "b", BatchID: "batch_hook"}
	other := Key{Credential: "a", BatchID: "batch_other"}
	f := newFake().
		script(ka, ok(running("batch_hook", 1)), ok(done("batch_hook"))).
		script(kb, ok(running("batch_hook", 1)), ok(done("batch_hook"))).
		script(other, ok(running("batch_other", 1)), ok(done("batch_other")))
	h := newHub(t, f, slow)
	if n := h.PokeBatch("batch_hook"); n != 0 {
		t.Fatalf("PokeBatch with no pollers poked %d", n)
	}
	sa, sb, so := subscribe(t, h, ka), subscribe(t, h, kb), subscribe(t, h, other)
	if n := h.PokeBatch("batch_hook"); n != 2 {
		t.Fatalf("PokeBatch poked %d pollers, want 2", n)
	}
	for _, s := range []*Subscription{sa, sb} {
		if err := waitDone(t, s); err != nil {
			t.Fatalf("Err = %v", err)
		}
		if b, _ := s.Latest(); !wire.IsTerminal(b) {
			t.Fatalf("Latest = %v, want the terminal batch", b)
		}
	}
	if c := f.Calls(other); c != 1 {
		t.Fatalf("the other batch was fetched %d times, want 1", c)
	}
	select {
	case <-so.Done():
		t.Fatal("the other batch's subscription ended")
	default:
	}
}

func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.fallback = func(k Key, n int) step { return ok(running(k.BatchID, int64(n))) }
	h := New(f, Options{PollInterval: 5 * time.Millisecond, PollContext: credPoll})
	var subs []*Subscription
	for i := range 5 {
		k := Key{BatchID: fmt.Sprintf("batch_c%d", i)}
		for range 3 {
			s, err := h.Subscribe(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
		}
	}
	if st := h.Stats(); st.Watchers != 15 || st.Pollers != 5 {
		t.Fatalf("stats %+v", st)
	}
	h.Close()
	for i, s := range subs {
		if !ready(s.Done()) || !errors.Is(s.Err(), ErrShutdown) {
			t.Errorf("sub %d: done %v, Err %v", i, ready(s.Done()), s.Err())
		}
		s.Close()
		if !errors.Is(s.Err(), ErrShutdown) {
			t.Errorf("sub %d: Close after shutdown changed Err to %v", i, s.Err())
		}
	}
	if st := h.Stats(); st.Watchers != 0 || st.Pollers != 0 {
		t.Errorf("after Close: %+v", st)
	}
	if _, err := h.Subscribe(context.Background(), Key{BatchID: "batch_c0"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Subscribe after Close = %v", err)
	}
	if _, err := h.Get(context.Background(), Key{BatchID: "batch_c0"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Get after Close = %v", err)
	}
	h.Close() // idempotent
	h.Poke(Key{BatchID: "batch_c0"})
}

func TestCloseWhileSubscribeWaits(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_cw"}
	gate := make(chan struct{})
	f := newFake().script(k, gated(gate, ok(running("batch_cw", 1))))
	h := New(f, Options{PollContext: credPoll})
	errc := make(chan error, 1)
	go func() {
		_, err := h.Subscribe(context.Background(), k)
		errc <- err
	}()
	waitFor(t, "the first fetch", func() bool { return f.Calls(k) == 1 })
	h.Close()
	if err := <-errc; !errors.Is(err, ErrShutdown) {
		t.Errorf("Subscribe = %v, want ErrShutdown", err)
	}
	if f.Cancelled() != 1 {
		t.Error("Close did not cancel the in-flight fetch")
	}
}

// TestCloseWatches: the first step of shutdown ends every subscription and
// poller at once and refuses new ones, while a Get in flight keeps its
// upstream call and gets the batch, and later Gets still work.
func TestCloseWatches(t *testing.T) {
	t.Parallel()
	watched, got := Key{BatchID: "batch_cwa"}, Key{BatchID: "batch_cwg"}
	gate := make(chan struct{})
	f := newFake().script(watched, ok(running("batch_cwa", 1))).
		script(got, gated(gate, ok(running("batch_cwg", 1))))
	h := newHub(t, f, slow)
	s := subscribe(t, h, watched)
	type result struct {
		b   *batchv1.Batch
		err error
	}
	res := make(chan result, 1)
	go func() {
		b, err := h.Get(context.Background(), got)
		res <- result{b, err}
	}()
	waitFor(t, "the Get's fetch", func() bool { return f.Calls(got) == 1 })

	h.CloseWatches()
	if !ready(s.Done()) || !errors.Is(s.Err(), ErrShutdown) {
		t.Errorf("subscription: done %v, Err %v; want ended with ErrShutdown", ready(s.Done()), s.Err())
	}
	if _, err := h.Subscribe(context.Background(), watched); !errors.Is(err, ErrShutdown) {
		t.Errorf("Subscribe after CloseWatches = %v, want ErrShutdown", err)
	}
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
	if st := h.Stats(); st.Watchers != 0 {
		t.Errorf("after CloseWatches: %+v", st)
	}

	close(gate)
	if r := <-res; r.err != nil || r.b.GetId() != "batch_cwg" {
		t.Errorf("Get in flight at CloseWatches = %v, %v; want the batch", r.b, r.err)
	}
	if f.Cancelled() != 0 {
		t.Error("CloseWatches cancelled the Get's upstream call")
	}
	if b, err := h.Get(context.Background(), Key{BatchID: "batch_cwa"}); err != nil || b == nil {
		t.Errorf("Get after CloseWatches = %v, %v", b, err)
	}
	h.CloseWatches() // idempotent
	h.Close()
	if _, err := h.Get(context.Background(), got); !errors.Is(err, ErrShutdown) {
		t.Errorf("Get after Close = %v, want ErrShutdown", err)
	}
}

func TestCredentialsNeverShare(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.fallback = func(k Key, n int) step {
		b := running(k.BatchID, 1)
		b.Metadata = &batchv1.Metadata{Pairs: map[string]string{"seen_with": k.Credential}}
		return ok(b)
	}
	h := newHub(t, f, slow)
	ka := Key{Credential: "hash-a", BatchID: "batch_shared_id"}
	kb := Key{Credential: "hash-b", BatchID: "batch_shared_id"}

	sa, sb := subscribe(t, h, ka), subscribe(t, h, kb)
	if got := sa.Current().GetMetadata().GetPairs()["seen_with"]; got != "hash-a" {
		t.Errorf("a got a batch fetched with %q", got)
	}
	if got := sb.Current().GetMetadata().GetPairs()["seen_with"]; got != "hash-b" {
		t.Errorf("b got a batch fetched with %q", got)
	}
	if st := h.Stats(); st.Pollers != 2 || st.CacheHits != 0 {
		t.Errorf("stats %+v", st)
	}

	// Get: the fresh result of one credential never answers another.
	kc := Key{Credential: "hash-c", BatchID: "batch_shared_id"}
	b, err := h.Get(withCred(context.Background(), kc), kc)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.GetMetadata().GetPairs()["seen_with"]; got != "hash-c" {
		t.Errorf("Get for c returned a batch fetched with %q", got)
	}
	for _, k := range []Key{ka, kb, kc} {
		if c := f.Calls(k); c != 1 {
			t.Errorf("%v: %d fetches", k, c)
		}
	}
}

func TestLimiterSlowsAfter429(t *testing.T) {
	t.Parallel()
	const base = rate.Limit(1000)
	lim := rate.NewLimiter(base, 10)
	k := Key{BatchID: "batch_lim"}
	f := newFake().script(k,
		ok(running("batch_lim", 1)),
		fail(httpErr(429, 0)), fail(httpErr(429, 0)),
		ok(running("batch_lim", 2)))
	var mu sync.Mutex
	var limits []rate.Limit // the limit when each fetch started
	f.onCall = func(Key, int) {
		mu.Lock()
		limits = append(limits, lim.Limit())
		mu.Unlock()
	}
	h := newHub(t, f, func(o *Options) { o.Limiter = lim })
	subscribe(t, h, k)
	waitFor(t, "the limit to recover", func() bool { return f.Calls(k) >= 20 && lim.Limit() == base })

	mu.Lock()
	defer mu.Unlock()
	want := []rate.Limit{base, base, base / 2, base / 4, base/4 + base/16}
	for i, w := range want {
		if limits[i] != w {
			t.Fatalf("limits at fetch start %v, want prefix %v", limits[:len(want)], want)
		}
	}
}

func TestStressSubscribeClose(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.fallback = func(k Key, n int) step {
		switch {
		case k.BatchID == "batch_s0" && n%7 == 3:
			return fail(httpErr(503, 0))
		case k.BatchID == "batch_s1" && n == 40:
			return ok(done(k.BatchID))
		}
		return ok(running(k.BatchID, int64(n/3)))
	}
	h := newHub(t, f, func(o *Options) { o.PollInterval = time.Millisecond })
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var mine []*Subscription
			for range 100 {
				k := Key{Credential: fmt.Sprint(r.IntN(2)), BatchID: fmt.Sprintf("batch_s%d", r.IntN(4))}
				switch r.IntN(4) {
				case 0, 1:
					if s, err := h.Subscribe(context.Background(), k); err == nil {
						mine = append(mine, s)
					}
				case 2:
					if len(mine) > 0 {
						i := r.IntN(len(mine))
						mine[i].Close()
						mine = append(mine[:i], mine[i+1:]...)
					}
				case 3:
					h.Get(withCred(context.Background(), k), k)
					h.Poke(k)
				}
				for _, s := range mine {
					if ready(s.Updates()) {
						s.Latest()
					}
				}
			}
			for _, s := range mine {
				s.Close()
			}
		})
	}
	wg.Wait()
	waitFor(t, "every poller to stop", func() bool { return h.Stats().Pollers == 0 })
	if st := h.Stats(); st.Watchers != 0 {
		t.Errorf("Watchers = %d", st.Watchers)
	}
}
