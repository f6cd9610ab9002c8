package watch

import (
	"sync/atomic"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Subscription is one watcher of a Key, returned by Hub.Subscribe. It holds
// no goroutine. Its methods are safe for concurrent use, but the version
// bookkeeping behind Updates and Latest assumes one consumer. Batches it
// returns are shared with other watchers and must not be modified.
type Subscription struct {
	p    *poller
	cur  *batchv1.Batch
	seen atomic.Uint64 // the version last returned by Current or Latest
	done chan struct{}
	err  error // written under p.mu before done is closed
	// notify, set by Notify under p.mu, is signalled on changes and at
	// the end.
	notify chan<- struct{}
}

// closedCh is a channel that is always ready.
var closedCh = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Current returns the batch the subscription started with: the snapshot to
// send first. When it is terminal, the subscription is already done with a
// nil Err.
func (s *Subscription) Current() *batchv1.Batch {
	return s.cur
}

// Updates returns a channel that is ready once a batch newer than the one
// last returned by Latest (or Current, before any Latest) is available.
// Receive from it, then call Latest; call Updates again for the next change,
// as the channel differs from one version to the next. Changes between two
// Latest calls are conflated: a slow reader skips to the newest batch and
// never holds up the poller or other watchers.
func (s *Subscription) Updates() <-chan struct{} {
	st := s.p.state.Load()
	if st.version > s.seen.Load() {
		return closedCh
	}
	return st.changed
}

// Latest returns the newest batch of the subscription's Key and its
// version, and marks it seen for Updates. Versions start at 1 with the
// first batch and grow by one each time a poll returns a batch that
// differs (by proto.Equal) from the one before. After the subscription
// ends, Latest keeps returning the last batch; after a nil Err, that batch
// is terminal.
func (s *Subscription) Latest() (b *batchv1.Batch, version uint64) {
	b, version, _ = s.LatestAt()
	return b, version
}

// LatestAt is Latest, plus when the gateway observed that batch: when the
// upstream call that returned it (or, for a cached batch, the call that
// filled the cache) ended.
func (s *Subscription) LatestAt() (b *batchv1.Batch, version uint64, observedAt time.Time) {
	st := s.p.state.Load()
	s.seen.Store(st.version)
	return st.b, st.version, st.at
}

// Done returns a channel closed when the subscription ends: its batch
// became terminal, an error ended it, the hub closed, or Close was called.
// Then Err says why.
func (s *Subscription) Done() <-chan struct{} {
	return s.done
}

// Err returns nil while the subscription is live, and after it ended
// because its batch became terminal (Latest then returns the terminal
// batch, possibly not yet seen). Otherwise it returns what ended it: the
// permanent upstream error, an error wrapping ErrFailureBudget and the last
// upstream error, ErrShutdown, or ErrClosed.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close releases the subscription at once; it is idempotent and does not
// block on the poller. When it was its Key's last subscriber, the Key's
// poller stops and its in-flight upstream call is cancelled. A
// subscription that had not ended yet ends with ErrClosed.
func (s *Subscription) Close() {
	s.p.release(s)
}
