// Package cluster lets the gateway's replicas act as one: it implements
// watch.Coordinator on NATS JetStream, so that one replica polls each batch
// (per credential) for the whole cluster and the others follow the states
// it publishes.
//
// One key-value bucket (Options.Bucket) holds two kinds of keys:
//
//   - lease.<cred>.<batch>: the replica id of the lease holder, the one
//     replica that polls the batch upstream. Taken with Create
//     (create-if-absent) with a per-key TTL of LeaseTTL, renewed by
//     compare-and-set on its revision before each poll and, on a timer of
//     its own, every LeaseTTL/3 while held, so that a fetch or a
//     Retry-After wait longer than LeaseTTL does not let it lapse; deleted
//     when its poller stops (and so at shutdown). A renewal that finds the
//     lease changed marks it lost: the next Acquire reports it not held
//     unless it can take it again. A lease whose holder died is reclaimed
//     by a follower once the holder's heartbeats stop (below), or expires
//     after LeaseTTL if nobody follows it; either way its delete marker
//     wakes the followers, which take it over at once.
//   - state.<cred>.<batch>: the batch's canonical JSON
//     (wire.MarshalBatch) and when the holder observed it, written by the
//     holder after every poll, with a per-key TTL of StateTTL. Each state
//     carries a fencing token, the writer's lease revision; revisions grow
//     across the bucket, so a current holder's token beats any former
//     holder's. Followers and Shared ignore a state whose token is lower
//     than the highest seen for its key, which a former holder whose lease
//     lapsed mid-poll may still write (Stats.StatesFenced).
//
// GetBatch (watch.Hub.Get, through watch.GetLeaser) is answered from the
// shared state when it is fresh, and otherwise coalesced cluster-wide
// through the same lease: the Get takes lease.<cred>.<batch> (Create, TTL
// LeaseTTL, not renewed) before calling the upstream, writes the result
// as the shared state, fenced by that lease's revision like a poller's,
// and deletes the lease. A Get that finds the lease held, by a poller or
// another replica's Get, follows the state key and waits, at most
// watch.Options.SharedGetWait (and half its caller's deadline), for a
// fresh state; it tries the lease again when it comes free without one,
// and calls the upstream by itself when none comes in time or NATS is
// unavailable. The pollers' lease, not one of its own, so that at any
// moment one replica writes each state key: a Get's state and a poll's
// are fenced against each other (a separate Get lease would have tokens
// unordered with the poller's, fencing out a holder's newer poll), and a
// Get waits for the poll the lease holder makes anyway after a poke. A
// poller elsewhere that finds a Get's lease follows its state and takes
// the lease over when it is deleted, or, if the replica died mid-call,
// once it is reclaimed or expires, as after a poller's death. When this replica's own
// poller holds the lease, the Get calls and publishes under it.
//
// <cred> is the watch.Key's credential identifier, which is already an
// HMAC of the caller's key ("_" for the gateway's own key), never the key;
// <batch> is the batch id. Anything outside the characters NATS keys allow
// is base64url-encoded behind a "=". Nothing secret is stored in NATS.
//
// Every replica says it is alive on the core NATS subject
// <bucket>.alive.<replica> every Heartbeat, and listens to the others'.
// A follower that has heard nothing from a lease's holder for DeadAfter
// deletes that lease, by compare-and-set on the revision it last saw (so
// a lease renewed or taken meanwhile stays), and the followers take it
// over: a holder killed without releasing its leases is replaced within
// DeadAfter plus a heartbeat, independently of LeaseTTL and of how
// promptly NATS expires keys. A holder that is alive but slow (a long
// fetch, a Retry-After wait) keeps beating and keeps its leases.
//
// Pokes travel on the core NATS subject <bucket>.poke.<batch>: every
// replica publishes there the pokes it gets (webhooks, cancels) and
// subscribes to the others', poking its own pollers, of which the lease
// holder's polls at once.
//
// NATS trouble never stops service: while NATS is unreachable, or the
// bucket cannot be set up, every Coordinator call fails fast and the hub's
// pollers poll by themselves; once NATS is back, they return to leases.
// A TLS handshake that fails (a server certificate the CA does not sign,
// a client certificate the server refuses) counts as NATS trouble too;
// TLS files that are missing or not PEM do not: New fails for them
// (Options.CAFile). Per-key TTLs need nats-server 2.11 or later.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

// ErrUnavailable is returned by Acquire while NATS or the bucket is not
// available: the caller polls by itself.
var ErrUnavailable = errors.New("cluster: NATS unavailable")

// FileError is New's error for a TLS file of Options that cannot be used:
// missing, unreadable, or not the PEM it should hold. It names the file,
// never its contents.
type FileError struct {
	// Option is the Options field of the file: "CAFile", "CertFile" or
	// "KeyFile".
	Option string
	// Err says what is wrong, with the file's path.
	Err error
}

func (e *FileError) Error() string { return "cluster: " + e.Option + ": " + e.Err.Error() }

func (e *FileError) Unwrap() error { return e.Err }

// Options configures a Cluster.
type Options struct {
	// URL is the NATS server URL, or several comma-separated. Required.
	URL string
	// CredsFile is a NATS credentials file; empty: none.
	CredsFile string
	// CAFile is a PEM bundle of the CAs that verify the NATS server's
	// certificate; empty: the system's roots. Setting it, or CertFile,
	// turns TLS on whatever the URL's scheme (nats.go's RootCAs and
	// ClientCert options do), so that a server without TLS is refused.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its private
	// key, for servers that require client certificates (mutual TLS); both
	// or neither.
	//
	// New reads CAFile, CertFile and KeyFile before it connects and fails
	// with a *FileError if one is missing or not PEM; nats.go reads them
	// again at every (re)connection, so that renewed files are picked up.
	CertFile, KeyFile string
	// Bucket names the key-value bucket and prefixes the poke subjects.
	// Default "batchgate".
	Bucket string
	// PollInterval is the hub's poll interval, from which the TTLs
	// follow. Default 30s.
	PollInterval time.Duration
	// LeaseTTL is how long a lease lives without renewal: the backstop
	// for a holder that died where no follower reclaims its lease (see
	// DeadAfter). Default twice PollInterval, at least 5s, so that a
	// holder stalled for a few short intervals (CPU throttling, a long
	// pause) keeps its leases. NATS counts TTLs in whole seconds, from 1s.
	LeaseTTL time.Duration
	// StateTTL is how long a shared state lives without a new poll.
	// Default twice LeaseTTL.
	StateTTL time.Duration
	// Heartbeat is how often the replica says it is alive. Default a
	// tenth of PollInterval, from 100ms to 1s.
	Heartbeat time.Duration
	// DeadAfter is how long a lease holder may stay silent before a
	// follower reclaims its leases. Default three Heartbeats.
	DeadAfter time.Duration
	// OpTimeout bounds each NATS operation. Default 2s.
	OpTimeout time.Duration
	// ReconnectWait is the wait between attempts to reach NATS. Default 1s.
	ReconnectWait time.Duration
	// ReplicaID names this replica in leases. Default: random.
	ReplicaID string
	// Logger receives the cluster's state changes. Nil discards.
	Logger *slog.Logger
	// NATSOptions are appended to the connection's options.
	NATSOptions []nats.Option
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.Bucket == "" {
		o.Bucket = "batchgate"
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 30 * time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = max(2*o.PollInterval, minLeaseTTL)
	}
	o.LeaseTTL = wholeSeconds(o.LeaseTTL)
	if o.StateTTL <= 0 {
		o.StateTTL = 2 * o.LeaseTTL
	}
	o.StateTTL = wholeSeconds(o.StateTTL)
	if o.Heartbeat <= 0 {
		o.Heartbeat = min(max(o.PollInterval/10, 100*time.Millisecond), time.Second)
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 3 * o.Heartbeat
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 2 * time.Second
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = time.Second
	}
	if o.ReplicaID == "" {
		var raw [8]byte
		_, _ = rand.Read(raw[:])
		o.ReplicaID = hex.EncodeToString(raw[:])
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// minLeaseTTL is the least default LeaseTTL.
const minLeaseTTL = 5 * time.Second

// wholeSeconds rounds d up to whole seconds, at least one: NATS's TTL unit.
func wholeSeconds(d time.Duration) time.Duration {
	return max(time.Second, (d + time.Second - 1).Truncate(time.Second))
}

// Stats are counters of a Cluster. Shared and Leases are current values;
// the others are totals since New.
type Stats struct {
	// Shared reports whether the replica uses the cluster's leases now
	// (false: NATS unavailable, every poller polls by itself).
	Shared bool
	// Leases is the number of leases this replica holds.
	Leases int64
	// Acquired counts leases taken (created or taken over), Lost leases
	// found taken by another replica at renewal.
	Acquired, Lost uint64
	// Reclaimed counts leases this replica deleted because their holder
	// had been silent for DeadAfter.
	Reclaimed uint64
	// GetLeases counts leases taken for one upstream call on behalf of a
	// Get (LeaseGet), not counted in Acquired.
	GetLeases uint64
	// Unavailable counts Acquire calls refused because NATS was
	// unavailable (each one a poll made alone).
	Unavailable uint64
	// StatesWritten and StatesReceived count shared states written by
	// this replica and received for its followers.
	StatesWritten, StatesReceived uint64
	// StatesFenced counts shared states ignored because their fencing
	// token was lower than one already seen for the batch: written by a
	// former holder after its lease lapsed.
	StatesFenced uint64
	// PokesSent and PokesReceived count pokes published to and received
	// from other replicas.
	PokesSent, PokesReceived uint64
	// Errors counts failed NATS operations.
	Errors uint64
}

// Cluster is a watch.Coordinator on NATS JetStream. Create it with New and
// release it with Close, after the hub it coordinates.
type Cluster struct {
	o      Options
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string // "$KV.<bucket>.": the subjects of the bucket's keys
	poke   string // "<bucket>.poke."
	alive  string // "<bucket>.alive."

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	wake   chan struct{} // 1-buffered: the connection changed

	kv atomic.Pointer[kvHandle] // nil while unavailable
	// failLogged is set once a failure to connect has been logged, and
	// cleared when the bucket is set up.
	failLogged atomic.Bool

	mu      sync.Mutex
	leases  map[string]*lease // lease key held → the lease
	follows map[string]map[*follower]struct{}
	fence   map[string]uint64 // followed "<cred>.<batch>" → highest state token seen
	onPoke  func(batchID string)
	// holders are the other replicas' leases of followed keys, by
	// "<cred>.<batch>", as last seen on the bucket's watch; heard is when
	// each replica was last heard from (a heartbeat, or a write of one of
	// its leases, since the bucket was set up).
	holders map[string]holder
	heard   map[string]time.Time

	acquired, lost, unavailable, written, received, fenced, reclaimed atomic.Uint64
	pokesSent, pokesReceived, errs, getLeases                         atomic.Uint64
}

// lease is one lease this replica holds. mu serializes its renewals
// (the timer's and Acquire's) and its release; rev is the revision of its
// last successful write.
type lease struct {
	mu   sync.Mutex
	rev  atomic.Uint64
	gone bool // released or lost: never renewed again; guarded by mu
}

func newLease(rev uint64) *lease {
	l := &lease{}
	l.rev.Store(rev)
	return l
}

// holder is another replica's lease as seen on the bucket's watch.
type holder struct {
	replica string
	rev     uint64
}

// kvHandle is the bucket while it is available.
type kvHandle struct{ kv jetstream.KeyValue }

// follower is one Follow registration.
type follower struct {
	fn func(*batchv1.Batch, time.Time)
}

var (
	_ watch.Coordinator = (*Cluster)(nil)
	_ watch.GetLeaser   = (*Cluster)(nil)
)

// New connects to NATS and returns the Cluster. An unreachable NATS is not
// an error: the Cluster keeps trying in the background and, until it
// succeeds, its hub polls by itself. New fails only for bad options (no
// URL, an unreadable credentials file, TLS files that are missing or not
// PEM: a *FileError).
func New(o Options) (*Cluster, error) {
	if o.URL == "" {
		return nil, errors.New("cluster: no NATS URL")
	}
	if err := checkTLSFiles(o); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		o:       o,
		log:     o.Logger,
		prefix:  "$KV." + o.Bucket + ".",
		poke:    o.Bucket + ".poke.",
		alive:   o.Bucket + ".alive.",
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		leases:  make(map[string]*lease),
		follows: make(map[string]map[*follower]struct{}),
		fence:   make(map[string]uint64),
		holders: make(map[string]holder),
		heard:   make(map[string]time.Time),
	}
	wake := func(*nats.Conn) { signal(c.wake) }
	opts := []nats.Option{
		nats.Name("batchgate " + o.ReplicaID),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ConnectHandler(wake),
		nats.ReconnectHandler(wake),
		nats.DisconnectErrHandler(func(nc *nats.Conn, _ error) { wake(nc) }),
		// A connection that never came up (NATS down at start, a TLS
		// handshake refused) is said once, with nats.go's reason.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil && c.kv.Load() == nil && !c.failLogged.Swap(true) {
				c.log.Warn("cluster: cannot reach NATS; every poller polls by itself until it can, retrying", slog.String("error", err.Error()))
			}
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	opts = append(opts, o.NATSOptions...)
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		cancel()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for subj, fn := range map[string]nats.MsgHandler{c.poke + "*": c.gotPoke, c.alive + "*": c.gotBeat} {
		if _, err = nc.Subscribe(subj, fn); err != nil {
			nc.Close()
			cancel()
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	c.wg.Add(3)
	go c.maintain()
	go c.renewLoop()
	go c.beatLoop()
	return c, nil
}

// OnPoke sets what a poke from another replica calls, typically the hub's
// PokeLocal. Set it before the first poke matters.
func (c *Cluster) OnPoke(fn func(batchID string)) {
	c.mu.Lock()
	c.onPoke = fn
	c.mu.Unlock()
}

// ReplicaID returns the id this replica holds leases under.
func (c *Cluster) ReplicaID() string { return c.o.ReplicaID }

// Close releases the leases still held, stops following and closes the
// NATS connection. Close the hub first: its pollers release their leases
// as they stop. Close is idempotent.
func (c *Cluster) Close() {
	c.closed.Do(c.close)
}

func (c *Cluster) close() {
	c.mu.Lock()
	held := c.leases
	c.leases = make(map[string]*lease)
	c.mu.Unlock()
	h := c.kv.Load()
	for key, l := range held {
		if rev, ok := l.drop(); ok && h != nil {
			c.deleteLease(h, key, rev)
		}
	}
	c.cancel()
	c.wg.Wait()
	c.nc.Close()
}

// Stats returns the cluster's counters.
func (c *Cluster) Stats() Stats {
	c.mu.Lock()
	n := len(c.leases)
	c.mu.Unlock()
	return Stats{
		Shared:         c.kv.Load() != nil,
		Leases:         int64(n),
		Acquired:       c.acquired.Load(),
		Lost:           c.lost.Load(),
		Reclaimed:      c.reclaimed.Load(),
		GetLeases:      c.getLeases.Load(),
		Unavailable:    c.unavailable.Load(),
		StatesWritten:  c.written.Load(),
		StatesReceived: c.received.Load(),
		StatesFenced:   c.fenced.Load(),
		PokesSent:      c.pokesSent.Load(),
		PokesReceived:  c.pokesReceived.Load(),
		Errors:         c.errs.Load(),
	}
}

// Status describes the cluster for readiness detail: whether leases are
// shared, and how many this replica holds.
func (c *Cluster) Status() string {
	s := c.Stats()
	if !s.Shared {
		return "cluster: NATS unavailable, polling alone"
	}
	return fmt.Sprintf("cluster: sharing leases as %s (%d held)", c.o.ReplicaID, s.Leases)
}

// maintain sets the bucket and its watcher up whenever NATS is connected
// and drops them when it is not, until Close. After a reconnect it sets
// them up anew: the server may have restarted.
func (c *Cluster) maintain() {
	defer c.wg.Done()
	var w jetstream.KeyWatcher
	var done chan struct{} // closed when w's dispatcher has returned
	var setupAt uint64     // the connection's reconnect count at the last setup
	stop := func() {
		if w != nil {
			_ = w.Stop()
			<-done
			w = nil
		}
	}
	defer stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-c.ctx.Done():
			c.kv.Store(nil)
			return
		case <-c.wake:
		case <-retry.C:
		}
		if !c.nc.IsConnected() {
			if c.kv.Swap(nil) != nil {
				c.log.Warn("cluster: NATS unreachable; every poller polls by itself until it is back")
			}
			stop()
			continue
		}
		reconnects := c.nc.Stats().Reconnects
		if c.kv.Load() != nil && reconnects == setupAt {
			continue
		}
		c.kv.Store(nil)
		stop()
		h, nw, err := c.setup()
		if err != nil {
			c.errs.Add(1)
			c.log.Warn("cluster: setting up the bucket failed; polling alone, retrying", slog.Any("error", err))
			retry.Reset(c.o.ReconnectWait)
			continue
		}
		setupAt = reconnects
		c.failLogged.Store(false)
		// The bucket may be new (the server lost its storage), its
		// revisions, and so the fencing tokens, starting again from 1.
		// Nobody has been heard from while this replica was away.
		c.mu.Lock()
		clear(c.fence)
		clear(c.holders)
		clear(c.heard)
		c.mu.Unlock()
		w = nw
		done = make(chan struct{})
		go c.dispatch(w, done)
		c.kv.Store(h)
		c.log.Info("cluster: sharing leases through NATS", slog.String("replica", c.o.ReplicaID), slog.String("bucket", c.o.Bucket))
	}
}

// setup creates (or updates) the bucket and starts watching it.
func (c *Cluster) setup() (*kvHandle, jetstream.KeyWatcher, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.o.OpTimeout)
	defer cancel()
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         c.o.Bucket,
		Description:    "batchgate leases and shared batch states",
		History:        1,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: max(time.Minute, c.o.LeaseTTL),
	})
	if err != nil {
		return nil, nil, err
	}
	w, err := kv.WatchAll(c.ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, nil, err
	}
	return &kvHandle{kv: kv}, w, nil
}

// dispatch hands the bucket's changes to the followers of their Keys.
func (c *Cluster) dispatch(w jetstream.KeyWatcher, done chan struct{}) {
	defer close(done)
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		key := e.Key()
		switch {
		case strings.HasPrefix(key, "lease."):
			id := key[len("lease."):]
			if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
				c.mu.Lock()
				delete(c.holders, id)
				c.mu.Unlock()
				c.notify(id, nil, time.Time{})
			} else {
				c.noteHolder(id, string(e.Value()), e.Revision(), true)
			}
		case strings.HasPrefix(key, "state.") && e.Operation() == jetstream.KeyValuePut:
			id := key[len("state."):]
			if !c.followed(id) {
				continue
			}
			b, at, tok, err := decodeState(e.Value())
			if err != nil {
				c.errs.Add(1)
				c.log.Warn("cluster: undecodable shared state", slog.Any("error", err))
				continue
			}
			if !c.admit(id, tok) {
				continue
			}
			c.received.Add(1)
			c.notify(id, b, at)
		}
	}
}

// followed reports whether any poller follows id ("<cred>.<batch>").
func (c *Cluster) followed(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.follows[id]) > 0
}

// admit reports whether a shared state of id with fencing token tok is
// to be used: not when a state with a higher token has been seen, as it
// was then written by a former holder whose lease has lapsed. It records
// tok as the highest seen while id is followed. A state without a token
// (written by an older version) is always admitted.
func (c *Cluster) admit(id string, tok uint64) bool {
	if tok == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok < c.fence[id] {
		c.fenced.Add(1)
		return false
	}
	if len(c.follows[id]) > 0 {
		c.fence[id] = tok
	}
	return true
}

// notify calls the followers of id.
func (c *Cluster) notify(id string, b *batchv1.Batch, at time.Time) {
	c.mu.Lock()
	fs := make([]*follower, 0, len(c.follows[id]))
	for f := range c.follows[id] {
		fs = append(fs, f)
	}
	c.mu.Unlock()
	for _, f := range fs {
		f.fn(b, at)
	}
}

// handle returns the bucket, nil when unavailable.
func (c *Cluster) handle() *kvHandle {
	if !c.nc.IsConnected() {
		return nil
	}
	return c.kv.Load()
}

// Acquire implements watch.Coordinator: it renews this replica's lease of
// k, or takes it if it is free.
func (c *Cluster) Acquire(ctx context.Context, k watch.Key) (bool, error) {
	h := c.handle()
	if h == nil {
		c.unavailable.Add(1)
		return false, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.OpTimeout)
	defer cancel()
	key := "lease." + id(k)
	c.mu.Lock()
	l := c.leases[key]
	c.mu.Unlock()
	if l != nil {
		held, err := c.renew(ctx, key, l)
		if held || err != nil {
			return held, err
		}
		// Lost (expired, perhaps taken by another replica): try to take
		// it again.
	}
	rev, err := h.kv.Create(ctx, key, []byte(c.o.ReplicaID), jetstream.KeyTTL(c.o.LeaseTTL))
	switch {
	case err == nil:
		c.mu.Lock()
		c.leases[key] = newLease(rev)
		c.mu.Unlock()
		c.acquired.Add(1)
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		c.learnHolder(ctx, h, key)
		return false, nil
	default:
		c.errs.Add(1)
		return false, err
	}
}

// learnHolder reads the lease key, held by another replica, if its holder
// is not known yet: a follower that came after the holder's last write
// (the holder may have died before this replica's first watcher came)
// can then reclaim it like any other.
func (c *Cluster) learnHolder(ctx context.Context, h *kvHandle, key string) {
	id := key[len("lease."):]
	c.mu.Lock()
	_, known := c.holders[id]
	c.mu.Unlock()
	if known {
		return
	}
	e, err := h.kv.Get(ctx, key)
	if err != nil {
		return // gone meanwhile (its delete wakes the followers), or NATS trouble
	}
	c.noteHolder(id, string(e.Value()), e.Revision(), false)
}

// renew renews l, the lease of key, by compare-and-set on its revision.
// When the lease has changed under us (expired, perhaps taken by another
// replica), l is lost: it leaves c.leases and renew reports it not held.
// An error (NATS trouble) leaves l as it is.
func (c *Cluster) renew(ctx context.Context, key string, l *lease) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone {
		return false, nil
	}
	pa, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: c.prefix + key, Data: []byte(c.o.ReplicaID)},
		jetstream.WithExpectLastSequencePerSubject(l.rev.Load()), jetstream.WithMsgTTL(c.o.LeaseTTL))
	if err == nil {
		l.rev.Store(pa.Sequence)
		return true, nil
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		c.errs.Add(1)
		return false, err
	}
	l.gone = true
	c.mu.Lock()
	if c.leases[key] == l {
		delete(c.leases, key)
	}
	c.mu.Unlock()
	c.lost.Add(1)
	c.log.Info("cluster: lease lost", slog.String("lease", key))
	return false, nil
}

// drop marks l released, waiting for a renewal under way, and returns its
// last revision; ok is false when it was already gone.
func (l *lease) drop() (rev uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone {
		return 0, false
	}
	l.gone = true
	return l.rev.Load(), true
}

// renewLoop renews the leases held every LeaseTTL/3, independently of the
// polls (a fetch or a Retry-After wait may outlast the TTL), until Close.
// A lease released meanwhile is not renewed; one found changed is lost.
func (c *Cluster) renewLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.o.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if c.handle() == nil {
			continue
		}
		c.mu.Lock()
		held := make(map[string]*lease, len(c.leases))
		for key, l := range c.leases {
			held[key] = l
		}
		c.mu.Unlock()
		for key, l := range held {
			ctx, cancel := context.WithTimeout(c.ctx, c.o.OpTimeout)
			_, err := c.renew(ctx, key, l)
			cancel()
			if err != nil {
				c.log.Debug("cluster: renewing a lease failed", slog.String("lease", key), slog.Any("error", err))
			}
			if c.ctx.Err() != nil {
				return
			}
		}
	}
}

// Release implements watch.Coordinator: it deletes k's lease if this
// replica holds it.
func (c *Cluster) Release(k watch.Key) {
	key := "lease." + id(k)
	c.mu.Lock()
	l := c.leases[key]
	delete(c.leases, key)
	c.mu.Unlock()
	if l == nil {
		return
	}
	rev, ok := l.drop()
	if !ok {
		return
	}
	if h := c.handle(); h != nil {
		c.deleteLease(h, key, rev)
	}
}

// deleteLease deletes a lease unless it has changed since rev (renewed,
// taken or gone), and reports whether it did. NATS trouble counts in the
// errors and is logged: the lease then expires.
func (c *Cluster) deleteLease(h *kvHandle, key string, rev uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.OpTimeout)
	defer cancel()
	err := h.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	var api *jetstream.APIError
	if err != nil && !errors.As(err, &api) {
		c.errs.Add(1)
		c.log.Debug("cluster: deleting a lease failed; it expires", slog.String("lease", key), slog.Any("error", err))
	}
	return err == nil
}

// sharedState is the value of a state key. Token is the fencing token:
// the writer's lease revision when it wrote the state. Revisions grow
// across the bucket, so a holder's token is higher than any of the former
// holders'.
type sharedState struct {
	At    time.Time       `json:"observed_at"`
	Batch json.RawMessage `json:"batch"`
	Token uint64          `json:"token,omitempty"`
}

func decodeState(v []byte) (*batchv1.Batch, time.Time, uint64, error) {
	var s sharedState
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, time.Time{}, 0, err
	}
	b, err := wire.DecodeBatch(s.Batch)
	if err != nil {
		return nil, time.Time{}, 0, err
	}
	return b, s.At, s.Token, nil
}

// Publish implements watch.Coordinator: it writes k's shared state,
// fenced by its lease's revision. It writes nothing when this replica no
// longer holds k's lease (lost while polling).
func (c *Cluster) Publish(k watch.Key, b *batchv1.Batch, at time.Time) {
	c.mu.Lock()
	l := c.leases["lease."+id(k)]
	c.mu.Unlock()
	if l == nil {
		return
	}
	c.writeState(k, b, at, l.rev.Load())
}

// writeState writes b, observed at at, as k's shared state with fencing
// token tok.
func (c *Cluster) writeState(k watch.Key, b *batchv1.Batch, at time.Time, tok uint64) {
	if c.handle() == nil {
		return
	}
	raw, err := wire.MarshalBatch(b)
	if err != nil {
		c.errs.Add(1)
		return
	}
	v, err := json.Marshal(sharedState{At: at, Batch: raw, Token: tok})
	if err != nil {
		c.errs.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.o.OpTimeout)
	defer cancel()
	if _, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: c.prefix + "state." + id(k), Data: v}, jetstream.WithMsgTTL(c.o.StateTTL)); err != nil {
		c.errs.Add(1)
		c.log.Debug("cluster: writing a shared state failed", slog.Any("error", err))
		return
	}
	c.written.Add(1)
}

// LeaseGet implements watch.GetLeaser: it takes k's lease, the pollers'
// lease.<cred>.<batch>, for one upstream call on behalf of a Get, with
// the pollers' TTL and no renewal. done writes the call's result as k's
// shared state, fenced by the lease's revision, and deletes the lease
// (unless it has changed since). When this replica's poller holds the
// lease, done publishes under it and leaves it held. A nil done means
// another replica (its poller or its Get) holds the lease.
func (c *Cluster) LeaseGet(ctx context.Context, k watch.Key) (func(*batchv1.Batch, time.Time), error) {
	h := c.handle()
	if h == nil {
		return nil, ErrUnavailable
	}
	key := "lease." + id(k)
	c.mu.Lock()
	held := c.leases[key] != nil
	c.mu.Unlock()
	if held {
		return func(b *batchv1.Batch, at time.Time) {
			if b != nil {
				c.Publish(k, b, at)
			}
		}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.OpTimeout)
	defer cancel()
	rev, err := h.kv.Create(ctx, key, []byte(c.o.ReplicaID), jetstream.KeyTTL(c.o.LeaseTTL))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return nil, nil
	case err != nil:
		c.errs.Add(1)
		return nil, err
	}
	c.getLeases.Add(1)
	var once sync.Once
	return func(b *batchv1.Batch, at time.Time) {
		once.Do(func() {
			if b != nil {
				c.writeState(k, b, at, rev)
			}
			if h := c.handle(); h != nil {
				c.deleteLease(h, key, rev)
			}
		})
	}, nil
}

// Shared implements watch.Coordinator: it reads k's shared state.
func (c *Cluster) Shared(ctx context.Context, k watch.Key) (*batchv1.Batch, time.Time, bool) {
	h := c.handle()
	if h == nil {
		return nil, time.Time{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.OpTimeout)
	defer cancel()
	e, err := h.kv.Get(ctx, "state."+id(k))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			c.errs.Add(1)
		}
		return nil, time.Time{}, false
	}
	b, at, tok, err := decodeState(e.Value())
	if err != nil {
		c.errs.Add(1)
		return nil, time.Time{}, false
	}
	if !c.admit(id(k), tok) {
		return nil, time.Time{}, false
	}
	return b, at, true
}

// Follow implements watch.Coordinator.
func (c *Cluster) Follow(k watch.Key, fn func(*batchv1.Batch, time.Time)) func() {
	key := id(k)
	f := &follower{fn: fn}
	c.mu.Lock()
	m := c.follows[key]
	if m == nil {
		m = make(map[*follower]struct{})
		c.follows[key] = m
	}
	m[f] = struct{}{}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.follows[key], f)
		if len(c.follows[key]) == 0 {
			delete(c.follows, key)
			delete(c.fence, key)
			delete(c.holders, key)
		}
		c.mu.Unlock()
	}
}

// Poke implements watch.Coordinator: it publishes the poke to the other
// replicas, when NATS is connected.
func (c *Cluster) Poke(batchID string) {
	if !c.nc.IsConnected() {
		return
	}
	if err := c.nc.Publish(c.poke+token(batchID), []byte(c.o.ReplicaID)); err != nil {
		c.errs.Add(1)
		return
	}
	c.pokesSent.Add(1)
}

// noteHolder records that replica holds the lease of the followed id at
// revision rev. written says the lease was written just now (seen on the
// bucket's watch): only the holder writes its lease, so a take or a
// renewal is heard from it as a heartbeat is, and a holder whose beats are
// late but whose renewals are not keeps its leases. A lease only read
// (written at some unknown time) fills in what is not known yet, its
// holder's silence counted from now.
func (c *Cluster) noteHolder(id, replica string, rev uint64, written bool) {
	if replica == c.o.ReplicaID {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.follows[id]) == 0 {
		return
	}
	if _, known := c.holders[id]; written || !known {
		c.holders[id] = holder{replica: replica, rev: rev}
	}
	if _, ok := c.heard[replica]; written || !ok {
		c.heard[replica] = time.Now()
	}
}

// gotBeat records a heartbeat of another replica.
func (c *Cluster) gotBeat(m *nats.Msg) {
	replica, ok := untoken(strings.TrimPrefix(m.Subject, c.alive))
	if !ok || replica == c.o.ReplicaID {
		return
	}
	c.mu.Lock()
	c.heard[replica] = time.Now()
	c.mu.Unlock()
}

// beatLoop says this replica is alive every Heartbeat and reclaims the
// leases of followed keys whose holders have been silent for DeadAfter,
// until Close.
func (c *Cluster) beatLoop() {
	defer c.wg.Done()
	subj := c.alive + token(c.o.ReplicaID)
	t := time.NewTicker(c.o.Heartbeat)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		stalled := now.Sub(last) > 2*c.o.Heartbeat
		last = now
		if !c.nc.IsConnected() {
			continue
		}
		if err := c.nc.Publish(subj, nil); err != nil {
			c.errs.Add(1)
		}
		if stalled {
			// This replica was paused itself (CPU starved, stopped): the
			// beats that came meanwhile may not be read yet. Hear everyone
			// anew rather than take their silence for death.
			c.mu.Lock()
			for r := range c.heard {
				c.heard[r] = now
			}
			c.mu.Unlock()
			continue
		}
		if h := c.handle(); h != nil {
			c.reclaim(h)
		}
	}
}

// reclaim deletes the leases of followed keys whose holder has not been
// heard from for DeadAfter, each unless it changed since it was seen. It
// forgets replicas silent for longer than a lease lives: none of their
// leases is left, and one that comes back is heard anew.
func (c *Cluster) reclaim(h *kvHandle) {
	now := time.Now()
	type stale struct {
		id string
		holder
		silent time.Duration
	}
	var dead []stale
	c.mu.Lock()
	for id, ho := range c.holders {
		if silent := now.Sub(c.heard[ho.replica]); silent > c.o.DeadAfter {
			dead = append(dead, stale{id, ho, silent})
			delete(c.holders, id) // once; a new lease is seen anew
		}
	}
	for r, at := range c.heard {
		if now.Sub(at) > c.o.LeaseTTL+c.o.DeadAfter {
			delete(c.heard, r)
		}
	}
	c.mu.Unlock()
	for _, d := range dead {
		// Not deleted when renewed or taken meanwhile: not stale after all.
		if c.deleteLease(h, "lease."+d.id, d.rev) {
			c.reclaimed.Add(1)
			c.log.Info("cluster: reclaimed the lease of a silent replica", slog.String("lease", "lease."+d.id),
				slog.String("holder", d.replica), slog.Duration("silent_for", d.silent))
		}
	}
}

// gotPoke handles a poke from another replica (its own are ignored).
func (c *Cluster) gotPoke(m *nats.Msg) {
	if string(m.Data) == c.o.ReplicaID {
		return
	}
	batchID, ok := untoken(strings.TrimPrefix(m.Subject, c.poke))
	if !ok {
		return
	}
	c.pokesReceived.Add(1)
	c.mu.Lock()
	fn := c.onPoke
	c.mu.Unlock()
	if fn != nil {
		fn(batchID)
	}
}

// id is k's key suffix: "<cred>.<batch>".
func id(k watch.Key) string {
	cred := "_"
	if k.Credential != "" {
		cred = token(k.Credential)
	}
	return cred + "." + token(k.BatchID)
}

// token returns s as one NATS subject token: itself when it is made of
// letters, digits, _ and - only (batch ids, hex credential HMACs), else
// "=" and its base64url encoding. "_" alone is always encoded, as it
// stands for the empty credential.
func token(s string) string {
	safe := s != "" && s != "_"
	for i := 0; i < len(s) && safe; i++ {
		ch := s[i]
		safe = ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-'
	}
	if safe {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// untoken reverses token.
func untoken(t string) (string, bool) {
	if rest, ok := strings.CutPrefix(t, "="); ok {
		b, err := base64.RawURLEncoding.DecodeString(rest)
		return string(b), err == nil
	}
	return t, t != ""
}

// signal makes ch ready without blocking.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
