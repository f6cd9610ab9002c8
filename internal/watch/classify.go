package watch

import (
	"errors"
	"net/http"
	"time"

	"github.com/batchgate/batchgate/internal/upstream"
)

// isPermanent reports whether a poller should give up on err at once
// instead of retrying it: a 4xx answer other than 408, 409 and 429 (the
// statuses the upstream's own SDKs retry), or a batch id the upstream
// client refused to send. Everything else — 408, 409, 429, 5xx,
// connection failures, timeouts, malformed answers and errors this package
// does not recognise — is transient and bounded by the failure budget.
func isPermanent(err error) bool {
	if errors.Is(err, upstream.ErrInvalidBatchID) {
		return true
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return false
	}
	switch s := ue.HTTPStatus; {
	case s == http.StatusRequestTimeout, s == http.StatusConflict, s == http.StatusTooManyRequests:
		return false
	default:
		return s >= 400 && s < 500
	}
}

// retryAfter returns the wait the upstream asked for in err, or zero.
func retryAfter(err error) (d time.Duration) {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		return ue.RetryAfter
	}
	return 0
}

// isRateLimited reports whether err is the upstream's 429.
func isRateLimited(err error) bool {
	var ue *upstream.Error
	return errors.As(err, &ue) && ue.HTTPStatus == http.StatusTooManyRequests
}
