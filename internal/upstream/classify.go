package upstream

import (
	"context"
	"errors"
	"net/http"
)

// Health is what an upstream call's outcome says about the upstream.
type Health int

const (
	// HealthUnknown: the outcome says nothing (the caller gave up, or no
	// upstream call was made).
	HealthUnknown Health = iota
	// HealthGood: the upstream answered as a working upstream does (a
	// batch, or a 4xx about the request such as 404).
	HealthGood
	// HealthBad: the upstream is failing (unreachable, timing out,
	// rate-limiting, 5xx, redirecting, or answering what cannot be read).
	HealthBad
)

// Outcome answers the questions the gateway asks of an upstream call's
// error. Classify is the only place that answers them.
type Outcome struct {
	// Retryable: another attempt of the same call may succeed
	// (connection failures, attempt timeouts, 408, 409, 429, 5xx: what the
	// OpenAI SDKs retry).
	Retryable bool
	// Permanent: a watch should give up at once rather than poll again
	// (an invalid batch id, a 4xx other than 408, 409 and 429).
	// Everything else that fails is transient for a watch, bounded by its
	// failure budget.
	Permanent bool
	// RateLimited: the upstream answered 429.
	RateLimited bool
	// Health is what the outcome says about the upstream, for readiness.
	Health Health
}

// Classify returns the Outcome of err, the error of an upstream call (nil
// for success). Statuses, by class:
//
//	status                     retryable permanent health
//	nil (success)              -         -         good
//	3xx (never followed)       no        no        bad
//	408                        yes       no        bad
//	409                        yes       no        good
//	429                        yes       no        bad
//	other 4xx                  no        yes       good
//	5xx                        yes       no        bad
//	unreachable, timeout       yes       no        bad
//	malformed, too large       no        no        bad
//	invalid batch id           no        yes       unknown (no call made)
//	caller canceled            no        no        unknown
//	caller's deadline passed   no        no        bad
//	anything else              no        no        bad
func Classify(err error) Outcome {
	if err == nil {
		return Outcome{Health: HealthGood}
	}
	var ue *Error
	switch {
	case errors.As(err, &ue):
		return statusOutcome(ue.HTTPStatus)
	case errors.Is(err, ErrInvalidBatchID):
		return Outcome{Permanent: true}
	case errors.Is(err, context.Canceled):
		return Outcome{}
	case errors.Is(err, ErrUnreachable), errors.Is(err, ErrTimeout):
		return Outcome{Retryable: true, Health: HealthBad}
	default:
		return Outcome{Health: HealthBad}
	}
}

// statusOutcome is Classify's table for an upstream answer that is not 2xx.
func statusOutcome(code int) Outcome {
	switch {
	case code == http.StatusTooManyRequests:
		return Outcome{Retryable: true, RateLimited: true, Health: HealthBad}
	case code == http.StatusRequestTimeout:
		return Outcome{Retryable: true, Health: HealthBad}
	case code == http.StatusConflict:
		return Outcome{Retryable: true, Health: HealthGood}
	case code >= 400 && code < 500:
		return Outcome{Permanent: true, Health: HealthGood}
	case code >= 500:
		return Outcome{Retryable: true, Health: HealthBad}
	default: // 1xx and 3xx: an answer the client does not follow
		return Outcome{Health: HealthBad}
	}
}
