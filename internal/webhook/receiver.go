package webhook

import (
	"bytes"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/batchgate/batchgate/internal/upstream"
)

// Path is the route of the webhook endpoint (POST).
const Path = "/v1/webhooks"

// MaxBodyBytes caps a delivery's body; a larger one is refused as
// malformed.
const MaxBodyBytes = 1 << 20

// Poker makes the shared pollers of a batch, every credential's, poll at
// once and drops its cached results; *watch.Hub satisfies it. It returns
// how many pollers it poked and must not block.
type Poker interface {
	PokeBatch(batchID string) int
}

// BatchEventTypes are the event types that poke their batch.
var BatchEventTypes = []string{"batch.completed", "batch.failed", "batch.expired", "batch.cancelled"}

func isBatchEvent(t string) bool {
	switch t {
	case "batch.completed", "batch.failed", "batch.expired", "batch.cancelled":
		return true
	}
	return false
}

// Options configures a Receiver.
type Options struct {
	// Verifier checks deliveries. Required.
	Verifier *Verifier
	// Poker is poked for each accepted batch event. Required.
	Poker Poker
	// Metrics, when set, counts deliveries and records the arrivals whose
	// first watcher delivery it measures.
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a warning when pokes are dropped; nil discards.
	Logger *slog.Logger
	// QueueSize bounds the pokes accepted but not yet made; beyond it
	// pokes are dropped (and counted). Default 4096.
	QueueSize int
	// MaxIDs bounds the webhook ids remembered for deduplication.
	// Default 100,000.
	MaxIDs int
}

// Receiver is the webhook endpoint: an http.Handler serving only
// POST /v1/webhooks and GET /healthz. Create it with NewReceiver and stop
// its worker with Close.
type Receiver struct {
	v     *Verifier
	poker Poker
	m     *Metrics
	now   func() time.Time
	log   *slog.Logger
	mux   *http.ServeMux

	queue chan poke
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	bufs sync.Pool // of *bytes.Buffer

	mu     sync.Mutex
	seen   map[string]time.Time // webhook id -> when it may be forgotten
	maxIDs int
}

// poke is an accepted batch event waiting for the worker.
type poke struct {
	batchID string
	arrived time.Time
}

// NewReceiver returns a Receiver of o and starts its worker.
func NewReceiver(o Options) *Receiver {
	if o.Verifier == nil || o.Poker == nil {
		panic("webhook: NewReceiver needs a Verifier and a Poker")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxIDs <= 0 {
		o.MaxIDs = 100_000
	}
	r := &Receiver{
		v: o.Verifier, poker: o.Poker, m: o.Metrics, now: o.Now, log: o.Logger,
		queue:  make(chan poke, o.QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		seen:   make(map[string]time.Time),
		maxIDs: o.MaxIDs,
	}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	r.mux = http.NewServeMux()
	r.mux.HandleFunc("POST "+Path, r.serveWebhook)
	r.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	go r.work()
	return r
}

// ServeHTTP serves the receiver's two routes; anything else is 404 or 405.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }

// Close stops the worker, dropping the pokes not made yet, and waits for
// it. Deliveries after Close are still answered but poke nothing.
// Idempotent.
func (r *Receiver) Close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

// Outcomes of a delivery, the outcome label of
// batchgate_webhooks_received_total.
const (
	OutcomeAccepted     = "accepted"
	OutcomeDuplicate    = "duplicate"
	OutcomeBadSignature = "bad_signature"
	OutcomeStale        = "stale"
	OutcomeMalformed    = "malformed"
	OutcomeUnknownType  = "unknown_type"
)

// serveWebhook reads the capped body first, then verifies, deduplicates,
// answers and queues the poke.
func (r *Receiver) serveWebhook(w http.ResponseWriter, req *http.Request) {
	arrived := r.now()
	buf := r.bufs.Get().(*bytes.Buffer)
	defer r.putBuf(buf)
	buf.Reset()
	_, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, MaxBodyBytes))
	if err != nil {
		// Too large, or the client went away: nothing is verified.
		r.refuse(w, OutcomeMalformed)
		return
	}
	ev, err := r.v.Verify(req.Header, buf.Bytes(), arrived)
	if err != nil {
		switch ReasonOf(err) {
		case ReasonBadSignature, ReasonMissingHeader:
			r.refuse(w, OutcomeBadSignature)
		case ReasonStale:
			r.refuse(w, OutcomeStale)
		default:
			r.refuse(w, OutcomeMalformed)
		}
		return
	}
	batch := isBatchEvent(ev.Type)
	if batch && upstream.ValidateBatchID(ev.Data.ID) != nil {
		r.refuse(w, OutcomeMalformed)
		return
	}
	typ := ev.Type
	if !batch {
		typ = "other" // an unknown type is not a label value of its own
	}
	if !r.firstDelivery(req.Header[HeaderID][0], req.Header[HeaderTimestamp][0], arrived) {
		r.m.count(typ, OutcomeDuplicate)
		ok(w)
		return
	}
	if !batch {
		r.m.count(typ, OutcomeUnknownType)
		ok(w)
		return
	}
	r.m.count(typ, OutcomeAccepted)
	ok(w)
	select {
	case r.queue <- poke{batchID: ev.Data.ID, arrived: arrived}:
	default:
		r.m.dropped()
		r.log.Warn("webhook: poke queue full; dropping a poke (the batch's next poll will see the change)")
	}
}

// putBuf returns buf to the pool unless it grew past the cap.
func (r *Receiver) putBuf(buf *bytes.Buffer) {
	if buf.Cap() <= 2*MaxBodyBytes {
		r.bufs.Put(buf)
	}
}

func ok(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }

// refuse answers 400 with a body that says nothing of why.
func (r *Receiver) refuse(w http.ResponseWriter, outcome string) {
	r.m.count("none", outcome)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte("bad request\n"))
}

// firstDelivery records the webhook id and reports whether it is new. An
// id is remembered until its timestamp is out of Tolerance (when a replay
// is refused as stale anyway). ts is the verified timestamp header.
func (r *Receiver) firstDelivery(id, ts string, now time.Time) bool {
	sec, _ := strconv.ParseInt(ts, 10, 64) // verified: an integer within Tolerance of now
	forget := time.Unix(sec, 0).Add(Tolerance + time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	if until, ok := r.seen[id]; ok && now.Before(until) {
		return false
	}
	if len(r.seen) >= r.maxIDs {
		for k, until := range r.seen {
			if !now.Before(until) {
				delete(r.seen, k)
			}
		}
		// Still full: forget arbitrary ids (a repeat of one only pokes
		// again, which is harmless).
		for k := range r.seen {
			if len(r.seen) < r.maxIDs {
				break
			}
			delete(r.seen, k)
		}
	}
	r.seen[id] = forget
	return true
}

// work makes the queued pokes, after their deliveries were answered.
func (r *Receiver) work() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case p := <-r.queue:
			r.m.arrived(p.batchID, p.arrived)
			if r.poker.PokeBatch(p.batchID) == 0 {
				// Nobody watches it: no delivery to measure.
				r.m.forget(p.batchID, p.arrived)
			}
		}
	}
}
