package watch

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// adaptiveLimiter wraps the hub's rate.Limiter: every upstream call waits on
// it, a 429 halves its rate (never below floor) and every success raises it
// again by a sixteenth of the original rate (never above it) — additive
// increase, multiplicative decrease. A nil *adaptiveLimiter is unlimited.
type adaptiveLimiter struct {
	l *rate.Limiter

	mu    sync.Mutex // serialises read-modify-write of l's limit
	base  rate.Limit // l's limit when the hub was created
	floor rate.Limit
}

// newAdaptiveLimiter returns nil for a nil l. A floor <= 0 means base/16;
// a floor above base means base (no slowing down).
func newAdaptiveLimiter(l *rate.Limiter, floor rate.Limit) *adaptiveLimiter {
	if l == nil {
		return nil
	}
	base := l.Limit()
	if floor <= 0 {
		floor = base / 16
	}
	if floor > base {
		floor = base
	}
	return &adaptiveLimiter{l: l, base: base, floor: floor}
}

// wait blocks until the limiter allows one call or ctx is done.
func (a *adaptiveLimiter) wait(ctx context.Context) error {
	if a == nil {
		return nil
	}
	return a.l.Wait(ctx)
}

// observe adapts the rate to the outcome of one upstream call: slower after
// a 429, a step back towards the original rate after a success, unchanged
// after any other error. An infinite rate is left alone.
func (a *adaptiveLimiter) observe(err error) {
	if a == nil || a.base == rate.Inf {
		return
	}
	switch {
	case err == nil:
		a.mu.Lock()
		if cur := a.l.Limit(); cur < a.base {
			a.l.SetLimit(min(cur+a.base/16, a.base))
		}
		a.mu.Unlock()
	case isRateLimited(err):
		a.mu.Lock()
		if cur := a.l.Limit(); cur > a.floor {
			a.l.SetLimit(max(cur/2, a.floor))
		}
		a.mu.Unlock()
	}
}
