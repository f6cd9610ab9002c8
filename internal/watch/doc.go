// Package watch is the core of WatchBatch: a Hub of shared pollers that
// turns the upstream's "poll GET /v1/batches/{id} every 30–60 s" contract
// into push-style subscriptions, while the gateway polls each batch once
// however many callers watch it.
//
// # Keys and credentials
//
// Everything the hub holds — pollers, cached results, coalesced calls — is
// keyed by [Key]: the batch id plus an opaque hash of the caller's
// credential. A caller never receives a batch fetched with another caller's
// credential. The credential itself never enters the hub: it travels in
// the contexts the hub hands the [Fetcher]. A Get fetches under (the
// values of) its caller's context; a poller, which outlives the Subscribe
// that started it, polls under a fresh context from [Options.PollContext]
// (the credential of that call, and nothing else of it), each poll the
// root span of a trace of its own linked to the starting call's span.
//
// # Using a Hub from a streaming handler
//
//	sub, err := hub.Subscribe(ctx, key)
//	if err != nil {
//		return apierr.FromError(err).Err() // nothing sent yet
//	}
//	defer sub.Close()
//	last := sub.Current()
//	send(SNAPSHOT, last) // terminal already? then return OK
//	for {
//		select {
//		case <-sub.Updates():
//			last, _ = sub.Latest()
//			send(CHANGE, last) // terminal? then return OK
//		case <-sub.Done():
//			if b, _ := sub.Latest(); b != last { last = b; send(CHANGE, b) }
//			if err := sub.Err(); err != nil { return mapped(err) }
//			return nil // the last batch sent was terminal
//		case <-heartbeat.C:
//			send(HEARTBEAT, nil)
//		case <-ctx.Done():
//			return ctx.Err()
//		}
//	}
//
// See the package example for a complete, running loop.
//
// # Fan-out
//
// Each poller publishes its latest state (batch, version, and a "changed"
// channel) through one atomic pointer. A change replaces the state and
// closes the previous state's channel: one close wakes every watcher
// blocked on it, so the poller's cost per change is O(1) in the number of
// watchers and the poller never blocks on a slow watcher. Watchers read the
// newest state lock-free with [Subscription.Latest]; a watcher that falls
// behind simply skips to the newest state (conflation), which is what a
// "current state of the batch" stream wants. The alternative, one
// 1-buffered channel per subscription with non-blocking sends, costs the
// poller one send per watcher per change under a lock and a channel per
// watcher; the broadcast channel costs neither. Its one price is that
// [Subscription.Updates] returns a different channel after each change, so
// callers call it anew on every loop iteration.
//
// One goroutine watching many Keys (WatchBatches) cannot select on a
// channel per subscription. [Subscription.Notify] gives it the other
// design, opt-in: the subscriptions share one 1-buffered channel, which
// their pollers signal without blocking on each change and at the end,
// and the waiter then scans its subscriptions with the non-blocking
// Updates and Done. Only subscriptions that asked for it cost their poller
// a send per change.
//
// A subscription is a small struct plus one unbuffered channel (its Done
// channel) and a map entry in its poller: about 250 bytes per subscription
// for 10,000 subscriptions on 100 Keys, pollers included, as measured by
// TestMemoryPerSubscription. Subscriptions start no goroutines; a poller is
// one goroutine per watched Key.
//
// # Errors
//
// A subscription ends with a nil [Subscription.Err] once its latest batch
// is terminal ([github.com/batchgate/batchgate/internal/wire.IsTerminal]); otherwise with the error that ended it:
//
//   - a permanent upstream error (a 4xx other than 408, 409 and 429, or
//     upstream.ErrInvalidBatchID), as returned by the Fetcher, at once;
//   - [ErrFailureBudget], wrapping the last error, after
//     [Options.FailureBudget] of continuous transient failure (408, 409,
//     429, 5xx, upstream.ErrUnreachable, upstream.ErrTimeout,
//     upstream.ErrMalformedResponse, or anything unrecognised);
//   - [ErrShutdown] when the hub is closed, or its watches are
//     ([Hub.CloseWatches]: the first step of a graceful shutdown);
//   - [ErrClosed] after [Subscription.Close].
//
// The first two keep the upstream error reachable with errors.As and
// errors.Is, so apierr.FromError maps them by the upstream failure (the
// failure-budget error by its last upstream error). ErrShutdown and
// ErrClosed are for the handler to map (apierr.FromError would call them
// Internal; Unavailable fits ErrShutdown).
package watch
