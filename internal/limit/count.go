package limit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/batchgate/batchgate/internal/apierr"
)

// watchersKey is the context key of a watch stream's *streamWatchers.
type watchersKey struct{}

// streamWatchers is how many watchers one watch stream counts for, beyond
// the one the interceptor acquired for it.
type streamWatchers struct {
	l      *Limiter
	caller string

	mu       sync.Mutex
	n        int // watchers counted, the interceptor's one included
	released bool
}

// watchStream is a watch stream whose context carries its streamWatchers.
type watchStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s watchStream) Context() context.Context { return s.ctx }

// CountWatchers makes the watch stream of ctx (the context of a
// BatchService Watch* handler behind StreamInterceptor) count as n
// watchers against the caps, instead of the one every watch stream counts
// for from its start: what WatchBatches calls once it has read its request,
// with its number of distinct batches. All or nothing: when the extra
// watchers would exceed a cap it returns RESOURCE_EXHAUSTED
// (too_many_watchers) and the stream keeps counting as before. A smaller n
// than already counted changes nothing. They are released with the stream.
// Without the interceptor (a context it did not make) CountWatchers does
// nothing and returns nil.
func CountWatchers(ctx context.Context, n int) error {
	w, ok := ctx.Value(watchersKey{}).(*streamWatchers)
	if !ok {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.released || n <= w.n {
		return nil
	}
	if err := w.l.acquireMore(w.caller, n-w.n, n); err != nil {
		return err
	}
	w.n = n
	return nil
}

// release gives back the watchers counted beyond the interceptor's one.
func (w *streamWatchers) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.released {
		w.released = true
		w.l.releaseMore(w.caller, w.n-1)
	}
}

// acquireMore counts extra more watchers for caller, all or nothing; total
// is what the stream would count for, for the message.
func (l *Limiter) acquireMore(caller string, extra, total int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.MaxWatchers > 0 && l.watchers+extra > l.opts.MaxWatchers {
		return exhausted(fmt.Sprintf("the gateway has too many open watchers for a watch of %d batches; retry later", total),
			ReasonTooManyWatchers, apierr.CodeTooManyWatchers, time.Second)
	}
	if perCaller := l.opts.MaxWatchersPerCaller; perCaller > 0 && l.byCaller[caller]+extra > perCaller {
		return exhausted(fmt.Sprintf("a watch of %d batches would take this caller over its %d watchers (each batch counts as one)", total, perCaller),
			ReasonTooManyWatchers, apierr.CodeTooManyWatchers, 0)
	}
	l.watchers += extra
	l.byCaller[caller] += extra
	return nil
}

// releaseMore gives back extra watchers of caller.
func (l *Limiter) releaseMore(caller string, extra int) {
	if extra <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watchers -= extra
	if l.byCaller[caller] -= extra; l.byCaller[caller] <= 0 {
		delete(l.byCaller, caller)
	}
}
