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
	// MayHaveApplied: the call may have reached the upstream and taken
	// effect even though it failed (an attempt timed out, the connection
	// broke after the request was written, the upstream answered 5xx or
	// an unreadable 2xx). False when it cannot have: success (nil), a 4xx
	// answer (408, 409 and 429 included), an invalid id, or a failure
	// before anything was sent (connection refused, DNS, a rejected TLS
	// certificate, the caller's context ended before the first attempt).
	// This is what a caller of a call that is not safe to repeat
	// (CreateBatch, UploadFile) must ask before trying again. For calls the
	// Client retries it speaks of all their attempts but for a final 4xx,
	// which speaks for itself.
	MayHaveApplied bool
}

// Classify returns the Outcome of err, the error of an upstream call (nil
// for success). Statuses, by class:
//
//	status                      retryable permanent health  may have applied
//	nil (success)               -         -         good    no
//	3xx (never followed)        no        no        bad     yes
//	408                         yes       no        bad     no
//	409                         yes       no        good    no
//	429                         yes       no        bad     no
//	other 4xx                   no        yes       good    no
//	5xx                         yes       no        bad     yes
//	unreachable after sending   yes       no        bad     yes
//	unreachable, never sent     yes       no        bad     no
//	attempt timeout             yes       no        bad     yes
//	malformed, too large        no        no        bad     yes
//	invalid batch or file id    no        yes       unknown no (no call made)
//	invalid upload filename     no        yes       unknown no (no call made)
//	upload content failed       no        no        unknown no
//	caller canceled             no        no        unknown yes (no before the first attempt)
//	caller's deadline passed    no        no        bad     yes (no before the first attempt)
//	anything else               no        no        bad     yes (no when nothing was sent)
//
// "Never sent" is a failure to connect (dial failures: connection refused,
// DNS; a TLS certificate the client rejected) on every attempt; "after
// sending" is anything else (reset, EOF, garbage answer).
func Classify(err error) Outcome {
	if err == nil {
		return Outcome{Health: HealthGood}
	}
	var ue *Error
	var o Outcome
	switch {
	case errors.As(err, &ue):
		return statusOutcome(ue.HTTPStatus)
	case errors.Is(err, ErrInvalidBatchID), errors.Is(err, ErrInvalidFileID), errors.Is(err, ErrInvalidFilename):
		return Outcome{Permanent: true}
	case errors.Is(err, errUploadContent):
		return Outcome{}
	case errors.Is(err, context.Canceled):
		o = Outcome{}
	case errors.Is(err, ErrUnreachable), errors.Is(err, ErrTimeout):
		o = Outcome{Retryable: true, Health: HealthBad}
	default:
		o = Outcome{Health: HealthBad}
	}
	o.MayHaveApplied = !errors.Is(err, errNoEffect)
	return o
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
		return Outcome{Retryable: true, Health: HealthBad, MayHaveApplied: true}
	default: // 1xx and 3xx: an answer the client does not follow
		return Outcome{Health: HealthBad, MayHaveApplied: true}
	}
}
