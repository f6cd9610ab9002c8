package watch

import (
	"sync"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// TestOnPublish: the hook sees each new state a poller publishes (the
// first, a change, the terminal one), not an identical poll, with the
// instant it was published.
func TestOnPublish(t *testing.T) {
	t.Parallel()
	k := Key{BatchID: "batch_pub"}
	f := newFake().script(k, ok(running("batch_pub", 1)), ok(running("batch_pub", 1)), ok(running("batch_pub", 2)), ok(done("batch_pub")))
	type pub struct {
		k  Key
		b  *batchv1.Batch
		at time.Time
	}
	var mu sync.Mutex
	var pubs []pub
	h := newHub(t, f, func(o *Options) {
		o.PollInterval = time.Hour
		o.OnPublish = func(k Key, b *batchv1.Batch, at time.Time) {
			mu.Lock()
			pubs = append(pubs, pub{k, b, at})
			mu.Unlock()
		}
	})
	before := time.Now()
	s := subscribe(t, h, k)
	for range 3 { // identical, change, terminal
		h.PokeBatch("batch_pub")
		deadline := time.Now().Add(patience)
		n := f.Calls(k)
		for f.Calls(k) == n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if err := waitDone(t, s); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pubs) != 3 {
		t.Fatalf("%d publications, want 3 (first, change, terminal): %v", len(pubs), pubs)
	}
	for i, p := range pubs {
		if p.k != k || p.at.Before(before) || (i > 0 && p.at.Before(pubs[i-1].at)) {
			t.Errorf("publication %d: %v at %v", i, p.k, p.at)
		}
	}
	if !wire.IsTerminal(pubs[2].b) {
		t.Errorf("last publication not terminal: %v", pubs[2].b)
	}
}
