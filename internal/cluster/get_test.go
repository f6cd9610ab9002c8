package cluster_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/cluster"
	"github.com/batchgate/batchgate/internal/watch"
)

// gate is an upstream whose fetches block until it is opened, counting
// them per replica.
type gate struct {
	open  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	calls map[string]int
}

func newGate() *gate { return &gate{open: make(chan struct{}), calls: make(map[string]int)} }

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.calls {
		n += c
	}
	return n
}

func (g *gate) callsOf(replica string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[replica]
}

// gateFetcher is one replica's view of a gate.
type gateFetcher struct {
	g       *gate
	replica string
}

func (f gateFetcher) GetBatch(ctx context.Context, id string) (*batchv1.Batch, error) {
	f.g.mu.Lock()
	f.g.calls[f.replica]++
	f.g.mu.Unlock()
	select {
	case <-f.g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return batchOf(id, "", 3, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS), nil
}

// gateReplicas starts count replicas fetching from g, sharing n.
func gateReplicas(t *testing.T, n *natsServer, g *gate, count int) []*replica {
	t.Helper()
	rs := make([]*replica, count)
	for i := range rs {
		name := string(rune('a' + i))
		cl, err := cluster.New(cluster.Options{
			URL: n.url(), Bucket: "test", PollInterval: time.Minute, ReplicaID: name,
			OpTimeout: time.Second, ReconnectWait: 50 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		hub := watch.New(gateFetcher{g: g, replica: name}, watch.Options{
			PollInterval: time.Minute, PollContext: pollContext, Coordinator: cl,
		})
		cl.OnPoke(func(id string) { hub.PokeLocal(id) })
		r := &replica{name: name, hub: hub, cl: cl}
		t.Cleanup(r.close)
		rs[i] = r
	}
	for _, r := range rs {
		waitFor(t, "cluster shared on "+r.name, func() bool { return r.cl.Stats().Shared })
	}
	return rs
}

// getAll runs one Get of k on each replica at once and returns their
// errors, after checking that every answer is k's batch.
func getAll(t *testing.T, rs []*replica, k watch.Key) []error {
	t.Helper()
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			b, err := r.hub.Get(ctx, k)
			if err == nil && b.GetId() != k.BatchID {
				err = errors.New("wrong batch " + b.GetId())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

// Concurrent Gets of a batch nobody watches, one per replica, make one
// upstream call: the replica that takes the batch's lease calls and shares
// the result, the others wait for it. The lease is given up afterwards.
func TestGetCoalescedAcrossReplicas(t *testing.T) {
	n := startNATS(t)
	g := newGate()
	rs := gateReplicas(t, n, g, 3)
	k := watch.Key{BatchID: "batch_cget"}

	done := make(chan []error, 1)
	go func() { done <- getAll(t, rs, k) }()
	waitFor(t, "the first upstream call", func() bool { return g.total() >= 1 })
	// Let the other Gets find the lease held and wait.
	time.Sleep(300 * time.Millisecond)
	g.release()
	for i, err := range <-done {
		if err != nil {
			t.Fatalf("%s: Get: %v", rs[i].name, err)
		}
	}
	if got := g.total(); got != 1 {
		t.Fatalf("%d upstream calls, want 1", got)
	}
	var gets, hits, leases uint64
	for _, r := range rs {
		st := r.hub.Stats()
		gets += st.Gets
		hits += st.SharedHits
		leases += r.cl.Stats().GetLeases
	}
	if gets != 1 || hits != 2 || leases != 1 {
		t.Fatalf("hub Gets %d, SharedHits %d, cluster GetLeases %d: want 1, 2, 1", gets, hits, leases)
	}
	kv := bucket(t, n)
	waitFor(t, "the Get lease given up", func() bool {
		_, err := kv.Get(context.Background(), "lease._."+k.BatchID)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})

	// A later Get on any replica is answered from the cache or the shared
	// state, without a call.
	for _, r := range rs {
		if _, err := r.hub.Get(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	if got := g.total(); got != 1 {
		t.Fatalf("%d upstream calls after the later Gets, want 1", got)
	}
}

// A Get that finds the lease held by another replica's poller waits for
// its state: after a poke, the holder polls and the Get is answered from
// that poll.
func TestGetWaitsForHolderPoll(t *testing.T) {
	n := startNATS(t)
	g := newGate()
	g.release()
	rs := gateReplicas(t, n, g, 2)
	a, b := rs[0], rs[1]
	k := watch.Key{BatchID: "batch_cget_poll"}
	subscribe(t, a, k)
	waitFor(t, "a's state shared", func() bool { return a.cl.Stats().StatesWritten > 0 })
	// The poke stales the shared state for b and makes a poll (poked in
	// this order, as a poke from NATS might not be): b's Get waits for
	// the poll's state instead of calling.
	b.hub.PokeLocal(k.BatchID)
	a.hub.PokeLocal(k.BatchID)
	if _, err := b.hub.Get(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's poked poll shared", func() bool { return a.cl.Stats().StatesWritten > 1 })
	if calls := g.callsOf("b"); calls != 0 {
		t.Fatalf("b made %d upstream calls, want 0", calls)
	}
}

// With NATS down, every replica's Get calls the upstream by itself, at
// once.
func TestGetAloneWithoutNATS(t *testing.T) {
	n := startNATS(t)
	g := newGate()
	g.release()
	rs := gateReplicas(t, n, g, 3)
	n.stop()
	for _, r := range rs {
		waitFor(t, r.name+" falls back", func() bool { return !r.cl.Stats().Shared })
	}
	start := time.Now()
	for i, err := range getAll(t, rs, watch.Key{BatchID: "batch_cget_alone"}) {
		if err != nil {
			t.Fatalf("%s: Get: %v", rs[i].name, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Gets took %v without NATS, want no wait", d)
	}
	for _, r := range rs {
		if calls := g.callsOf(r.name); calls != 1 {
			t.Fatalf("%s made %d upstream calls, want 1", r.name, calls)
		}
	}
}
