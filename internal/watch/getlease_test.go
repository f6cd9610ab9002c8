package watch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// getCoord is a Coordinator and GetLeaser for one Key: the lease is held
// elsewhere while held is set; states are pushed to the followers by the
// test.
type getCoord struct {
	mu        sync.Mutex
	held      bool
	err       error // LeaseGet's error when set
	follows   map[*func(*batchv1.Batch, time.Time)]struct{}
	published []*batchv1.Batch
	released  int
}

func newGetCoord() *getCoord {
	return &getCoord{follows: make(map[*func(*batchv1.Batch, time.Time)]struct{})}
}

func (c *getCoord) Acquire(context.Context, Key) (bool, error) { return false, errors.New("unused") }
func (c *getCoord) Release(Key)                                {}
func (c *getCoord) Publish(Key, *batchv1.Batch, time.Time)     {}
func (c *getCoord) Poke(string)                                {}
func (c *getCoord) Shared(context.Context, Key) (*batchv1.Batch, time.Time, bool) {
	return nil, time.Time{}, false
}

func (c *getCoord) Follow(_ Key, fn func(*batchv1.Batch, time.Time)) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.follows[&fn] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.follows, &fn)
		c.mu.Unlock()
	}
}

// push calls the followers, as a shared state (or, b nil, the lease
// coming free) would.
func (c *getCoord) push(b *batchv1.Batch, at time.Time) {
	c.mu.Lock()
	fns := make([]func(*batchv1.Batch, time.Time), 0, len(c.follows))
	for fn := range c.follows {
		fns = append(fns, *fn)
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn(b, at)
	}
}

func (c *getCoord) LeaseGet(context.Context, Key) (func(*batchv1.Batch, time.Time), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	if c.held {
		return nil, nil
	}
	c.held = true
	return func(b *batchv1.Batch, _ time.Time) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if b != nil {
			c.published = append(c.published, b)
		}
		c.released++
		c.held = false
	}, nil
}

func (c *getCoord) set(f func(c *getCoord)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

// A Get whose lease another replica holds is answered by the shared state
// that replica writes, without an upstream call.
func TestGetWaitsForSharedState(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := Key{BatchID: "batch_gl"}
		f := newFake().script(k, ok(running("batch_gl", 1)))
		c := newGetCoord()
		c.held = true
		h := New(f, Options{Coordinator: c})
		defer h.Close()
		var got *batchv1.Batch
		var err error
		done := make(chan struct{})
		go func() { got, err = h.Get(context.Background(), k); close(done) }()
		synctest.Wait()
		c.push(running("batch_gl", 7), time.Now())
		<-done
		if err != nil || !proto.Equal(got, running("batch_gl", 7)) {
			t.Fatalf("Get = %v, %v", got, err)
		}
		if n := f.Calls(k); n != 0 {
			t.Fatalf("%d upstream calls, want 0", n)
		}
		if st := h.Stats(); st.SharedHits != 1 || st.Gets != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// No state within SharedGetWait (or half the caller's deadline): the Get
// calls by itself. A stale state does not answer.
func TestGetWaitBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := Key{BatchID: "batch_gw"}
		f := newFake().script(k, ok(running("batch_gw", 1)))
		c := newGetCoord()
		c.held = true
		h := New(f, Options{Coordinator: c, FreshFor: time.Minute})
		defer h.Close()
		start := time.Now()
		done := make(chan error)
		go func() { _, err := h.Get(context.Background(), k); done <- err }()
		synctest.Wait()
		c.push(running("batch_gw", 9), time.Now().Add(-2*time.Minute)) // stale
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("waited %v, want the default 3s", d)
		}
		if n := f.Calls(k); n != 1 {
			t.Fatalf("%d upstream calls, want 1", n)
		}

		h.Poke(k) // drop the cached result
		start = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := h.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 500*time.Millisecond {
			t.Fatalf("waited %v with a 1s deadline, want 500ms", d)
		}
	})
}

// The lease coming free without a state: the Get takes it, calls and
// shares the result. Unavailable: it calls at once.
func TestGetTakesFreedLease(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := Key{BatchID: "batch_gf"}
		f := newFake().script(k, ok(running("batch_gf", 2)))
		c := newGetCoord()
		c.held = true
		h := New(f, Options{Coordinator: c, FreshFor: time.Minute})
		defer h.Close()
		start := time.Now()
		done := make(chan error)
		go func() { _, err := h.Get(context.Background(), k); done <- err }()
		synctest.Wait()
		c.set(func(c *getCoord) { c.held = false })
		c.push(nil, time.Time{})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 0 {
			t.Fatal("the Get waited after the lease came free")
		}
		c.mu.Lock()
		pub, rel := len(c.published), c.released
		c.mu.Unlock()
		if n := f.Calls(k); n != 1 || pub != 1 || rel != 1 {
			t.Fatalf("%d calls, %d published, %d released: want 1 each", n, pub, rel)
		}

		h.Poke(k)
		c.set(func(c *getCoord) { c.held, c.err = true, errors.New("unavailable") })
		start = time.Now()
		if _, err := h.Get(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 0 || f.Calls(k) != 2 {
			t.Fatalf("unavailable: waited %v, %d calls", time.Since(start), f.Calls(k))
		}
	})
}
