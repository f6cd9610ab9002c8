package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/wire"
)

// Fetcher fetches one batch from the upstream. The upstream client
// satisfies it; it is expected to retry internally a bounded number of
// times and to return *upstream.Error and the upstream sentinels, which the
// hub uses to tell permanent failures from transient ones. The hub never
// modifies a returned batch, and neither may the Fetcher afterwards.
type Fetcher interface {
	GetBatch(ctx context.Context, batchID string) (*batchv1.Batch, error)
}

// Key identifies what the hub polls, caches and coalesces: one batch as
// seen with one credential. Two Keys with different Credential never share
// a poller, a cached result or an upstream call.
type Key struct {
	// Credential is an opaque, non-secret identifier of the caller's
	// credential (for example a hash of it), or "" when the gateway calls
	// the upstream with its own key. Never the credential itself: the hub
	// keeps Keys in memory and in map keys.
	Credential string
	// BatchID is the upstream batch id.
	BatchID string
}

// Errors that end subscriptions or calls. Test them with errors.Is.
var (
	// ErrShutdown is returned by Subscribe and Get after Close (Subscribe
	// also after CloseWatches), and ends every subscription when the hub
	// or its watches close.
	ErrShutdown = errors.New("watch: hub shut down")
	// ErrClosed is a subscription's Err after its own Close.
	ErrClosed = errors.New("watch: subscription closed")
	// ErrFailureBudget ends a Key's subscriptions after
	// Options.FailureBudget of continuous transient failure. The error that
	// carries it also wraps the last upstream error.
	ErrFailureBudget = errors.New("watch: failure budget exhausted")
	// errNilBatch replaces a (nil, nil) answer from a Fetcher.
	errNilBatch = fmt.Errorf("%w: the fetcher returned neither a batch nor an error", upstream.ErrMalformedResponse)
)

// Options configures a Hub. The zero value gives the documented defaults.
type Options struct {
	// PollInterval is how often a poller fetches its batch while it is
	// watched. Default 30s.
	PollInterval time.Duration
	// Jitter spreads polls so pollers do not fire together: each wait is
	// PollInterval × (1 ± Jitter), uniformly at random. Zero means 0.1; a
	// negative value disables jitter; values above 0.5 count as 0.5.
	Jitter float64
	// FailureBudget is how long a poller keeps retrying transient failures
	// without a single success before it ends its Key's subscriptions with
	// ErrFailureBudget. Checked after each failure, so the actual time can
	// exceed it by one retry wait. Default 5m.
	FailureBudget time.Duration
	// FreshFor is how long a successful fetch (by Get or by a poller)
	// answers Get, and starts a new poller, without an upstream call. Zero
	// means PollInterval; a negative value disables this cache.
	FreshFor time.Duration
	// CallTimeout bounds every fetch the hub makes (after waiting on the
	// Limiter). It should exceed the Fetcher's own retry budget. Default
	// 1m.
	CallTimeout time.Duration
	// Limiter, when set, is waited on before every upstream call of the
	// hub. The hub adjusts its limit: each 429 from the upstream halves it
	// (never below LimiterFloor) and each success raises it by a sixteenth
	// of the limit it had when New was called, up to that limit. An
	// infinite limit is never adjusted. Nil means unlimited.
	Limiter *rate.Limiter
	// LimiterFloor is the lowest limit a 429 can bring Limiter down to.
	// Zero means a sixteenth of Limiter's limit when New was called.
	LimiterFloor rate.Limit
	// PollContext returns the context a new poller for k polls under, made
	// from ctx, the context of the Subscribe that starts it. The poller
	// keeps it for as long as it runs, long after that call has ended, so
	// it must be a fresh context carrying only what fetches need (the
	// credential that k.Credential stands for, typically), never ctx or
	// its values: the call's metadata, span and log attributes. Its
	// cancellation and deadline, if any, are ignored. Default: an empty
	// context.
	PollContext func(ctx context.Context, k Key) context.Context
	// OnPublish, when set, is called each time a poller publishes a new
	// state of k to its watchers (its first batch, each change, the
	// terminal batch), at the instant the watchers were woken. It runs in
	// the poller's goroutine, with no lock held, and must be quick.
	OnPublish func(k Key, b *batchv1.Batch, at time.Time)
	// Coordinator, when set, shares the pollers with other replicas: one
	// replica polls each Key, the others follow its states (published to
	// their watchers as their own polls would be, OnPublish included), Get
	// is answered from a fresh shared state, and PokeBatch reaches the
	// replica that polls. Nil: the hub polls every watched Key itself.
	//
	// When the Coordinator is also a GetLeaser, a Get that finds no fresh
	// shared state is coalesced cluster-wide: it takes the Key's lease
	// before calling the upstream and shares the result, or, when another
	// replica holds the lease, waits for the shared state it writes.
	Coordinator Coordinator
	// SharedGetWait bounds how long a Get waits for the shared state of
	// another replica that holds the Key's lease (GetLeaser) before it
	// calls the upstream by itself; it waits no longer than half the time
	// left before the caller's deadline, so that its own call has the
	// other half. Zero means 3s; a negative value disables the wait (and
	// the Get lease). Ignored without a GetLeaser Coordinator.
	SharedGetWait time.Duration
	// Logger receives a debug line when a poller starts and stops, with
	// the batch id (never the credential). Nil discards.
	Logger *slog.Logger
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.PollInterval <= 0 {
		o.PollInterval = 30 * time.Second
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = 0.1
	case o.Jitter < 0:
		o.Jitter = 0
	case o.Jitter > 0.5:
		o.Jitter = 0.5
	}
	if o.FailureBudget <= 0 {
		o.FailureBudget = 5 * time.Minute
	}
	if o.FreshFor == 0 {
		o.FreshFor = o.PollInterval
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = time.Minute
	}
	if o.SharedGetWait == 0 {
		o.SharedGetWait = 3 * time.Second
	}
	if o.PollContext == nil {
		o.PollContext = func(context.Context, Key) context.Context { return context.Background() }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Stats are counters of a Hub's activity. Watchers and Pollers are current
// values; the others are totals since New.
type Stats struct {
	// Watchers is the number of subscriptions attached to a running
	// poller: not yet ended and not closed.
	Watchers int64
	// Pollers is the number of poller goroutines running (one per watched
	// Key; a stopped poller counts until its goroutine has returned).
	Pollers int64
	// Polls is the number of upstream calls made by pollers.
	Polls uint64
	// Gets is the number of upstream calls made on behalf of Get.
	Gets uint64
	// Coalesced is the number of Get calls answered by joining an upstream
	// call another Get had already started.
	Coalesced uint64
	// CacheHits is the number of Get and Subscribe calls answered from a
	// result the hub already had, without waiting for an upstream call.
	CacheHits uint64
	// SharedHits is the number of Get calls answered from the
	// Coordinator's shared state, without an upstream call: one already
	// there, or one that another replica holding the Key's lease wrote
	// while the Get waited for it.
	SharedHits uint64
	// Followed is the number of shared states, polled by another
	// replica, that pollers took from the Coordinator.
	Followed uint64
}

// Hub runs shared pollers and answers Get and Subscribe for batches. Create
// it with New and release it with Close. All methods are safe for
// concurrent use.
type Hub struct {
	f    Fetcher
	opts Options
	log  *slog.Logger
	lim  *adaptiveLimiter

	// ctx is cancelled by Close, which cancels every flight too.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts poller goroutines and shared Get calls. Add is only
	// called under mu while !closed, so it never races with Close's Wait.
	wg sync.WaitGroup

	// mu guards the fields below. Lock order: Hub.mu, then poller.mu.
	mu     sync.Mutex
	closed bool
	// watchesClosed is set by CloseWatches (and Close): Subscribe
	// refuses, no poller starts.
	watchesClosed bool
	pollers       map[Key]*poller
	flights       map[Key]*flight // Gets' upstream calls in progress
	cache         map[Key]cacheEntry
	nextSweep     int // sweep the cache when it reaches this size
	// poked is when each batch was last poked, with a Coordinator: a
	// shared state observed before that does not answer Get.
	poked map[string]time.Time

	watchers, pollersRunning          atomic.Int64
	polls, gets, coalesced, cacheHits atomic.Uint64
	sharedHits, followed              atomic.Uint64
}

// cacheEntry is a successful fetch: the batch and when the fetch started.
type cacheEntry struct {
	b  *batchv1.Batch
	at time.Time
}

// minSweep is the cache size below which expired entries are left alone.
const minSweep = 256

// New returns a Hub that fetches batches with f. It starts no goroutines
// until the first Subscribe.
func New(f Fetcher, opts Options) *Hub {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		f:         f,
		opts:      opts,
		log:       opts.Logger,
		lim:       newAdaptiveLimiter(opts.Limiter, opts.LimiterFloor),
		ctx:       ctx,
		cancel:    cancel,
		pollers:   make(map[Key]*poller),
		flights:   make(map[Key]*flight),
		cache:     make(map[Key]cacheEntry),
		nextSweep: minSweep,
	}
}

// Get returns the batch for k. A result younger than Options.FreshFor,
// fetched by an earlier Get or by k's poller, answers without an upstream
// call. Otherwise concurrent Gets for the same Key share one upstream call
// (with a Coordinator, one across the replicas: see Options.Coordinator),
// bounded by Options.CallTimeout. The first caller makes that call in its
// own goroutine; the others wait for it. A waiter whose ctx ends gets
// ctx.Err() at once. When the first caller's ctx ends, the call goes on
// while others wait for it (the first caller then returns ctx.Err() when
// it ends) and is cancelled once none do. Errors are not cached. The
// returned batch is shared and must not be modified.
func (h *Hub) Get(ctx context.Context, k Key) (*batchv1.Batch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrShutdown
	}
	if b, _ := h.freshLocked(k, time.Now()); b != nil {
		h.mu.Unlock()
		h.cacheHits.Add(1)
		return b, nil
	}
	if f := h.flights[k]; f != nil {
		f.waiters++
		h.mu.Unlock()
		return h.await(ctx, k, f)
	}
	// Not ended by ctx: the AfterFunc below cancels it once no caller is
	// left, and Close cancels it.
	callCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight{done: make(chan struct{}), cancel: cancel}
	h.flights[k] = f
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()

	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		f.left = true
		h.abandonLocked(k, f)
		h.mu.Unlock()
	})
	deadline, _ := ctx.Deadline()
	b, err := h.sharedGet(callCtx, deadline, k)
	stop()
	cancel()
	h.mu.Lock()
	if h.flights[k] == f {
		delete(h.flights, k)
	}
	h.mu.Unlock()
	f.b, f.err = b, err
	close(f.done)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr
	}
	return b, err
}

// flight is one upstream call that concurrent Gets of a Key share.
type flight struct {
	done   chan struct{} // closed when b and err are set
	cancel context.CancelFunc
	b      *batchv1.Batch
	err    error
	// waiters counts the Gets waiting for done, and left is set once the
	// caller making the call has gone; both guarded by Hub.mu.
	waiters int
	left    bool
}

// await waits for f, the flight of k, on behalf of a caller counted in
// f.waiters.
func (h *Hub) await(ctx context.Context, k Key, f *flight) (*batchv1.Batch, error) {
	select {
	case <-f.done:
		h.coalesced.Add(1)
		return f.b, f.err
	case <-ctx.Done():
		h.mu.Lock()
		f.waiters--
		h.abandonLocked(k, f)
		h.mu.Unlock()
		return nil, ctx.Err()
	}
}

// abandonLocked cancels f, the flight of k, when no caller is left to
// take its result, and forgets it so that the next Get starts afresh.
// h.mu must be held.
func (h *Hub) abandonLocked(k Key, f *flight) {
	if !f.left || f.waiters > 0 {
		return
	}
	f.cancel()
	if h.flights[k] == f {
		delete(h.flights, k)
	}
}

// sharedGet is the upstream call behind one flight, under ctx, which Close
// cancels. deadline is the calling Get's, zero when it has none.
func (h *Hub) sharedGet(ctx context.Context, deadline time.Time, k Key) (*batchv1.Batch, error) {
	b, done, err := h.coordinatedGet(ctx, deadline, k)
	if !done {
		start := time.Now()
		if b, err = h.fetch(ctx, k, &h.gets); err == nil {
			h.remember(k, b, start)
		}
	}
	if err != nil {
		if h.ctx.Err() != nil {
			return nil, ErrShutdown
		}
		return nil, err
	}
	return b, nil
}

// coordinatedGet answers a Get through the Coordinator, if any: from a
// fresh shared state, or, with a GetLeaser, by calling the upstream under
// k's lease and sharing the result, or by waiting for the shared state of
// the replica that holds the lease. done is false when the caller is to
// call the upstream by itself: no Coordinator, the cluster unavailable, or
// no fresh state within the wait.
func (h *Hub) coordinatedGet(ctx context.Context, deadline time.Time, k Key) (b *batchv1.Batch, done bool, err error) {
	c := h.opts.Coordinator
	if c == nil || h.opts.FreshFor <= 0 {
		return nil, false, nil
	}
	if b, ok := h.freshShared(ctx, c, k); ok {
		return b, true, nil
	}
	gl, ok := c.(GetLeaser)
	if !ok || h.opts.SharedGetWait < 0 {
		return nil, false, nil
	}
	wait := h.opts.SharedGetWait
	if !deadline.IsZero() {
		wait = min(wait, time.Until(deadline)/2)
	}
	if wait <= 0 {
		return nil, false, nil
	}
	// Follow first, so that no state written after the lease is found
	// held goes unseen.
	in := newInbox()
	defer c.Follow(k, in.put)()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		release, err := gl.LeaseGet(ctx, k)
		if err != nil {
			return nil, false, nil
		}
		if release != nil {
			// The former holder may have shared its result between our
			// look at the shared state and our taking the lease.
			if b, ok := h.freshShared(ctx, c, k); ok {
				release(nil, time.Time{})
				return b, true, nil
			}
			start := time.Now()
			b, err := h.fetch(ctx, k, &h.gets)
			if err != nil {
				release(nil, time.Time{})
				return nil, true, err
			}
			h.remember(k, b, start)
			release(b, start)
			return b, true, nil
		}
		if b, ok := h.freshShared(ctx, c, k); ok {
			return b, true, nil
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil, true, ctx.Err()
			case <-timer.C:
				return nil, false, nil
			case <-in.sig:
				b, at, free := in.take()
				if b != nil && h.sharedFresh(k, at) {
					h.sharedHits.Add(1)
					h.remember(k, b, at)
					return b, true, nil
				}
				if free {
					break wait // the holder gave up without a fresh state: try the lease
				}
			}
		}
	}
}

// freshShared returns k's shared state if it answers Get: younger than
// FreshFor and observed after the batch's last poke.
func (h *Hub) freshShared(ctx context.Context, c Coordinator, k Key) (*batchv1.Batch, bool) {
	b, at, ok := c.Shared(ctx, k)
	if !ok || !h.sharedFresh(k, at) {
		return nil, false
	}
	h.sharedHits.Add(1)
	h.remember(k, b, at)
	return b, true
}

// sharedFresh reports whether a shared state of k observed at at answers
// Get: younger than FreshFor and observed after the batch's last poke.
func (h *Hub) sharedFresh(k Key, at time.Time) bool {
	h.mu.Lock()
	poked := h.poked[k.BatchID]
	h.mu.Unlock()
	return time.Since(at) < h.opts.FreshFor && at.After(poked)
}

// fetch makes one upstream call for k: it waits on the limiter, counts the
// call in counter, and bounds it by CallTimeout.
func (h *Hub) fetch(ctx context.Context, k Key, counter *atomic.Uint64) (*batchv1.Batch, error) {
	if err := h.lim.wait(ctx); err != nil {
		return nil, err
	}
	counter.Add(1)
	fctx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	b, err := h.f.GetBatch(fctx, k.BatchID)
	if err == nil && b == nil {
		err = errNilBatch
	}
	h.lim.observe(err)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// freshLocked returns k's cached batch and its age if it is younger than
// FreshFor. h.mu must be held.
func (h *Hub) freshLocked(k Key, now time.Time) (*batchv1.Batch, time.Duration) {
	e, ok := h.cache[k]
	if !ok {
		return nil, 0
	}
	age := now.Sub(e.at)
	if age >= h.opts.FreshFor {
		return nil, 0
	}
	return e.b, age
}

// remember caches b as k's batch as of start, unless the cache already
// holds a result from a later fetch. Once the cache has grown to nextSweep
// entries, expired ones are dropped, so its size stays proportional to the
// number of Keys fetched within FreshFor.
func (h *Hub) remember(k Key, b *batchv1.Batch, start time.Time) {
	if h.opts.FreshFor < 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if e, ok := h.cache[k]; ok && e.at.After(start) {
		return
	}
	h.cache[k] = cacheEntry{b: b, at: start}
	if len(h.cache) < h.nextSweep {
		return
	}
	now := time.Now()
	for key, e := range h.cache {
		if now.Sub(e.at) >= h.opts.FreshFor {
			delete(h.cache, key)
		}
	}
	h.nextSweep = max(2*len(h.cache), minSweep)
}

// Subscribe starts watching k. The first subscriber of a Key starts its
// poller; later ones join it. Subscribe returns once the subscription has a
// current batch ([Subscription.Current]):
//
//   - at once, without an upstream call, when k's poller already has a
//     batch, or when a result younger than FreshFor is cached (a new
//     poller then starts from it);
//   - otherwise after the poller's first fetch, which all subscribers
//     waiting for it share. If that fetch fails, with any error, Subscribe
//     returns the error.
//
// If the current batch is terminal the subscription is returned already
// done, with a nil Err. If ctx ends first, Subscribe returns ctx.Err(). ctx
// only bounds the wait: the subscription lives until it ends or is closed.
// A new poller keeps nothing of ctx but what Options.PollContext makes of
// it and a link to its span: each poll is the root span of a new trace,
// linked to the span of the Subscribe that started the poller and made
// with that span's TracerProvider. Every returned Subscription must be
// closed.
func (h *Hub) Subscribe(ctx context.Context, k Key) (*Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed || h.watchesClosed {
		h.mu.Unlock()
		return nil, ErrShutdown
	}
	p := h.pollers[k]
	hit := false
	if p == nil {
		seed, age := h.freshLocked(k, time.Now())
		if wire.IsTerminal(seed) {
			h.mu.Unlock()
			h.cacheHits.Add(1)
			return h.endedSubscription(k, seed), nil
		}
		p = h.startPollerLocked(ctx, k, seed, age)
		hit = seed != nil
	}
	s := &Subscription{p: p, done: make(chan struct{})}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	hit = hit || p.state.Load() != nil
	p.mu.Unlock()
	h.watchers.Add(1)
	h.mu.Unlock()

	if hit {
		h.cacheHits.Add(1)
	} else {
		select {
		case <-p.ready:
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		}
	}
	st := p.state.Load()
	if st == nil {
		// The poller ended before its first batch; it has removed s.
		s.Close()
		return nil, p.endErr()
	}
	s.cur = st.b
	s.seen.Store(st.version)
	return s, nil
}

// endedSubscription returns a subscription that is already done with a nil
// Err, holding the terminal batch b. No poller runs for it.
func (h *Hub) endedSubscription(k Key, b *batchv1.Batch) *Subscription {
	p := &poller{h: h, key: k, ended: true}
	p.state.Store(&state{b: b, version: 1, changed: make(chan struct{}), at: time.Now()})
	s := &Subscription{p: p, cur: b, done: make(chan struct{})}
	s.seen.Store(1)
	close(s.done)
	return s
}

// Poke makes k's poller poll at once, for example after a webhook said the
// batch changed, and drops k's cached result so that Get fetches it anew.
// The poll still waits on the Limiter but not for the poller's backoff or
// an upstream Retry-After. Pokes arriving while a poll is in flight cause
// one more poll after it. Poke does not block; without a poller for k it
// only drops the cached result.
func (h *Hub) Poke(k Key) {
	h.mu.Lock()
	delete(h.cache, k)
	p := h.pollers[k]
	h.mu.Unlock()
	if p != nil {
		p.pokeNow()
	}
}

// PokeBatch is Poke for every Key of a batch, whatever its credential: what
// an upstream webhook ("batch X changed", no credential) calls. With a
// Coordinator it also pokes the replicas that poll the batch. It returns
// how many local pollers it poked.
func (h *Hub) PokeBatch(batchID string) int {
	if c := h.opts.Coordinator; c != nil {
		c.Poke(batchID)
	}
	return h.PokeLocal(batchID)
}

// PokeLocal is PokeBatch for this hub only: what a Coordinator calls when
// another replica pokes a batch.
func (h *Hub) PokeLocal(batchID string) int {
	var ps []*poller
	h.mu.Lock()
	if h.opts.Coordinator != nil && !h.closed {
		now := time.Now()
		if h.poked == nil {
			h.poked = make(map[string]time.Time)
		}
		if len(h.poked) >= minSweep {
			for id, at := range h.poked {
				if now.Sub(at) >= h.opts.FreshFor {
					delete(h.poked, id)
				}
			}
		}
		h.poked[batchID] = now
	}
	for k, p := range h.pollers {
		if k.BatchID == batchID {
			ps = append(ps, p)
		}
	}
	for k := range h.cache {
		if k.BatchID == batchID {
			delete(h.cache, k)
		}
	}
	h.mu.Unlock()
	for _, p := range ps {
		p.pokeNow()
	}
	return len(ps)
}

// pokeNow asks the poller to poll at once; a pending poke absorbs it.
func (p *poller) pokeNow() {
	select {
	case p.poke <- struct{}{}:
	default: // a poke is already pending
	}
}

// CloseWatches is the first step of a graceful shutdown: it ends every
// subscription with ErrShutdown and stops every poller at once, and
// Subscribe returns ErrShutdown afterwards, while Get goes on working, so
// that unary calls in flight (and the upstream calls they share) finish.
// It does not wait for the pollers' goroutines; Close does. CloseWatches
// is idempotent.
func (h *Hub) CloseWatches() {
	h.mu.Lock()
	h.watchesClosed = true
	ps := make([]*poller, 0, len(h.pollers))
	for _, p := range h.pollers {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	for _, p := range ps {
		h.finish(p, ErrShutdown)
	}
}

// Close ends every subscription with ErrShutdown, cancels every in-flight
// upstream call and waits for the hub's goroutines to return. Subscribe
// and Get return ErrShutdown afterwards. Close is idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	var ps []*poller
	if !h.closed {
		h.closed = true
		h.watchesClosed = true
		for _, p := range h.pollers {
			ps = append(ps, p)
		}
		h.cache = nil
		h.cancel() // before the flights, so that they see ErrShutdown
		for _, f := range h.flights {
			f.cancel()
		}
	}
	h.mu.Unlock()
	h.cancel()
	for _, p := range ps {
		h.finish(p, ErrShutdown)
	}
	h.wg.Wait()
}

// Stats returns the hub's counters. Each field is read atomically; the
// fields are not one consistent snapshot.
func (h *Hub) Stats() Stats {
	return Stats{
		Watchers:   h.watchers.Load(),
		Pollers:    h.pollersRunning.Load(),
		Polls:      h.polls.Load(),
		Gets:       h.gets.Load(),
		Coalesced:  h.coalesced.Load(),
		CacheHits:  h.cacheHits.Load(),
		SharedHits: h.sharedHits.Load(),
		Followed:   h.followed.Load(),
	}
}

// jitter returns d × (1 ± frac), uniformly at random.
func jitter(d time.Duration, frac float64) time.Duration {
	if frac <= 0 {
		return d
	}
	return d + time.Duration((rand.Float64()*2-1)*frac*float64(d))
}
