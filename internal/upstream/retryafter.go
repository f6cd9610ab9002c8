package upstream

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// parseRetryAfter returns how long the upstream asked callers to wait before
// retrying, from the headers of a non-2xx answer:
//
//   - Retry-After-Ms, in milliseconds (an integer or a decimal, as the
//     OpenAI SDKs accept), wins when present and parseable;
//   - otherwise Retry-After, either delta seconds or an HTTP date
//     (http.ParseTime's three formats), measured from now.
//
// The result is clamped to [0, limit]; zero also means the upstream did not
// say (or said something unparseable). A limit <= 0 means no cap.
func parseRetryAfter(h http.Header, now time.Time, limit time.Duration) time.Duration {
	d, ok := retryAfterMs(h.Get("Retry-After-Ms"))
	if !ok {
		d, ok = retryAfterValue(h.Get("Retry-After"), now)
	}
	if !ok || d < 0 {
		return 0
	}
	if limit > 0 && d > limit {
		return limit
	}
	return d
}

// retryAfterMs parses a Retry-After-Ms value. Values too large to represent
// saturate at the largest time.Duration.
func retryAfterMs(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil && !isRangeErr(err) || math.IsNaN(ms) {
		// On a range error ParseFloat returns ±Inf, which saturates below.
		return 0, false
	}
	return floatDuration(ms * float64(time.Millisecond)), true
}

// retryAfterValue parses a Retry-After value: delta seconds or an HTTP date.
func retryAfterValue(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil || isRangeErr(err) {
		// On a range error ParseInt returns the saturated value.
		if secs > int64(math.MaxInt64/time.Second) {
			return time.Duration(math.MaxInt64), true
		}
		if secs < 0 {
			return 0, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return t.Sub(now), true
}

func isRangeErr(err error) bool {
	return errors.Is(err, strconv.ErrRange)
}

// floatDuration converts nanoseconds held in a float to a Duration,
// saturating instead of overflowing.
func floatDuration(ns float64) time.Duration {
	switch {
	case math.IsNaN(ns):
		return 0
	case ns >= math.MaxInt64:
		return time.Duration(math.MaxInt64)
	case ns <= math.MinInt64:
		return time.Duration(math.MinInt64)
	}
	return time.Duration(ns)
}
