// Package service implements batch.v1.BatchService on top of a Hub (the
// shared pollers of internal/watch, in front of the upstream client). Every
// error it returns has passed through apierr.FromError.
package service

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/fanout"
	"github.com/batchgate/batchgate/internal/ownership"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

// Hub is what the service needs from the shared pollers. *watch.Hub
// satisfies it.
type Hub interface {
	// Get returns the batch for k, sharing concurrent calls and answering
	// from a fresh poll result where there is one.
	Get(ctx context.Context, k watch.Key) (*batchv1.Batch, error)
	// Subscribe starts watching k; see watch.Hub.Subscribe.
	Subscribe(ctx context.Context, k watch.Key) (*watch.Subscription, error)
}

// Options configures a Service. Zero fields get the defaults shown.
type Options struct {
	// Heartbeat is how long a WatchBatch stream may stay silent before a
	// HEARTBEAT event is sent. Default 15s.
	Heartbeat time.Duration
	// MaxAge bounds the lifetime of a WatchBatch stream; at the end it
	// fails with UNAVAILABLE and a retry hint so that clients reconnect
	// (and rebalance across replicas). Each stream's limit is jittered by
	// up to -10% so that reconnects spread out. Default 1h.
	MaxAge time.Duration
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Credential returns an opaque, non-secret key of the credential a
	// call is made with upstream (a hash of the caller's key when callers'
	// keys are passed through), so that batches fetched with one
	// credential are never shared with calls made with another. Nil: every
	// call shares the gateway's own credential ("").
	Credential func(ctx context.Context) string
	// Caller returns the call's caller, whose scopes decide what it may
	// do and reach (package ownership). Nil: every call is unrestricted.
	Caller func(ctx context.Context) callinfo.Caller

	// Upstream serves the lifecycle calls (create, list, cancel, results)
	// and FileService. Nil: they fail with UNIMPLEMENTED.
	Upstream Upstream
	// Poker, when set, is poked after a cancel so that the batch's
	// watchers see it at once (the hub).
	Poker Poker
	// Files records who owns which file; nil: a new record of
	// ownership.DefaultMaxFiles.
	Files *ownership.Files
	// MaxUploadBytes caps an uploaded file. Default 200 MB, the upstream's
	// own limit.
	MaxUploadBytes int64
}

// DefaultMaxUploadBytes is Options.MaxUploadBytes when it is not set.
const DefaultMaxUploadBytes = 200_000_000

// Service implements batchv1.BatchServiceServer. Create it with New; the
// zero value is not usable.
type Service struct {
	batchv1.UnimplementedBatchServiceServer

	hub        Hub
	credential func(ctx context.Context) string
	heartbeat  time.Duration
	maxAge     time.Duration
	log        *slog.Logger
	now        func() time.Time
	encoded    fanout.Cache // each batch state encoded and tagged once for all its watchers

	callerOf      func(ctx context.Context) callinfo.Caller
	up            Upstream
	poker         Poker
	files         *ownership.Files
	created       createdRecord
	maxUpload     int64
	createBackoff time.Duration
}

// New returns a Service that reads batches through hub.
func New(hub Hub, opts Options) *Service {
	s := &Service{
		hub: hub, credential: opts.Credential, heartbeat: opts.Heartbeat, maxAge: opts.MaxAge, log: opts.Logger, now: time.Now,
		callerOf: opts.Caller, up: opts.Upstream, poker: opts.Poker, files: opts.Files, maxUpload: opts.MaxUploadBytes,
		createBackoff: 250 * time.Millisecond,
	}
	if s.files == nil {
		s.files = ownership.NewFiles(0)
	}
	if s.maxUpload <= 0 {
		s.maxUpload = DefaultMaxUploadBytes
	}
	if s.credential == nil {
		s.credential = func(context.Context) string { return "" }
	}
	if s.heartbeat <= 0 {
		s.heartbeat = 15 * time.Second
	}
	if s.maxAge <= 0 {
		s.maxAge = time.Hour
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// GetBatch validates the batch id, fetches the batch and returns it. Errors
// are gRPC statuses from apierr.FromError: InvalidArgument for a bad id, and
// the upstream's failure mapped by its table otherwise.
func (s *Service) GetBatch(ctx context.Context, req *batchv1.GetBatchRequest) (*batchv1.GetBatchResponse, error) {
	id := req.GetBatchId()
	if err := upstream.ValidateBatchID(id); err != nil {
		return nil, apierr.FromError(err).Err()
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return nil, err
	}
	b, err := s.hub.Get(ctx, s.key(ctx, id))
	if err != nil {
		return nil, s.fail(ctx, "get batch", id, err)
	}
	if ownership.Restricted(c) {
		if !ownership.CanSee(c, b) {
			return nil, apierr.NotFound("batch", id).Err()
		}
		s.files.AddBatch(b)
	}
	return &batchv1.GetBatchResponse{Batch: b}, nil
}

// key returns the hub key for a call: the batch id and the credential the
// call is made with.
func (s *Service) key(ctx context.Context, id string) watch.Key {
	return watch.Key{Credential: s.credential(ctx), BatchID: id}
}

// fail maps err to a status, logs it and returns it as an error.
func (s *Service) fail(ctx context.Context, op, id string, err error) error {
	st := apierr.FromError(err)
	level := slog.LevelWarn
	switch st.Code() {
	case codes.Canceled, codes.NotFound, codes.InvalidArgument:
		level = slog.LevelDebug
	}
	s.log.LogAttrs(ctx, level, op+" failed",
		slog.String("batch_id", id), slog.String("code", st.Code().String()), slog.String("error", err.Error()))
	return st.Err()
}

// WatchBatch streams the batch: a SNAPSHOT at once, a CHANGE whenever a
// poll finds the batch different from the last one sent, a HEARTBEAT after
// Heartbeat of silence, and OK after the event carrying a terminal batch.
// Every SNAPSHOT and CHANGE carries the state's tag (wire.Tag, computed
// once per state for all its watchers).
//
// A request whose resume_tag is the tag of the current state resumes: the
// caller already has that state, so there is no SNAPSHOT. The stream then
// starts with a HEARTBEAT at once (so the caller knows it is live and up
// to date: a REST response gets its headers) and goes on as usual with
// heartbeats and CHANGEs. If that state is terminal, nothing new can come:
// the stream ends with OK at once, with no event at all. Any other
// resume_tag (stale, unknown, malformed) is ignored and the stream starts
// with the SNAPSHOT.
//
// It fails with the mapped upstream error when the first fetch fails or
// when the poller gives up (permanent error, failure budget), and with
// UNAVAILABLE at the stream's maximum age or on shutdown.
func (s *Service) WatchBatch(req *batchv1.WatchBatchRequest, stream batchv1.BatchService_WatchBatchServer) error {
	ctx := stream.Context()
	id := req.GetBatchId()
	if err := upstream.ValidateBatchID(id); err != nil {
		return apierr.FromError(err).Err()
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return err
	}
	sub, err := s.hub.Subscribe(ctx, s.key(ctx, id))
	if err != nil {
		return s.fail(ctx, "watch batch", id, err)
	}
	defer sub.Close()

	w := &watchStream{stream: stream, cache: &s.encoded}
	last, version, at := sub.LatestAt()
	if ownership.Restricted(c) {
		// A batch's owner never changes (the reserved metadata is the
		// gateway's): checking the first state is enough.
		if !ownership.CanSee(c, last) {
			return apierr.NotFound("batch", id).Err()
		}
		s.files.AddBatch(last)
	}
	if rt := req.GetResumeTag(); rt != "" && rt == s.encoded.Tag(last) {
		// The caller has this state already.
		if wire.IsTerminal(last) {
			return nil
		}
		if err := w.send(batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, nil, s.now()); err != nil {
			return err
		}
	} else {
		if err := w.send(batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, last, at); err != nil {
			return err
		}
		if wire.IsTerminal(last) {
			return nil
		}
	}

	heartbeat := time.NewTimer(s.heartbeat)
	defer heartbeat.Stop()
	maxAge := time.NewTimer(s.maxAge - rand.N(s.maxAge/10+1))
	defer maxAge.Stop()
	for {
		select {
		case <-sub.Updates():
		case <-sub.Done():
		case <-heartbeat.C:
			if err := w.send(batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, nil, s.now()); err != nil {
				return err
			}
			heartbeat.Reset(s.heartbeat)
			continue
		case <-maxAge.C:
			return s.fail(ctx, "watch batch", id, apierr.ErrStreamMaxAge)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		// A change, or the end of the subscription. Done is looked at
		// before the newest batch is read: a subscription ends only after
		// its last batch was published, so once done is seen, LatestAt is
		// final and the terminal batch cannot slip in between.
		done := false
		select {
		case <-sub.Done():
			done = true
		default:
		}
		// Send the newest batch first if it was not sent yet (the terminal
		// one, typically).
		if b, v, at := sub.LatestAt(); v != version {
			last, version = b, v
			if err := w.send(batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE, last, at); err != nil {
				return err
			}
			heartbeat.Reset(s.heartbeat)
			if wire.IsTerminal(last) {
				return nil
			}
		}
		if done {
			if err := sub.Err(); err != nil {
				return s.fail(ctx, "watch batch", id, err)
			}
			// Ended without an error: the terminal batch was sent above.
			return nil
		}
	}
}

// watchStream numbers and sends the events of one stream.
type watchStream struct {
	stream batchv1.BatchService_WatchBatchServer
	cache  *fanout.Cache
	seq    uint64
}

// send sends one event: b as observed at, with its tag (for heartbeats, b
// is nil, there is no tag and at is the send time).
func (w *watchStream) send(typ batchv1.WatchEventType, b *batchv1.Batch, at time.Time) error {
	w.seq++
	ev, err := w.cache.NewTaggedEvent(&batchv1.WatchBatchResponse{
		Type:             typ,
		Batch:            b,
		Terminal:         b != nil && wire.IsTerminal(b),
		Sequence:         w.seq,
		ObservedAtUnixMs: at.UnixMilli(),
	})
	if err != nil {
		return apierr.FromError(err).Err()
	}
	// The batch is encoded once for all its watchers (fanout.Codec).
	return w.stream.SendMsg(ev)
}
