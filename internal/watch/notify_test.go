package watch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// recvWithin reports whether ch was signalled within d.
func recvWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestNotifyOneWaiterManySubscriptions(t *testing.T) {
	t.Parallel()
	const n = 20
	f := newFake()
	keys := make([]Key, n)
	for i := range keys {
		id := fmt.Sprintf("batch_n%d", i)
		keys[i] = Key{BatchID: id}
		// Each batch runs, changes twice, then completes.
		f.script(keys[i], ok(running(id, 0)), ok(running(id, 1)), ok(running(id, 2)), ok(done(id)))
	}
	h := newHub(t, f, nil)
	ch := make(chan struct{}, 1)
	subs := make([]*Subscription, n)
	last := make([]uint64, n)
	for i, k := range keys {
		subs[i] = subscribe(t, h, k)
		subs[i].Notify(ch)
		_, last[i] = subs[i].Latest()
	}
	// One goroutine, this one, follows every batch to its end.
	changes, left := 0, n
	deadline := time.After(patience)
	for left > 0 {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d subscriptions not done", left)
		}
		for i, s := range subs {
			if s == nil {
				continue
			}
			if ready(s.Updates()) {
				_, v := s.Latest()
				if v <= last[i] {
					t.Fatalf("sub %d: version %d after %d", i, v, last[i])
				}
				last[i] = v
				changes++
			}
			if ready(s.Done()) {
				if err := s.Err(); err != nil {
					t.Fatalf("sub %d: %v", i, err)
				}
				if b, _ := s.Latest(); b.GetStatus() != completed {
					t.Fatalf("sub %d ended at %v", i, b.GetStatus())
				}
				subs[i] = nil
				left--
			}
		}
	}
	// 3 changes per batch (1, 2, done): conflation may merge some, never
	// lose the last one (checked above).
	if changes < n || changes > 3*n {
		t.Errorf("%d changes seen, want %d to %d", changes, n, 3*n)
	}
	if st := h.Stats(); st.Watchers != 0 {
		t.Errorf("stats %+v after every batch ended", st)
	}
}

func TestNotifyPendingChangeSignalsAtOnce(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_pend"}
	f := newFake().script(k, ok(running("batch_pend", 0)), ok(running("batch_pend", 1)))
	h := newHub(t, f, nil)
	s := subscribe(t, h, k)
	waitFor(t, "a change", func() bool { return ready(s.Updates()) })
	ch := make(chan struct{}, 1)
	s.Notify(ch)
	if !ready(ch) {
		t.Fatal("a change before Notify was not signalled")
	}
	s.Latest()
	if ready(ch) {
		t.Fatal("signalled with nothing new")
	}
}

func TestNotifyEnds(t *testing.T) {
	t.Parallel()
	t.Run("terminal at subscribe", func(t *testing.T) {
		t.Parallel()
		k := Key{BatchID: "batch_t"}
		h := newHub(t, newFake().script(k, ok(done("batch_t"))), slow)
		s := subscribe(t, h, k)
		ch := make(chan struct{}, 1)
		s.Notify(ch)
		if !ready(ch) {
			t.Fatal("an ended subscription was not signalled")
		}
	})
	t.Run("permanent error", func(t *testing.T) {
		t.Parallel()
		k := Key{BatchID: "batch_gone"}
		h := newHub(t, newFake().script(k, ok(running("batch_gone", 0)), fail(httpErr(404, 0))), nil)
		s := subscribe(t, h, k)
		ch := make(chan struct{}, 1)
		s.Notify(ch)
		if !recvWithin(ch, patience) {
			t.Fatal("the end was not signalled")
		}
		waitDone(t, s)
		if !ready(s.Done()) || s.Err() == nil {
			t.Fatalf("done %v, err %v", ready(s.Done()), s.Err())
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		t.Parallel()
		k := Key{BatchID: "batch_sd"}
		h := newHub(t, newFake().script(k, ok(running("batch_sd", 0))), slow)
		s := subscribe(t, h, k)
		ch := make(chan struct{}, 1)
		s.Notify(ch)
		h.CloseWatches()
		if !ready(ch) || !errors.Is(s.Err(), ErrShutdown) {
			t.Fatalf("signalled %v, err %v", ready(ch), s.Err())
		}
	})
}

func TestNotifyStops(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_stop"}
	f := newFake().script(k, ok(running("batch_stop", 0)))
	f.fallback = nil
	h := newHub(t, f, slow)
	a := subscribe(t, h, k)
	b := subscribe(t, h, k)
	cha, chb := make(chan struct{}, 1), make(chan struct{}, 1)
	a.Notify(cha)
	b.Notify(chb)
	a.Notify(nil) // a stops listening
	b.Close()     // b is gone
	f.script(k, ok(running("batch_stop", 5)))
	h.Poke(k)
	waitFor(t, "the change", func() bool { return ready(a.Updates()) })
	if ready(cha) || ready(chb) {
		t.Fatalf("signals after Notify(nil) (%v) or Close (%v)", ready(cha), ready(chb))
	}
	// Subscribe returns a subscription whose Notify works with a context
	// that has ended since.
	ctx, cancel := context.WithCancel(context.Background())
	c, err := h.Subscribe(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	defer c.Close()
	chc := make(chan struct{}, 1)
	c.Notify(chc)
	f.script(k, ok(running("batch_stop", 6)))
	h.Poke(k)
	if !recvWithin(chc, patience) {
		t.Fatal("no signal for the change")
	}
}
