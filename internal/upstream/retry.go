package upstream

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// request is one upstream call, as the retry loop repeats it.
type request struct {
	// op names the Client method, for the retry log.
	op string
	// method and url are the request's; url is built by apiURL.
	method, url string
	// body, when non-nil, is sent on every attempt with Content-Type
	// application/json.
	body []byte
	// once makes the call a single attempt, never repeated whatever the
	// failure: a POST that is not safe to repeat.
	once bool
}

// fetch makes r with key, retrying as described on GetBatch, and returns
// the 2xx body. Each attempt, body included, is bounded by AttemptTimeout.
func (c *Client) fetch(ctx context.Context, r *request, key callKey) ([]byte, error) {
	return retry(ctx, c, r, key, func(ctx context.Context) ([]byte, bool, error) {
		actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		body, err := c.attempt(actx, r, key)
		attemptTimedOut := errors.Is(actx.Err(), context.DeadlineExceeded)
		cancel()
		return body, attemptTimedOut, err
	})
}

// retry runs try, one attempt of r under the caller's ctx, until it
// succeeds, fails with an error that is not retryable, or MaxAttempts
// attempts (one when r.once) have failed, and returns the result of the
// successful attempt. try returns what attempt returns (a *transportError,
// an *Error, or a final error), and whether the attempt's own timeout cut
// it. retry turns a *transportError into ErrUnreachable or ErrTimeout, and
// returns the caller's context error when ctx ended first.
//
// Waits come from backoff.ExponentialBackOff (InitialBackoff doubling up to
// MaxBackoff, ±50% jitter); when the upstream sent Retry-After the wait is
// the larger of the two. The loop is explicit rather than backoff.Retry so
// that the last upstream error is returned as is, and so that a wait that
// would end past the caller's deadline returns that error at once.
func retry[T any](ctx context.Context, c *Client, r *request, key callKey, try func(context.Context) (T, bool, error)) (T, error) {
	var zero T
	maxAttempts := c.cfg.MaxAttempts
	if r.once {
		maxAttempts = 1
	}
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     c.cfg.InitialBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         c.cfg.MaxBackoff,
	}
	bo.Reset()

	var last error // the previous attempt's final-form error
	// applied: an attempt so far may have reached the upstream and taken
	// effect. While it is false, errors are marked with noEffect.
	applied := false
	// final returns err, marked with noEffect unless an attempt may have
	// taken effect.
	final := func(err error) error {
		if applied {
			return err
		}
		return noEffect(err)
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return zero, final(callerContextError(err, last, key.secrets...))
		}
		v, attemptTimedOut, err := try(ctx)
		if err == nil {
			return v, nil
		}
		if attemptMayHaveApplied(err) {
			applied = true
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return zero, final(callerContextError(ctxErr, last, key.secrets...))
		}

		retryable, retryAfter := false, time.Duration(0)
		var te *transportError
		var se *Error
		switch {
		case errors.As(err, &te):
			retryable = true
			if attemptTimedOut {
				err = timeoutError(c.cfg.AttemptTimeout)
			} else {
				err = unreachableError(te.err, key.secrets...)
			}
			err = final(err)
		case errors.As(err, &se):
			retryable = statusOutcome(se.HTTPStatus).Retryable
			retryAfter = se.RetryAfter
		}
		last = err
		if !retryable || attempt >= maxAttempts {
			return zero, err
		}

		wait := max(bo.NextBackOff(), retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// Waiting would outlive the caller; give it the real reason.
			return zero, err
		}
		c.retries.Add(1)
		c.logRetry(ctx, r.op, attempt, wait, err)
		if werr := c.wait(ctx, wait); werr != nil {
			return zero, final(callerContextError(werr, last, key.secrets...))
		}
	}
}

// attemptMayHaveApplied reports whether the attempt that failed with err
// (as retry's try returns it) may have reached the upstream and taken
// effect: not when it failed to connect, was answered with a status that
// says so (a 4xx), or failed before sending (an error marked noEffect).
func attemptMayHaveApplied(err error) bool {
	var te *transportError
	var se *Error
	switch {
	case errors.As(err, &te):
		return !isConnectError(te.err)
	case errors.As(err, &se):
		return statusOutcome(se.HTTPStatus).MayHaveApplied
	default:
		return !errors.Is(err, errNoEffect)
	}
}

func (c *Client) logRetry(ctx context.Context, op string, attempt int, wait time.Duration, err error) {
	attrs := []slog.Attr{
		slog.String("op", op),
		slog.Int("attempt", attempt),
		slog.Duration("wait", wait),
	}
	var se *Error
	if errors.As(err, &se) {
		attrs = append(attrs, slog.Int("http_status", se.HTTPStatus))
	}
	// Every error reaching here has a sanitised message: *Error omits the
	// upstream's message, the others are redacted of the API keys.
	attrs = append(attrs, slog.String("error", err.Error()))
	c.log.LogAttrs(ctx, slog.LevelDebug, "upstream: retrying", attrs...)
}

// sleepCtx waits for d, or until ctx is done, in which case it returns
// ctx.Err().
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
