// Package limit enforces the gateway's per-caller limits as gRPC
// interceptors: a request rate per caller (golang.org/x/time/rate), and caps
// on open watch streams in total and per caller. Over a limit a call fails
// with RESOURCE_EXHAUSTED (HTTP 429 over REST), with a RetryInfo when
// waiting helps.
package limit

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/batchgate/batchgate/internal/apierr"
)

// ErrorInfo reasons of the limits.
const (
	ReasonRateLimited     = "CALLER_RATE_LIMITED"
	ReasonTooManyWatchers = "TOO_MANY_WATCHERS"
)

// Options configures a Limiter. Zero limits mean unlimited.
type Options struct {
	// MaxWatchers caps open watch streams in total.
	MaxWatchers int
	// MaxWatchersPerCaller caps open watch streams per caller.
	MaxWatchersPerCaller int
	// CallerRPS is each caller's sustained calls per second; the burst is
	// twice that (at least 1).
	CallerRPS float64
	// CallerName names the caller of a call (set by authentication, which
	// must run before these interceptors). Nil: every call is "".
	CallerName func(ctx context.Context) string
}

// Limiter holds the counters and per-caller rate limiters. Create it with
// New; it is safe for concurrent use.
type Limiter struct {
	opts Options

	mu       sync.Mutex
	watchers int
	byCaller map[string]int
	rates    map[string]*rate.Limiter
	sweepAt  int // sweep idle rate limiters when rates reaches this size
}

// New returns a Limiter for opts.
func New(opts Options) *Limiter {
	if opts.CallerName == nil {
		opts.CallerName = func(context.Context) string { return "" }
	}
	return &Limiter{opts: opts, byCaller: make(map[string]int), rates: make(map[string]*rate.Limiter), sweepAt: minSweep}
}

const minSweep = 1024

// exempt reports whether a method is outside the limits: health checks and
// reflection.
func exempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// UnaryInterceptor applies the caller's rate limit.
func (l *Limiter) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !exempt(info.FullMethod) {
			if err := l.allow(l.opts.CallerName(ctx)); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor applies the caller's rate limit to opening a stream,
// and counts watch streams (BatchService's Watch* methods) against the
// watcher caps for as long as they are open: one watcher each, or as many
// as a multi-watch's handler asks for with CountWatchers. Other streams
// (results, file content, uploads) end by themselves and are not counted.
func (l *Limiter) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if exempt(info.FullMethod) {
			return handler(srv, ss)
		}
		caller := l.opts.CallerName(ss.Context())
		if err := l.allow(caller); err != nil {
			return err
		}
		if isWatch(info.FullMethod) {
			release, err := l.acquireWatcher(caller)
			if err != nil {
				return err
			}
			defer release()
			// A multi-watch counts as many watchers as it has batches,
			// which only its handler knows (CountWatchers).
			w := &streamWatchers{l: l, caller: caller, n: 1}
			defer w.release()
			ss = watchStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), watchersKey{}, w)}
		}
		return handler(srv, ss)
	}
}

// watchPrefix starts the full method names of the watch streams.
const watchPrefix = "/batch.v1.BatchService/Watch"

func isWatch(method string) bool { return strings.HasPrefix(method, watchPrefix) }

func (l *Limiter) allow(caller string) error {
	if l.opts.CallerRPS <= 0 {
		return nil
	}
	l.mu.Lock()
	lim, ok := l.rates[caller]
	if !ok {
		if len(l.rates) >= l.sweepAt {
			l.sweepLocked()
		}
		lim = rate.NewLimiter(rate.Limit(l.opts.CallerRPS), max(1, int(2*l.opts.CallerRPS)))
		l.rates[caller] = lim
	}
	l.mu.Unlock()
	r := lim.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return exhausted("too many calls from this caller; slow down", ReasonRateLimited, apierr.CodeRateLimitExceeded, d)
	}
	return nil
}

// sweepLocked forgets the rate limiters of callers that are idle (whose
// bucket is full again), so that the map stays bounded by active callers.
func (l *Limiter) sweepLocked() {
	now := time.Now()
	for name, lim := range l.rates {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.rates, name)
		}
	}
	l.sweepAt = max(2*len(l.rates), minSweep)
}

func (l *Limiter) acquireWatcher(caller string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.MaxWatchers > 0 && l.watchers >= l.opts.MaxWatchers {
		return nil, exhausted("the gateway has too many open watch streams; retry later", ReasonTooManyWatchers, apierr.CodeTooManyWatchers, time.Second)
	}
	if l.opts.MaxWatchersPerCaller > 0 && l.byCaller[caller] >= l.opts.MaxWatchersPerCaller {
		return nil, exhausted("this caller has too many open watch streams", ReasonTooManyWatchers, apierr.CodeTooManyWatchers, 0)
	}
	l.watchers++
	l.byCaller[caller]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.watchers--
			if l.byCaller[caller]--; l.byCaller[caller] <= 0 {
				delete(l.byCaller, caller)
			}
		})
	}, nil
}

func exhausted(msg, reason, code string, retryAfter time.Duration) error {
	return apierr.Error{Code: codes.ResourceExhausted, HTTPStatus: http.StatusTooManyRequests, Type: "rate_limit_error",
		ErrCode: code, Reason: reason, Message: msg, RetryAfter: retryAfter}.Err()
}
