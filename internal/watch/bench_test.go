package watch

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// fetcherFunc adapts a function to Fetcher.
type fetcherFunc func(ctx context.Context, id string) (*batchv1.Batch, error)

func (f fetcherFunc) GetBatch(ctx context.Context, id string) (*batchv1.Batch, error) {
	return f(ctx, id)
}

// changingFetcher returns a different batch on every call.
func changingFetcher() Fetcher {
	var n atomic.Int64
	return fetcherFunc(func(_ context.Context, id string) (*batchv1.Batch, error) {
		return running(id, n.Add(1)), nil
	})
}

// BenchmarkFanout measures one change delivered to every subscription of a
// Key: a poke, one fetch, one publish, and every watcher goroutine woken,
// reading Latest. ns/op is per change; ns/delivery divides by subscribers.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := New(changingFetcher(), Options{PollInterval: time.Hour})
			defer h.Close()
			k := Key{BatchID: "batch_bench"}
			var delivered, watchers sync.WaitGroup
			for range n {
				s, err := h.Subscribe(context.Background(), k)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				watchers.Go(func() {
					for {
						select {
						case <-s.Updates():
							s.Latest()
							delivered.Done()
						case <-s.Done():
							return
						}
					}
				})
			}
			changes := 0
			for b.Loop() {
				delivered.Add(n)
				h.Poke(k)
				delivered.Wait()
				changes++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(changes*n), "ns/delivery")
			h.Close()
			watchers.Wait()
		})
	}
}

// BenchmarkPublish measures the poller's side of a change with 10,000
// subscriptions and nobody waiting: it does not depend on the number of
// subscribers.
func BenchmarkPublish(b *testing.B) {
	h := New(changingFetcher(), Options{PollInterval: time.Hour})
	defer h.Close()
	k := Key{BatchID: "batch_pub"}
	for range 10_000 {
		s, err := h.Subscribe(context.Background(), k)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
	}
	h.mu.Lock()
	p := h.pollers[k]
	h.mu.Unlock()
	bs := []*batchv1.Batch{running("batch_pub", 1), running("batch_pub", 2)}
	i := 0
	for b.Loop() {
		p.publish(bs[i%2], time.Now())
		i++
	}
}

// BenchmarkSubscribe measures joining a running poller and leaving it.
func BenchmarkSubscribe(b *testing.B) {
	h := New(changingFetcher(), Options{PollInterval: time.Hour})
	defer h.Close()
	k := Key{BatchID: "batch_sub"}
	anchor, err := h.Subscribe(context.Background(), k)
	if err != nil {
		b.Fatal(err)
	}
	defer anchor.Close()
	b.ReportAllocs()
	for b.Loop() {
		s, err := h.Subscribe(context.Background(), k)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// TestMemoryPerSubscription holds 10,000 subscriptions on 100 Keys and
// checks that the hub's share (subscriptions, pollers, their goroutine
// stacks and cached batches) stays under 1 KiB per subscription. It is not
// parallel, so no other test allocates meanwhile.
func TestMemoryPerSubscription(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 10,000 subscriptions")
	}
	const keys, perKey = 100, 100
	h := New(changingFetcher(), Options{PollInterval: time.Hour})
	defer h.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	subs := make([]*Subscription, 0, keys*perKey)
	for i := range keys * perKey {
		s, err := h.Subscribe(context.Background(), Key{BatchID: fmt.Sprintf("batch_m%03d", i%keys)})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapAlloc+after.StackInuse) - int64(before.HeapAlloc+before.StackInuse)
	per := used / int64(len(subs))
	t.Logf("%d subscriptions on %d keys: %d bytes in all, %d bytes per subscription", len(subs), keys, used, per)
	if per >= 1024 {
		t.Errorf("%d bytes per subscription, want < 1 KiB", per)
	}
	if st := h.Stats(); st.Watchers != keys*perKey || st.Pollers != keys {
		t.Errorf("stats %+v", st)
	}
	for _, s := range subs {
		s.Close()
	}
}
