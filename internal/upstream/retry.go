package upstream

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// getWithRetry GETs u with key, retrying as described on GetBatch, and
// returns the 2xx body.
//
// Waits come from backoff.ExponentialBackOff (InitialBackoff doubling up to
// MaxBackoff, ±50% jitter); when the upstream sent Retry-After the wait is
// the larger of the two. The loop is explicit rather than backoff.Retry so
// that the last upstream error is returned as is, and so that a wait that
// would end past the caller's deadline returns that error at once.
func (c *Client) getWithRetry(ctx context.Context, op, u string, key callKey) ([]byte, error) {
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     c.cfg.InitialBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         c.cfg.MaxBackoff,
	}
	bo.Reset()

	var last error // the previous attempt's final-form error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, callerContextError(err, last, key.secrets...)
		}
		actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		body, err := c.attempt(actx, u, key)
		attemptTimedOut := errors.Is(actx.Err(), context.DeadlineExceeded)
		cancel()
		if err == nil {
			return body, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, callerContextError(ctxErr, last, key.secrets...)
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
		case errors.As(err, &se):
			retryable = statusOutcome(se.HTTPStatus).Retryable
			retryAfter = se.RetryAfter
		}
		last = err
		if !retryable || attempt >= c.cfg.MaxAttempts {
			return nil, err
		}

		wait := max(bo.NextBackOff(), retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// Waiting would outlive the caller; give it the real reason.
			return nil, err
		}
		c.retries.Add(1)
		c.logRetry(ctx, op, attempt, wait, err)
		if werr := c.wait(ctx, wait); werr != nil {
			return nil, callerContextError(werr, last, key.secrets...)
		}
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
