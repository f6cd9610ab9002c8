package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/limit"
	"github.com/batchgate/batchgate/internal/ownership"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

// MaxWatchBatches is the most distinct batches one WatchBatches stream
// may watch.
const MaxWatchBatches = 1000

// subscribeWorkers is how many of a multi-watch's batches are subscribed
// at once while it starts: a batch nobody watches yet waits for its first
// upstream fetch, and 1,000 of them one after another would hold the
// stream's first events for minutes. The workers end once every batch is
// subscribed; afterwards the stream is one goroutine, whatever its size.
const subscribeWorkers = 8

// WatchBatches streams the events of many batches on one stream, sharing
// the hub's pollers with WatchBatch (one upstream poll per batch, however
// many streams watch it). Per batch: a SNAPSHOT once its subscription
// starts, a CHANGE whenever a poll finds it different, terminal=true on
// its terminal state; a batch that cannot be watched — unknown upstream,
// not the caller's in key mode, first fetch failed, poller gave up — gets
// one ERROR event (terminal=true) and the others go on. A HEARTBEAT
// (without a batch id) follows Heartbeat of silence on the whole stream.
// The stream ends OK once every batch has had its last event, and with
// UNAVAILABLE at its maximum age or on shutdown, as WatchBatch.
//
// The request is checked before anything starts: 1 to MaxWatchBatches
// distinct ids (duplicates folded), each valid (INVALID_ARGUMENT names the
// first bad one by its index), the read scope, and the watcher limits,
// which count the stream as one watcher per distinct batch
// (limit.CountWatchers).
//
// Costs: one goroutine for the stream (plus, while it starts, up to
// subscribeWorkers subscribing), one hub subscription per batch, and a
// single 1-buffered channel that all of them signal (watch's
// Subscription.Notify); each signal makes the stream scan its open
// batches.
func (s *Service) WatchBatches(req *batchv1.WatchBatchesRequest, stream batchv1.BatchService_WatchBatchesServer) error {
	ctx := stream.Context()
	ids, err := foldBatchIDs(req.GetBatchIds())
	if err != nil {
		return err
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return err
	}
	if err := limit.CountWatchers(ctx, len(ids)); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &multiWatch{
		s: s, ctx: ctx, stream: stream, caller: c,
		entries: make([]multiEntry, len(ids)),
		started: make(chan startedSub, len(ids)),
		notify:  make(chan struct{}, 1),
		open:    len(ids),
	}
	for i, id := range ids {
		m.entries[i].id = id
	}
	m.subscribeAll()
	defer func() {
		cancel()
		m.workers.Wait()
		m.closeAll()
	}()
	return m.run()
}

// foldBatchIDs validates ids and returns them without duplicates, in
// their first order.
func foldBatchIDs(ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, apierr.Invalid("batch_ids", apierr.CodeMissingParameter, "name at least one batch id to watch").Err()
	}
	seen := make(map[string]struct{}, min(len(ids), MaxWatchBatches))
	out := make([]string, 0, min(len(ids), MaxWatchBatches))
	for i, id := range ids {
		if err := upstream.ValidateBatchID(id); err != nil {
			return nil, apierr.Error{Code: codes.InvalidArgument, HTTPStatus: http.StatusBadRequest, Type: "invalid_request_error",
				ErrCode: apierr.CodeInvalidBatchID, Param: "batch_ids", Reason: apierr.ReasonInvalidBatchID,
				Message: fmt.Sprintf("batch_ids[%d]: %v", i, err)}.Err()
		}
		if _, dup := seen[id]; dup {
			continue
		}
		if len(out) == MaxWatchBatches {
			return nil, apierr.Invalid("batch_ids", apierr.CodeInvalidValue,
				fmt.Sprintf("at most %d distinct batch ids per watch", MaxWatchBatches)).Err()
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out, nil
}

// multiWatch is one WatchBatches stream.
type multiWatch struct {
	s      *Service
	ctx    context.Context // cancelled when the stream's handler returns
	stream batchv1.BatchService_WatchBatchesServer
	caller callinfo.Caller

	entries []multiEntry
	started chan startedSub // the workers' results; room for every batch
	workers sync.WaitGroup
	notify  chan struct{} // signalled by every subscription (Notify)
	open    int           // batches that have not had their last event
	seq     uint64
	// heartbeat is reset by every event sent.
	heartbeat *time.Timer
}

// multiEntry is one batch of a multi-watch.
type multiEntry struct {
	id      string
	sub     *watch.Subscription // nil until subscribed, and after the end
	version uint64              // of the last batch sent
	ended   bool                // its last event was sent
}

// startedSub is the outcome of one batch's Subscribe.
type startedSub struct {
	i   int
	sub *watch.Subscription
	err error
}

// subscribeAll starts the workers that subscribe every batch, in order.
func (m *multiWatch) subscribeAll() {
	var next sync.Mutex
	i := 0
	for range min(subscribeWorkers, len(m.entries)) {
		m.workers.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= len(m.entries) || m.ctx.Err() != nil {
					return
				}
				sub, err := m.s.hub.Subscribe(m.ctx, m.s.key(m.ctx, m.entries[j].id))
				// Never blocks: started has room for every batch.
				m.started <- startedSub{i: j, sub: sub, err: err}
			}
		})
	}
}

// closeAll closes every subscription, those the loop never took included.
// The workers have returned.
func (m *multiWatch) closeAll() {
	for i := range m.entries {
		if sub := m.entries[i].sub; sub != nil {
			sub.Close()
		}
	}
	for {
		select {
		case r := <-m.started:
			if r.sub != nil {
				r.sub.Close()
			}
		default:
			return
		}
	}
}

// run sends the stream's events until every batch has ended.
func (m *multiWatch) run() error {
	s := m.s
	m.heartbeat = time.NewTimer(s.heartbeat)
	defer m.heartbeat.Stop()
	maxAge := time.NewTimer(s.maxAge - rand.N(s.maxAge/10+1))
	defer maxAge.Stop()
	for m.open > 0 {
		select {
		case r := <-m.started:
			if err := m.start(r); err != nil {
				return err
			}
		case <-m.notify:
			if err := m.scan(); err != nil {
				return err
			}
		case <-m.heartbeat.C:
			if err := m.send(&batchv1.WatchBatchesResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT}, s.now()); err != nil {
				return err
			}
		case <-maxAge.C:
			return s.fail(m.ctx, "watch batches", "", apierr.ErrStreamMaxAge)
		case <-m.ctx.Done():
			return status.FromContextError(m.ctx.Err()).Err()
		}
	}
	return nil
}

// start sends the first event of a subscribed batch: its SNAPSHOT, or the
// ERROR of a batch that could not be subscribed or may not be seen.
func (m *multiWatch) start(r startedSub) error {
	e := &m.entries[r.i]
	if r.err != nil {
		if err := m.streamEnd(r.err); err != nil {
			return err
		}
		return m.batchError(e, r.err)
	}
	e.sub = r.sub
	b, v, at := e.sub.LatestAt()
	if ownership.Restricted(m.caller) {
		// As WatchBatch: a batch's owner never changes.
		if !ownership.CanSee(m.caller, b) {
			return m.batchError(e, apierr.NotFound("batch", e.id).Err())
		}
		m.s.files.AddBatch(b)
	}
	e.version = v
	if err := m.sendBatch(e, batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, b, at); err != nil {
		return err
	}
	if !e.ended {
		// Signals at once if the batch changed or ended since LatestAt.
		e.sub.Notify(m.notify)
	}
	return nil
}

// scan sends what changed among the open batches since the last scan:
// their newest state, and the ERROR of those whose subscription failed.
func (m *multiWatch) scan() error {
	for i := range m.entries {
		e := &m.entries[i]
		if e.sub == nil || e.ended {
			continue
		}
		// Done first: a subscription that ended has published its last
		// batch, which LatestAt then returns.
		var done bool
		select {
		case <-e.sub.Done():
			done = true
		default:
		}
		if b, v, at := e.sub.LatestAt(); v != e.version {
			e.version = v
			if err := m.sendBatch(e, batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE, b, at); err != nil {
				return err
			}
		}
		if !done || e.ended {
			continue
		}
		err := e.sub.Err()
		if err == nil {
			// Cannot happen (a nil Err means a terminal batch, sent
			// above); never leave the batch open.
			err = errors.New("watch: subscription ended without a terminal batch")
		}
		if serr := m.streamEnd(err); serr != nil {
			return serr
		}
		if err := m.batchError(e, err); err != nil {
			return err
		}
	}
	return nil
}

// streamEnd returns the error that ends the whole stream when err, a
// batch's, is about the stream rather than the batch (shutdown, the
// stream's own cancellation), and nil otherwise.
func (m *multiWatch) streamEnd(err error) error {
	if ctxErr := m.ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	if errors.Is(err, watch.ErrShutdown) {
		return m.s.fail(m.ctx, "watch batches", "", err)
	}
	return nil
}

// sendBatch sends an event carrying b for e, and ends e after a terminal
// batch.
func (m *multiWatch) sendBatch(e *multiEntry, typ batchv1.WatchEventType, b *batchv1.Batch, at time.Time) error {
	terminal := wire.IsTerminal(b)
	if terminal {
		m.end(e)
	}
	return m.send(&batchv1.WatchBatchesResponse{BatchId: e.id, Type: typ, Batch: b, Terminal: terminal, Tag: m.s.encoded.Tag(b)}, at)
}

// batchError sends the ERROR event of e, whose watch failed with err, and
// ends e.
func (m *multiWatch) batchError(e *multiEntry, err error) error {
	st := status.Convert(m.s.fail(m.ctx, "watch batches", e.id, err))
	m.end(e)
	return m.send(&batchv1.WatchBatchesResponse{
		BatchId:  e.id,
		Type:     batchv1.WatchEventType_WATCH_EVENT_TYPE_ERROR,
		Terminal: true,
		Error:    WatchErrorOf(st),
	}, m.s.now())
}

// end marks e ended and releases its subscription.
func (m *multiWatch) end(e *multiEntry) {
	if e.ended {
		return
	}
	e.ended = true
	m.open--
	if e.sub != nil {
		e.sub.Close()
		e.sub = nil
	}
}

// send numbers and sends one event observed at at.
func (m *multiWatch) send(ev *batchv1.WatchBatchesResponse, at time.Time) error {
	m.seq++
	ev.Sequence = m.seq
	ev.ObservedAtUnixMs = at.UnixMilli()
	if err := m.stream.Send(ev); err != nil {
		return err
	}
	m.heartbeat.Reset(m.s.heartbeat)
	return nil
}

// WatchErrorOf returns st as the error of one batch of a WatchBatches
// stream: its gRPC code, and the message, type, code and HTTP status of
// its error envelope (apierr.ToEnvelope, apierr.HTTPStatus).
func WatchErrorOf(st *status.Status) *batchv1.WatchError {
	env := apierr.ToEnvelope(st).Error
	we := &batchv1.WatchError{
		Code:       int32(st.Code()),
		Message:    env.Message,
		Type:       env.Type,
		HttpStatus: int32(apierr.HTTPStatus(st)),
	}
	if env.Code != nil {
		we.ErrorCode = *env.Code
	}
	return we
}
