package watch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/time/rate"

	"github.com/batchgate/batchgate/internal/upstream"
)

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{httpErr(400, 0), true},
		{httpErr(401, 0), true},
		{httpErr(402, 0), true},
		{httpErr(403, 0), true},
		{httpErr(404, 0), true},
		{httpErr(422, 0), true},
		{httpErr(408, 0), false},
		{httpErr(409, 0), false},
		{httpErr(429, time.Second), false},
		{httpErr(500, 0), false},
		{httpErr(502, 0), false},
		{httpErr(503, time.Second), false},
		{httpErr(302, 0), false},
		{fmt.Errorf("wrapped: %w", httpErr(404, 0)), true},
		{fmt.Errorf("get: %w", upstream.ErrInvalidBatchID), true},
		{upstream.ErrUnreachable, false},
		{upstream.ErrTimeout, false},
		{upstream.ErrMalformedResponse, false},
		{upstream.ErrResponseTooLarge, false},
		{context.DeadlineExceeded, false},
		{errNilBatch, false},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := isPermanent(tt.err); got != tt.want {
			t.Errorf("isPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	tests := []struct {
		name     string
		err      error
		min, max time.Duration
	}{
		{"no Retry-After", httpErr(503, 0), 0, interval},
		{"short Retry-After is a floor", httpErr(503, 70*time.Millisecond), 70 * time.Millisecond, interval},
		{"long Retry-After wins over the cap", httpErr(429, 3*interval), 3 * interval, 3 * interval},
		{"not an upstream.Error", upstream.ErrUnreachable, 0, interval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bo := &backoff.ExponentialBackOff{
				InitialInterval: interval / 10, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: interval,
			}
			bo.Reset()
			for i := range 20 {
				d := retryDelay(bo, interval, tt.err)
				if d < tt.min || d > tt.max {
					t.Fatalf("retry %d: delay %v outside [%v, %v]", i, d, tt.min, tt.max)
				}
				if i == 0 && d < interval/20 {
					t.Fatalf("first delay %v below half the initial interval", d)
				}
			}
		})
	}
}

func TestJitter(t *testing.T) {
	t.Parallel()
	const d = time.Second
	for _, frac := range []float64{0, -1, 0.1, 0.5} {
		lo, hi := d, d
		if frac > 0 {
			lo, hi = d-time.Duration(frac*float64(d)), d+time.Duration(frac*float64(d))
		}
		seen := map[time.Duration]bool{}
		for range 200 {
			got := jitter(d, frac)
			if got < lo || got > hi {
				t.Fatalf("jitter(%v, %v) = %v outside [%v, %v]", d, frac, got, lo, hi)
			}
			seen[got] = true
		}
		if frac > 0 && len(seen) < 2 {
			t.Errorf("jitter(%v, %v) never varies", d, frac)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Options
		want Options // only the duration and jitter fields are compared
	}{
		{"zero", Options{}, Options{
			PollInterval: 30 * time.Second, Jitter: 0.1, FailureBudget: 5 * time.Minute,
			FreshFor: 30 * time.Second, CallTimeout: time.Minute,
		}},
		{"FreshFor follows PollInterval", Options{PollInterval: time.Second}, Options{
			PollInterval: time.Second, Jitter: 0.1, FailureBudget: 5 * time.Minute,
			FreshFor: time.Second, CallTimeout: time.Minute,
		}},
		{"negative jitter and FreshFor disable", Options{Jitter: -1, FreshFor: -1}, Options{
			PollInterval: 30 * time.Second, Jitter: 0, FailureBudget: 5 * time.Minute,
			FreshFor: -1, CallTimeout: time.Minute,
		}},
		{"jitter capped", Options{Jitter: 3}, Options{
			PollInterval: 30 * time.Second, Jitter: 0.5, FailureBudget: 5 * time.Minute,
			FreshFor: 30 * time.Second, CallTimeout: time.Minute,
		}},
		{"explicit values kept", Options{
			PollInterval: time.Minute, Jitter: 0.2, FailureBudget: time.Hour, FreshFor: time.Second, CallTimeout: 5 * time.Second,
		}, Options{
			PollInterval: time.Minute, Jitter: 0.2, FailureBudget: time.Hour, FreshFor: time.Second, CallTimeout: 5 * time.Second,
		}},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.PollInterval != tt.want.PollInterval || got.Jitter != tt.want.Jitter ||
			got.FailureBudget != tt.want.FailureBudget || got.FreshFor != tt.want.FreshFor ||
			got.CallTimeout != tt.want.CallTimeout {
			t.Errorf("%s: got %+v", tt.name, got)
		}
		if got.PollContext == nil || got.Logger == nil {
			t.Errorf("%s: PollContext or Logger left nil", tt.name)
		}
	}
}

func TestAdaptiveLimiter(t *testing.T) {
	t.Parallel()
	tooMany := httpErr(429, 0)
	tests := []struct {
		name   string
		base   rate.Limit
		floor  rate.Limit
		events []error
		want   []rate.Limit // the limit after each event
	}{
		{"429 halves, success restores by base/16", 160, 0,
			[]error{tooMany, nil, nil},
			[]rate.Limit{80, 90, 100}},
		{"never below the default floor base/16", 160, 0,
			[]error{tooMany, tooMany, tooMany, tooMany, tooMany, tooMany},
			[]rate.Limit{80, 40, 20, 10, 10, 10}},
		{"explicit floor", 160, 30,
			[]error{tooMany, tooMany, tooMany},
			[]rate.Limit{80, 40, 30}},
		{"never above base", 160, 0,
			[]error{tooMany, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
			[]rate.Limit{80, 90, 100, 110, 120, 130, 140, 150, 160, 160, 160}},
		{"other errors change nothing", 160, 0,
			[]error{httpErr(503, 0), upstream.ErrUnreachable, httpErr(404, 0)},
			[]rate.Limit{160, 160, 160}},
		{"wrapped 429 counts", 160, 0,
			[]error{fmt.Errorf("x: %w", tooMany)},
			[]rate.Limit{80}},
		{"floor above base means no slowing", 10, 20,
			[]error{tooMany},
			[]rate.Limit{10}},
		{"infinite rate is left alone", rate.Inf, 0,
			[]error{tooMany, nil},
			[]rate.Limit{rate.Inf, rate.Inf}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := rate.NewLimiter(tt.base, 1)
			a := newAdaptiveLimiter(l, tt.floor)
			for i, ev := range tt.events {
				a.observe(ev)
				if got := l.Limit(); got != tt.want[i] {
					t.Fatalf("after event %d (%v): limit %v, want %v", i, ev, got, tt.want[i])
				}
			}
		})
	}

	var nilLim *adaptiveLimiter
	if newAdaptiveLimiter(nil, 0) != nil {
		t.Error("a nil rate.Limiter gives a non-nil adaptiveLimiter")
	}
	nilLim.observe(tooMany) // must not panic
	if err := nilLim.wait(context.Background()); err != nil {
		t.Errorf("nil limiter wait: %v", err)
	}
}
