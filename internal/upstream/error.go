package upstream

import (
	"errors"
	"fmt"
	"time"
)

// Error is a non-2xx answer from the upstream. Its fields come from the
// status line, the upstream's error envelope
// `{"error":{"message","type","param","code"}}` and the Retry-After /
// Retry-After-Ms headers. Fields the upstream did not send are zero.
//
// Message is the upstream's own text and may echo request data; it is
// never logged or returned to callers without sanitising.
type Error struct {
	// HTTPStatus is the upstream's HTTP status code, for example 404.
	HTTPStatus int
	// Type is the envelope's error type, for example "not_found_error".
	Type string
	// Code is the envelope's error code, as a string even when the
	// upstream sent a number.
	Code string
	// Param is the envelope's param, when set.
	Param string
	// Message is the envelope's message, when set.
	Message string
	// RetryAfter is how long the upstream asked callers to wait before
	// retrying, from Retry-After (seconds or HTTP date) or Retry-After-Ms;
	// zero when it did not say.
	RetryAfter time.Duration
}

// Error returns a short description without the upstream's message, so that
// it is safe to log.
func (e *Error) Error() string {
	s := fmt.Sprintf("upstream: HTTP %d", e.HTTPStatus)
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Code != "" {
		s += " (code " + e.Code + ")"
	}
	return s
}

// Sentinel errors returned, wrapped, by Client. Test them with errors.Is.
var (
	// ErrInvalidBatchID reports a batch id that failed validation; the
	// upstream was not called.
	ErrInvalidBatchID = errors.New("invalid batch id")
	// ErrMalformedResponse reports a 2xx answer whose body is not a valid
	// batch object (bad JSON, wrong types, truncated).
	ErrMalformedResponse = errors.New("upstream: malformed response")
	// ErrResponseTooLarge reports an answer whose body exceeded the
	// configured cap.
	ErrResponseTooLarge = errors.New("upstream: response body too large")
	// ErrUnreachable reports a connection-level failure (refused, reset,
	// DNS, TLS) on the last attempt.
	ErrUnreachable = errors.New("upstream: unreachable")
	// ErrTimeout reports that the last attempt hit the per-attempt timeout
	// (not the caller's deadline, which surfaces as
	// context.DeadlineExceeded).
	ErrTimeout = errors.New("upstream: attempt timed out")
)
