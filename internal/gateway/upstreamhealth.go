package gateway

import (
	"context"
	"sync/atomic"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// upstreamHealth wraps the upstream client and remembers since when the
// upstream has been failing, for readiness, by upstream.Classify's Health:
// an answer that shows the upstream working counts as a success, one that
// shows it failing (3xx, 408, 429, 5xx, connection errors, timeouts,
// malformed answers) as a failure, and the rest (calls the caller
// abandoned, ids never sent) as neither.
type upstreamHealth struct {
	next         watch.Fetcher
	failingSince atomic.Int64 // Unix nanoseconds; 0 while healthy
	now          func() time.Time
}

func newUpstreamHealth(next watch.Fetcher) *upstreamHealth {
	return &upstreamHealth{next: next, now: time.Now}
}

// GetBatch implements watch.Fetcher.
func (u *upstreamHealth) GetBatch(ctx context.Context, id string) (*batchv1.Batch, error) {
	b, err := u.next.GetBatch(ctx, id)
	u.observe(err)
	return b, err
}

func (u *upstreamHealth) observe(err error) {
	switch upstream.Classify(err).Health {
	case upstream.HealthGood:
		u.failingSince.Store(0)
	case upstream.HealthBad:
		u.failingSince.CompareAndSwap(0, u.now().UnixNano())
	case upstream.HealthUnknown:
	}
}

// healthy reports whether the upstream has not been failing for longer
// than after (zero: always healthy).
func (u *upstreamHealth) healthy(after time.Duration) bool {
	since := u.failingSince.Load()
	return after <= 0 || since == 0 || u.now().Sub(time.Unix(0, since)) < after
}
