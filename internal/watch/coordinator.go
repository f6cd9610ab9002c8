package watch

import (
	"context"
	"sync"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Coordinator shares the hub's pollers with the hubs of other replicas, so
// that one replica polls each Key for the whole cluster (internal/cluster
// implements it on NATS JetStream). Without one (Options.Coordinator nil)
// the hub polls every watched Key itself.
//
// A poller asks Acquire before each poll. When this replica holds (or has
// just taken) k's lease, the poller polls upstream as without a
// coordinator and hands each batch to Publish; when another replica holds
// it, the poller follows the shared state instead, through Follow, and
// publishes it to its watchers exactly as a poll result; when the
// coordinator fails, the poller polls by itself. Keys carry only the
// credential's opaque identifier, never the credential.
type Coordinator interface {
	// Acquire takes k's lease for this replica, or renews it, and reports
	// whether this replica holds it. An error means the cluster is not
	// available: the caller polls by itself. It must return quickly when
	// the cluster is unreachable.
	Acquire(ctx context.Context, k Key) (held bool, err error)
	// Release gives up k's lease if this replica holds it, so that
	// another replica can take it over at once.
	Release(k Key)
	// Publish makes b, observed at at, k's shared state. The lease holder
	// calls it after each successful poll.
	Publish(k Key, b *batchv1.Batch, at time.Time)
	// Shared returns k's shared state and when it was observed; ok is
	// false when there is none or the cluster is not available.
	Shared(ctx context.Context, k Key) (b *batchv1.Batch, at time.Time, ok bool)
	// Follow calls fn with each new shared state of k, and with a nil b
	// each time k's lease is given up or expires, until stop is called. fn
	// must be quick and must not call back into the hub.
	Follow(k Key, fn func(b *batchv1.Batch, at time.Time)) (stop func())
	// Poke asks the replicas that hold leases of batchID (any credential)
	// to poll it at once. It must not block.
	Poke(batchID string)
}

// GetLeaser is implemented by a Coordinator that coalesces Get cluster-wide
// (internal/cluster does). A Get that finds no fresh shared state takes
// k's lease before calling the upstream, so that concurrent Gets on
// different replicas make one call: the holder calls and shares the
// result; the others wait, at most Options.SharedGetWait, for that shared
// state, and call by themselves when none comes.
type GetLeaser interface {
	// LeaseGet takes k's lease for one upstream call on behalf of Get.
	// When it is taken (done not nil) the caller makes the call and then
	// calls done exactly once: with the batch and when the call started,
	// to make it k's shared state (fenced by the lease) and give the
	// lease up; with a nil batch (the call failed, or was not needed) to
	// only give it up. A nil done and a nil error mean another replica
	// holds the lease: its poll or Get will share a state. An error means
	// the cluster is not available: the caller calls by itself. It must
	// return quickly when the cluster is unreachable.
	LeaseGet(ctx context.Context, k Key) (done func(b *batchv1.Batch, at time.Time), err error)
}

// inbox is what a following poller has been told by its Coordinator: the
// newest shared state not yet applied and whether the lease came free.
type inbox struct {
	mu   sync.Mutex
	b    *batchv1.Batch
	at   time.Time
	free bool
	sig  chan struct{} // 1-buffered
}

func newInbox() *inbox { return &inbox{sig: make(chan struct{}, 1)} }

// put is the Follow callback.
func (in *inbox) put(b *batchv1.Batch, at time.Time) {
	in.mu.Lock()
	if b == nil {
		in.free = true
	} else if in.b == nil || !at.Before(in.at) {
		in.b, in.at = b, at
	}
	in.mu.Unlock()
	signal(in.sig)
}

// take empties the inbox.
func (in *inbox) take() (b *batchv1.Batch, at time.Time, free bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	b, at, free = in.b, in.at, in.free
	in.b, in.free = nil, false
	return b, at, free
}
