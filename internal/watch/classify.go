package watch

import (
	"errors"
	"time"

	"github.com/batchgate/batchgate/internal/upstream"
)

// isPermanent reports whether a poller should give up on err at once
// instead of retrying it (upstream.Classify's Permanent); everything else
// is transient and bounded by the failure budget.
func isPermanent(err error) bool { return upstream.Classify(err).Permanent }

// retryAfter returns the wait the upstream asked for in err, or zero.
func retryAfter(err error) (d time.Duration) {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		return ue.RetryAfter
	}
	return 0
}

// isRateLimited reports whether err is the upstream's 429.
func isRateLimited(err error) bool { return upstream.Classify(err).RateLimited }
