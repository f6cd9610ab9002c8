package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// upstreamHealth wraps the upstream client and remembers since when the
// upstream has been failing, for readiness. An answer that shows the
// upstream working (a batch, or a 4xx other than 429) counts as a success;
// connection errors, timeouts, 429, 5xx and malformed answers count as
// failures; calls the caller abandoned count as neither.
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
	var ue *upstream.Error
	switch {
	case err == nil,
		errors.Is(err, upstream.ErrInvalidBatchID),
		errors.As(err, &ue) && ue.HTTPStatus < 500 && ue.HTTPStatus != http.StatusTooManyRequests:
		u.failingSince.Store(0)
	case errors.Is(err, context.Canceled):
	default:
		u.failingSince.CompareAndSwap(0, u.now().UnixNano())
	}
}

// healthy reports whether the upstream has not been failing for longer
// than after (zero: always healthy).
func (u *upstreamHealth) healthy(after time.Duration) bool {
	since := u.failingSince.Load()
	return after <= 0 || since == 0 || u.now().Sub(time.Unix(0, since)) < after
}
