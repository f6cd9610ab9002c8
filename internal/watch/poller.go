package watch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// state is what a poller publishes. It is immutable once stored; a change
// stores a new state and closes the old one's changed channel.
type state struct {
	b       *batchv1.Batch
	version uint64        // 1 for the first batch, +1 per change
	changed chan struct{} // closed when a newer state replaces this one
	at      time.Time     // when the fetch that returned b ended
}

// poller polls one Key for its subscribers in one goroutine.
type poller struct {
	h   *Hub
	key Key

	ctx    context.Context // Options.PollContext's; cancelled when the poller ends
	cancel context.CancelFunc
	tracer trace.Tracer  // of the starting call's span; no-op without one
	links  []trace.Link  // to the starting call's span, if any
	poke   chan struct{} // 1-buffered; a value means "poll now"
	ready  chan struct{} // closed at the first state, or when the poller ends

	state atomic.Pointer[state] // nil until the first successful fetch

	mu          sync.Mutex // guards the fields below; taken after Hub.mu
	subs        map[*Subscription]struct{}
	notifiers   map[*Subscription]struct{} // the subs with a Notify channel
	ended       bool
	err         error // why the poller ended; nil after a terminal batch
	readyClosed bool
}

// startPollerLocked registers and starts a poller for k, seeded with a
// cached batch of the given age when seed is not nil. h.mu must be held and
// the hub open.
//
// The poller keeps none of ctx, the starting call's context, whose values
// (metadata, span, log attributes) belong to a call that ends long before
// the poller: it polls under Options.PollContext's fresh context, and
// traces each poll as a new root span linked to the call's span.
func (h *Hub) startPollerLocked(ctx context.Context, k Key, seed *batchv1.Batch, age time.Duration) *poller {
	pctx, cancel := context.WithCancel(context.WithoutCancel(h.opts.PollContext(ctx, k)))
	call := trace.SpanFromContext(ctx)
	p := &poller{
		h:      h,
		key:    k,
		ctx:    pctx,
		cancel: cancel,
		tracer: call.TracerProvider().Tracer(tracerName),
		poke:   make(chan struct{}, 1),
		ready:  make(chan struct{}),
		subs:   make(map[*Subscription]struct{}),
	}
	if sc := call.SpanContext(); sc.IsValid() {
		p.links = []trace.Link{{SpanContext: sc}}
	}
	first := time.Duration(0)
	if seed != nil {
		p.state.Store(&state{b: seed, version: 1, changed: make(chan struct{}), at: time.Now().Add(-age)})
		close(p.ready)
		p.readyClosed = true
		first = max(jitter(h.opts.PollInterval, h.opts.Jitter)-age, 0)
	}
	h.pollers[k] = p
	h.pollersRunning.Add(1)
	h.wg.Add(1)
	go p.run(first)
	return p
}

// run is the poller's goroutine: poll, publish changes, wait, repeat, until
// the batch is terminal, a permanent error or the failure budget ends it,
// or it is stopped (last subscriber gone, hub closed). first is the wait
// before the first poll.
func (p *poller) run(first time.Duration) {
	h := p.h
	defer h.wg.Done()
	defer h.pollersRunning.Add(-1)
	defer p.cancel()

	h.log.Debug("watch: poller started", "batch_id", p.key.BatchID)
	polls := 0
	reason := "released"
	defer func() {
		h.log.Debug("watch: poller stopped", "batch_id", p.key.BatchID, "reason", reason, "polls", polls)
	}()

	bo := &backoff.ExponentialBackOff{
		InitialInterval:     max(min(time.Second, h.opts.PollInterval/10), time.Microsecond),
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         h.opts.PollInterval,
	}
	bo.Reset()
	var failingSince time.Time

	// With a Coordinator, the poller follows k's shared state for as
	// long as it runs (ignored while this replica holds the lease), and
	// gives the lease up when it stops.
	coord := h.opts.Coordinator
	var in *inbox
	var followed <-chan struct{} // nil without a Coordinator: never ready
	if coord != nil {
		in = newInbox()
		followed = in.sig
		defer coord.Follow(p.key, in.put)()
		defer coord.Release(p.key) // before the Follow stops
	}
	holding := false // this replica holds k's lease

	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-timer.C:
		case <-p.poke:
		case <-followed:
			b, at, free := in.take()
			if !holding && b != nil && p.follow(b, at) {
				reason = "terminal (shared)"
				return
			}
			if holding || !free {
				continue
			}
			// The lease came free: try to take it over at once.
		}
		shared := false // this poll's result goes to the Coordinator
		if coord != nil {
			held, err := coord.Acquire(p.ctx, p.key)
			if p.ctx.Err() != nil {
				return
			}
			switch {
			case err != nil:
				holding = false // the cluster is unavailable: poll by ourselves
			case held:
				holding, shared = true, true
			default:
				// Another replica polls: take its newest state, if ours is
				// older, and look at the lease again in an interval.
				holding = false
				failingSince = time.Time{}
				bo.Reset()
				if b, at, ok := coord.Shared(p.ctx, p.key); ok {
					if cur := p.state.Load(); (cur == nil || at.After(cur.at)) && p.follow(b, at) {
						reason = "terminal (shared)"
						return
					}
				}
				timer.Reset(jitter(h.opts.PollInterval, h.opts.Jitter))
				continue
			}
		}
		start := time.Now()
		polls++
		b, err := p.poll()
		if p.ctx.Err() != nil {
			return // stopped; whoever stopped it has ended the subscriptions
		}
		var wait time.Duration
		switch {
		case err == nil:
			failingSince = time.Time{}
			bo.Reset()
			h.remember(p.key, b, start)
			at := time.Now()
			if wire.IsTerminal(b) {
				reason = "terminal"
				h.end(p, b, at, nil)
				if shared {
					coord.Publish(p.key, b, at)
				}
				return
			}
			p.publish(b, at)
			if shared {
				coord.Publish(p.key, b, at)
			}
			wait = jitter(h.opts.PollInterval, h.opts.Jitter)
		case p.state.Load() == nil:
			reason = "first fetch failed"
			h.finish(p, err)
			return
		case isPermanent(err):
			reason = "permanent error"
			h.finish(p, err)
			return
		default:
			if failingSince.IsZero() {
				failingSince = start
			}
			if time.Since(failingSince) >= h.opts.FailureBudget {
				reason = "failure budget"
				h.finish(p, fmt.Errorf("%w (%s of continuous failure): %w", ErrFailureBudget, h.opts.FailureBudget, err))
				return
			}
			wait = retryDelay(bo, h.opts.PollInterval, err)
		}
		timer.Reset(wait)
	}
}

// follow publishes b, k's shared state as observed at at by the replica
// that polls k, as a poll result: cached for Get, and published to the
// watchers (the subscriptions end if b is terminal). It reports whether
// b was terminal.
func (p *poller) follow(b *batchv1.Batch, at time.Time) bool {
	h := p.h
	h.followed.Add(1)
	h.remember(p.key, b, at)
	if wire.IsTerminal(b) {
		h.end(p, b, at, nil)
		return true
	}
	p.publish(b, at)
	return false
}

// tracerName names the tracer of poll spans.
const tracerName = "github.com/batchgate/batchgate/internal/watch"

// poll makes one fetch as the root span of a new trace, linked to the span
// of the call that started the poller: a poller lives for hours, and its
// polls are not part of that call.
func (p *poller) poll() (*batchv1.Batch, error) {
	ctx, span := p.tracer.Start(p.ctx, "watch poll",
		trace.WithNewRoot(),
		trace.WithLinks(p.links...),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("batchgate.batch_id", p.key.BatchID)))
	defer span.End()
	b, err := p.h.fetch(ctx, p.key, &p.h.polls)
	if err != nil {
		// Not err's text: upstream errors are kept out of telemetry.
		span.SetStatus(otelcodes.Error, "poll failed")
	}
	return b, err
}

// retryDelay is the wait before retrying a transient failure: exponential
// backoff with jitter from min(1s, interval/10), at most interval, and at
// least what the upstream asked for with Retry-After.
func retryDelay(bo *backoff.ExponentialBackOff, interval time.Duration, err error) time.Duration {
	return max(min(bo.NextBackOff(), interval), retryAfter(err))
}

// publish makes b, observed at at, the poller's state (see
// setStateLocked) and marks the poller ready.
func (p *poller) publish(b *batchv1.Batch, at time.Time) {
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return
	}
	next := p.setStateLocked(b, at)
	if !p.readyClosed {
		close(p.ready)
		p.readyClosed = true
	}
	p.mu.Unlock()
	p.published(next)
}

// published calls Options.OnPublish for next, the state just published,
// if any.
func (p *poller) published(next *state) {
	if next != nil && p.h.opts.OnPublish != nil {
		p.h.opts.OnPublish(p.key, next.b, next.at)
	}
}

// setStateLocked makes b the poller's state unless it equals the current
// batch: an identical poll bumps no version and wakes nobody. A change
// closes the previous state's channel, waking every watcher at once. It
// returns the new state, observed at at, nil when there is none. p.mu
// must be held.
func (p *poller) setStateLocked(b *batchv1.Batch, at time.Time) *state {
	old := p.state.Load()
	if old != nil && proto.Equal(old.b, b) {
		return nil
	}
	next := &state{b: b, version: 1, changed: make(chan struct{}), at: at}
	if old != nil {
		next.version = old.version + 1
	}
	p.state.Store(next)
	if old != nil {
		close(old.changed)
	}
	p.notifyLocked()
	return next
}

// endErr returns why the poller ended.
func (p *poller) endErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// finish ends p with err: every subscription ends with err, the poller
// leaves the hub's map and its goroutine and in-flight fetch are
// cancelled. Idempotent; the first call wins.
func (h *Hub) finish(p *poller, err error) {
	h.end(p, nil, time.Time{}, err)
}

// end implements finish and, with the terminal batch final observed at
// at, the end after a terminal batch: final, when not nil, is published
// before the subscriptions end and before p is marked ready, in one step,
// so that nobody sees it without also seeing its subscription done.
func (h *Hub) end(p *poller, final *batchv1.Batch, at time.Time, err error) {
	h.mu.Lock()
	if h.pollers[p.key] == p {
		delete(h.pollers, p.key)
	}
	var next *state
	p.mu.Lock()
	if !p.ended {
		if final != nil {
			next = p.setStateLocked(final, at)
		}
		p.ended = true
		p.err = err
		// Counted out before Done closes, so that whoever sees a
		// subscription done sees it gone from Stats too (as release does).
		h.watchers.Add(-int64(len(p.subs)))
		for s := range p.subs {
			s.err = err
			close(s.done)
		}
		p.notifyLocked()
		p.subs = nil
		p.notifiers = nil
		if !p.readyClosed {
			close(p.ready)
			p.readyClosed = true
		}
	}
	p.mu.Unlock()
	h.mu.Unlock()
	p.cancel()
	p.published(next)
}

// release removes s from p. When s was p's last subscriber, p stops at
// once: it leaves the hub's map and its in-flight fetch is cancelled.
func (p *poller) release(s *Subscription) {
	h := p.h
	h.mu.Lock()
	p.mu.Lock()
	if _, ok := p.subs[s]; !ok {
		p.mu.Unlock()
		h.mu.Unlock()
		return
	}
	delete(p.subs, s)
	delete(p.notifiers, s)
	h.watchers.Add(-1)
	s.err = ErrClosed
	close(s.done)
	last := len(p.subs) == 0 && !p.ended
	if last {
		p.ended = true
		p.err = ErrClosed
		if !p.readyClosed {
			close(p.ready)
			p.readyClosed = true
		}
		if h.pollers[p.key] == p {
			delete(h.pollers, p.key)
		}
	}
	p.mu.Unlock()
	h.mu.Unlock()
	if last {
		p.cancel()
	}
}
