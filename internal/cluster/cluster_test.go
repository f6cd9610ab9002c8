package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/cluster"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m)
}

// patience bounds every wait; it only matters when a test is about to fail.
const patience = 15 * time.Second

// natsServer is an in-process NATS server with JetStream on a directory
// that outlives its restarts.
type natsServer struct {
	t    *testing.T
	dir  string
	port int
	s    *server.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir(), port: -1}
	n.start()
	n.port = n.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(patience) {
		n.t.Fatal("nats-server not ready")
	}
	n.s = s
}

func (n *natsServer) stop() {
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// credKey carries a fetch's credential, as the gateway's contexts carry
// the API key.
type credKey struct{}

func pollContext(_ context.Context, k watch.Key) context.Context {
	return context.WithValue(context.Background(), credKey{}, k.Credential)
}

// fakeUpstream holds one batch per credential and id and counts fetches
// per replica.
type fakeUpstream struct {
	mu      sync.Mutex
	batches map[string]*batchv1.Batch
	calls   map[string]int
	delay   map[string]time.Duration // per replica: how long its fetches take
}

func newUpstream() *fakeUpstream {
	return &fakeUpstream{batches: make(map[string]*batchv1.Batch), calls: make(map[string]int), delay: make(map[string]time.Duration)}
}

func batchOf(id, cred string, completed int64, status batchv1.BatchStatus) *batchv1.Batch {
	upstreamStatus := "in_progress"
	if wire.IsTerminalStatus(status) {
		upstreamStatus = "completed"
	}
	return &batchv1.Batch{
		Id: id, Object: "batch", Endpoint: "/v1/chat/completions", Status: status, UpstreamStatus: upstreamStatus,
		InputFileId: "file_in", CompletionWindow: "24h", CreatedAt: proto.Int64(1710000000),
		RequestCounts: &batchv1.RequestCounts{Total: 10, Completed: completed},
		Metadata:      &batchv1.Metadata{Pairs: map[string]string{"cred": cred}},
	}
}

// set makes the upstream answer completed requests (and status) for the
// batch of the credential.
func (u *fakeUpstream) set(cred, id string, completed int64, status batchv1.BatchStatus) {
	u.mu.Lock()
	u.batches[cred+"|"+id] = batchOf(id, cred, completed, status)
	u.mu.Unlock()
}

func (u *fakeUpstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.calls {
		n += c
	}
	return n
}

// slow makes the replica's fetches take d.
func (u *fakeUpstream) slow(replica string, d time.Duration) {
	u.mu.Lock()
	u.delay[replica] = d
	u.mu.Unlock()
}

func (u *fakeUpstream) callsOf(replica string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[replica]
}

// fetcher is one replica's view of the upstream.
type fetcher struct {
	u       *fakeUpstream
	replica string
}

func (f fetcher) GetBatch(ctx context.Context, id string) (*batchv1.Batch, error) {
	cred, _ := ctx.Value(credKey{}).(string)
	f.u.mu.Lock()
	d := f.u.delay[f.replica]
	f.u.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.u.mu.Lock()
	defer f.u.mu.Unlock()
	f.u.calls[f.replica]++
	b, ok := f.u.batches[cred+"|"+id]
	if !ok {
		b = batchOf(id, cred, 0, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
		f.u.batches[cred+"|"+id] = b
	}
	return b, nil
}

type replica struct {
	name string
	hub  *watch.Hub
	cl   *cluster.Cluster
	once sync.Once
}

// close closes the hub, then the cluster, as the gateway does.
func (r *replica) close() {
	r.once.Do(func() {
		r.hub.Close()
		r.cl.Close()
	})
}

// newReplica starts a replica named name; mutate changes its cluster
// options.
func newReplica(t *testing.T, n *natsServer, u *fakeUpstream, name string, interval time.Duration, mutate ...func(*cluster.Options)) *replica {
	t.Helper()
	o := cluster.Options{
		URL: n.url(), Bucket: "test", PollInterval: interval, ReplicaID: name,
		OpTimeout: time.Second, ReconnectWait: 50 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&o)
	}
	cl, err := cluster.New(o)
	if err != nil {
		t.Fatal(err)
	}
	hub := watch.New(fetcher{u: u, replica: name}, watch.Options{
		PollInterval: interval, PollContext: pollContext, Coordinator: cl,
	})
	cl.OnPoke(func(id string) { hub.PokeLocal(id) })
	r := &replica{name: name, hub: hub, cl: cl}
	t.Cleanup(r.close)
	waitFor(t, "cluster shared on "+name, func() bool { return cl.Stats().Shared })
	return r
}

func replicas(t *testing.T, n *natsServer, u *fakeUpstream, count int, interval time.Duration) []*replica {
	rs := make([]*replica, count)
	for i := range rs {
		rs[i] = newReplica(t, n, u, fmt.Sprintf("r%d", i), interval)
	}
	return rs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func subscribe(t *testing.T, r *replica, k watch.Key) *watch.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	s, err := r.hub.Subscribe(ctx, k)
	if err != nil {
		t.Fatalf("%s: Subscribe(%v): %v", r.name, k, err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitCompleted waits until s's latest batch has the given completed count.
func waitCompleted(t *testing.T, s *watch.Subscription, completed int64, what string) *batchv1.Batch {
	t.Helper()
	timeout := time.After(patience)
	for {
		b, _ := s.Latest()
		if b.GetRequestCounts().GetCompleted() == completed {
			return b
		}
		select {
		case <-s.Updates():
		case <-s.Done():
			if b, _ := s.Latest(); b.GetRequestCounts().GetCompleted() == completed {
				return b
			}
			t.Fatalf("%s: ended (%v) before completed=%d", what, s.Err(), completed)
		case <-timeout:
			t.Fatalf("%s: timed out waiting for completed=%d (have %d)", what, completed, b.GetRequestCounts().GetCompleted())
		}
	}
}

// waitTerminal waits until s ends with a nil Err and a terminal batch.
func waitTerminal(t *testing.T, s *watch.Subscription, what string) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(patience):
		t.Fatalf("%s: no terminal event", what)
	}
	if b, _ := s.Latest(); s.Err() != nil || !wire.IsTerminal(b) {
		t.Fatalf("%s: ended with %v, latest %v", what, s.Err(), b.GetStatus())
	}
}

func holders(rs []*replica) (held []*replica) {
	for _, r := range rs {
		if r.cl.Stats().Leases > 0 {
			held = append(held, r)
		}
	}
	return held
}

func TestStateRoundTrip(t *testing.T) {
	b := batchOf("batch_1", "c", 3, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	raw, err := wire.MarshalBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeBatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, b) {
		t.Fatalf("round trip:\n got %v\nwant %v", got, b)
	}
}

// Three replicas watching the same batches poll each once per interval
// between them, and every watcher on every replica gets every change and
// the terminal event.
func TestOnePollerAcrossReplicas(t *testing.T) {
	const interval = 100 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	rs := replicas(t, n, u, 3, interval)
	const batches = 5
	subs := make(map[*replica][]*watch.Subscription)
	for i := range batches {
		k := watch.Key{BatchID: fmt.Sprintf("batch_%d", i)}
		for _, r := range rs {
			subs[r] = append(subs[r], subscribe(t, r, k))
		}
	}
	waitFor(t, "all leases taken", func() bool {
		total := int64(0)
		for _, r := range rs {
			total += r.cl.Stats().Leases
		}
		return total == batches
	})

	before, start := u.total(), time.Now()
	time.Sleep(20 * interval)
	polls, intervals := u.total()-before, float64(time.Since(start))/float64(interval)
	// One poll per batch and interval (jitter ±10%), against three
	// without the cluster.
	if limit := int(float64(batches)*intervals*1.3) + 2*batches; polls > limit || polls == 0 {
		t.Fatalf("%d upstream polls in %.1f intervals for %d batches, want about %.0f (at most %d)", polls, intervals, batches, float64(batches)*intervals, limit)
	}
	t.Logf("%d upstream polls in %.1f intervals for %d batches on 3 replicas", polls, intervals, batches)

	for i := range batches {
		u.set("", fmt.Sprintf("batch_%d", i), 5, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	}
	for _, r := range rs {
		for i, s := range subs[r] {
			waitCompleted(t, s, 5, fmt.Sprintf("%s batch_%d", r.name, i))
		}
	}
	followed := uint64(0)
	for _, r := range rs {
		followed += r.hub.Stats().Followed
	}
	if followed == 0 {
		t.Fatal("no replica followed a shared state")
	}
	for i := range batches {
		u.set("", fmt.Sprintf("batch_%d", i), 10, batchv1.BatchStatus_BATCH_STATUS_COMPLETED)
	}
	for _, r := range rs {
		for i, s := range subs[r] {
			waitTerminal(t, s, fmt.Sprintf("%s batch_%d", r.name, i))
		}
	}
	waitFor(t, "leases released after the terminal batches", func() bool { return len(holders(rs)) == 0 })
}

// The holder's shutdown releases its leases; another replica with
// watchers takes over, and its watchers miss neither a change nor the
// terminal event.
func TestTakeoverOnShutdown(t *testing.T) {
	const interval = 100 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	rs := replicas(t, n, u, 3, interval)
	k := watch.Key{BatchID: "batch_takeover"}
	subs := make(map[*replica]*watch.Subscription)
	for _, r := range rs {
		subs[r] = subscribe(t, r, k)
	}
	waitFor(t, "one holder", func() bool { return len(holders(rs)) == 1 })
	old := holders(rs)[0]
	old.close()
	if err := subs[old].Err(); err == nil {
		t.Fatal("the closed replica's subscription is still live")
	}
	var rest []*replica
	for _, r := range rs {
		if r != old {
			rest = append(rest, r)
		}
	}
	waitFor(t, "a new holder", func() bool { return len(holders(rest)) == 1 })
	u.set("", k.BatchID, 7, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	for _, r := range rest {
		waitCompleted(t, subs[r], 7, r.name)
	}
	u.set("", k.BatchID, 10, batchv1.BatchStatus_BATCH_STATUS_COMPLETED)
	for _, r := range rest {
		waitTerminal(t, subs[r], r.name)
	}
}

// A holder that dies without releasing its lease (its NATS connection
// gone) falls silent; a follower reclaims its lease long before the lease
// TTL (here an hour) and takes over.
func TestTakeoverOnSilence(t *testing.T) {
	const interval = 200 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	hourLease := func(o *cluster.Options) { o.LeaseTTL = time.Hour }
	a := newReplica(t, n, u, "a", interval, hourLease)
	b := newReplica(t, n, u, "b", interval, hourLease)
	c := newReplica(t, n, u, "c", interval, hourLease)
	k := watch.Key{BatchID: "batch_silent"}
	subscribe(t, a, k)
	waitFor(t, "a holds", func() bool { return a.cl.Stats().Leases == 1 })
	sb, sc := subscribe(t, b, k), subscribe(t, c, k)
	// While a beats, its lease stays a's, whatever the followers see.
	waitFor(t, "b and c follow a's states", func() bool { return b.cl.Stats().StatesReceived >= 3 && c.cl.Stats().StatesReceived >= 3 })
	for _, r := range []*replica{b, c} {
		if st := r.cl.Stats(); st.Reclaimed != 0 || st.Leases != 0 {
			t.Fatalf("%s while a is alive: %+v", r.name, st)
		}
	}
	a.cl.Abandon()
	waitFor(t, "b or c takes over", func() bool { return len(holders([]*replica{b, c})) == 1 })
	if got := b.cl.Stats().Reclaimed + c.cl.Stats().Reclaimed; got < 1 {
		t.Errorf("leases reclaimed by b and c: %d, want at least 1", got)
	}
	u.set("", k.BatchID, 10, batchv1.BatchStatus_BATCH_STATUS_COMPLETED)
	waitTerminal(t, sb, "b")
	waitTerminal(t, sc, "c")
}

// A holder that died before any other replica followed its batch (so no
// follower saw its lease written) is reclaimed all the same, long before
// its hour-long lease TTL, once a replica that needs the batch has found
// the lease taken and heard nothing from its holder.
func TestTakeoverOfLeaseFoundLate(t *testing.T) {
	const interval = 200 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	hourLease := func(o *cluster.Options) { o.LeaseTTL = time.Hour }
	a := newReplica(t, n, u, "a", interval, hourLease)
	b := newReplica(t, n, u, "b", interval, hourLease)
	k := watch.Key{BatchID: "batch_found_late"}
	subscribe(t, a, k)
	waitFor(t, "a holds", func() bool { return a.cl.Stats().Leases == 1 })
	a.cl.Abandon()
	sb := subscribe(t, b, k)
	waitFor(t, "b takes over", func() bool { return b.cl.Stats().Leases == 1 })
	if st := b.cl.Stats(); st.Reclaimed != 1 {
		t.Errorf("b reclaimed %d leases, want 1", st.Reclaimed)
	}
	u.set("", k.BatchID, 10, batchv1.BatchStatus_BATCH_STATUS_COMPLETED)
	waitTerminal(t, sb, "b")
}

// A replica that has stopped beating is forgotten once it has been silent
// for longer than a lease lives, so that replicas come and gone (every
// rolling deploy names new ones) do not pile up.
func TestSilentReplicaForgotten(t *testing.T) {
	const interval = 200 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	shortLease := func(o *cluster.Options) { o.LeaseTTL = time.Second }
	a := newReplica(t, n, u, "a", interval, shortLease)
	b := newReplica(t, n, u, "b", interval, shortLease)
	waitFor(t, "a hears b", func() bool { return a.cl.Heard() == 1 })
	b.close()
	waitFor(t, "a forgets b", func() bool { return a.cl.Heard() == 0 })
}

// A holder that dies without releasing its lease, where no follower
// listens for heartbeats long enough to call it silent (DeadAfter an
// hour), loses it at the lease TTL; a follower takes over.
func TestTakeoverOnExpiry(t *testing.T) {
	const interval = 200 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	a := newReplica(t, n, u, "a", interval, func(o *cluster.Options) { o.LeaseTTL = time.Second })
	b := newReplica(t, n, u, "b", interval, func(o *cluster.Options) { o.DeadAfter = time.Hour })
	k := watch.Key{BatchID: "batch_expiry"}
	sa := subscribe(t, a, k)
	waitFor(t, "a holds", func() bool { return a.cl.Stats().Leases == 1 })
	sb := subscribe(t, b, k)
	// a dies: its polls and its lease renewals stop; nothing is released.
	a.cl.Abandon()
	before := u.callsOf("b")
	waitFor(t, "b takes over", func() bool { return b.cl.Stats().Leases == 1 && u.callsOf("b") > before })
	if st := b.cl.Stats(); st.Reclaimed != 0 {
		t.Errorf("b reclaimed %d leases with DeadAfter an hour", st.Reclaimed)
	}
	u.set("", k.BatchID, 10, batchv1.BatchStatus_BATCH_STATUS_COMPLETED)
	waitTerminal(t, sb, "b")
	_ = sa
}

// A poke on a replica that does not hold the lease makes the holder poll
// at once, long before its next poll.
func TestPokeReachesHolder(t *testing.T) {
	const interval = time.Minute // no poll but the first and the poked ones
	n := startNATS(t)
	u := newUpstream()
	rs := replicas(t, n, u, 2, interval)
	k := watch.Key{BatchID: "batch_poke"}
	subs := make(map[*replica]*watch.Subscription)
	for _, r := range rs {
		subs[r] = subscribe(t, r, k)
	}
	waitFor(t, "one holder", func() bool { return len(holders(rs)) == 1 })
	holder := holders(rs)[0]
	other := rs[0]
	if other == holder {
		other = rs[1]
	}
	if polls := u.total(); polls != 1 {
		t.Fatalf("%d upstream polls, want 1", polls)
	}
	u.set("", k.BatchID, 3, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	other.hub.PokeBatch(k.BatchID)
	for _, r := range rs {
		waitCompleted(t, subs[r], 3, r.name)
	}
	if got := u.callsOf(other.name); got != 0 {
		t.Fatalf("the non-holder polled %d times", got)
	}
	if got := other.cl.Stats().PokesSent; got != 1 {
		t.Fatalf("PokesSent = %d", got)
	}
}

// Two credentials watching the same batch id have separate leases and
// states on every replica, and nobody gets the other's batch.
func TestCredentialIsolation(t *testing.T) {
	const interval = 100 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	rs := replicas(t, n, u, 2, interval)
	creds := []string{"", "0a1b2c3d4e5f"}
	type watcher struct {
		cred string
		s    *watch.Subscription
		r    *replica
	}
	var ws []watcher
	for _, c := range creds {
		for _, r := range rs {
			ws = append(ws, watcher{c, subscribe(t, r, watch.Key{Credential: c, BatchID: "batch_shared_id"}), r})
		}
	}
	waitFor(t, "a lease per credential", func() bool {
		total := int64(0)
		for _, r := range rs {
			total += r.cl.Stats().Leases
		}
		return total == int64(len(creds))
	})
	u.set(creds[1], "batch_shared_id", 4, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	for _, w := range ws {
		want := int64(0)
		if w.cred == creds[1] {
			want = 4
		}
		if want > 0 {
			waitCompleted(t, w.s, want, w.r.name+" "+w.cred)
		}
	}
	time.Sleep(3 * interval)
	for _, w := range ws {
		b, _ := w.s.Latest()
		if got := b.GetMetadata().GetPairs()["cred"]; got != w.cred {
			t.Fatalf("%s: a watcher of credential %q got the batch of %q", w.r.name, w.cred, got)
		}
		if w.cred == creds[0] && b.GetRequestCounts().GetCompleted() != 0 {
			t.Fatalf("%s: credential %q saw the other credential's change", w.r.name, w.cred)
		}
	}
	for _, r := range rs {
		for _, c := range creds {
			b, err := r.hub.Get(context.WithValue(context.Background(), credKey{}, c), watch.Key{Credential: c, BatchID: "batch_shared_id"})
			if err != nil || b.GetMetadata().GetPairs()["cred"] != c {
				t.Fatalf("%s Get for %q: %v, %v", r.name, c, b.GetMetadata(), err)
			}
		}
	}
}

// GetBatch on a replica that does not watch the batch is answered from the
// state another replica's poller shares.
func TestSharedGet(t *testing.T) {
	const interval = time.Minute
	n := startNATS(t)
	u := newUpstream()
	a := newReplica(t, n, u, "a", interval)
	b := newReplica(t, n, u, "b", interval)
	k := watch.Key{BatchID: "batch_get"}
	subscribe(t, a, k)
	waitFor(t, "a's state shared", func() bool { return a.cl.Stats().StatesWritten > 0 })
	got, err := b.hub.Get(context.Background(), k)
	if err != nil || got.GetId() != k.BatchID {
		t.Fatalf("Get: %v, %v", got, err)
	}
	if st := b.hub.Stats(); st.SharedHits != 1 || st.Gets != 0 || u.callsOf("b") != 0 {
		t.Fatalf("b's stats %+v, b's upstream calls %d: want one shared hit and no upstream call", st, u.callsOf("b"))
	}
	// After a poke, the shared state from before it no longer answers.
	b.hub.PokeBatch(k.BatchID)
	waitFor(t, "a's poked poll shared", func() bool { return a.cl.Stats().StatesWritten > 1 })
	if _, err := b.hub.Get(context.Background(), k); err != nil {
		t.Fatal(err)
	}
}

// NATS stopped under live watches: every replica polls by itself and its
// watchers stay served; NATS back: leases again, one poll per interval.
func TestNATSDownAndBack(t *testing.T) {
	const interval = 100 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	rs := replicas(t, n, u, 2, interval)
	k := watch.Key{BatchID: "batch_outage"}
	subs := make(map[*replica]*watch.Subscription)
	for _, r := range rs {
		subs[r] = subscribe(t, r, k)
	}
	waitFor(t, "one holder", func() bool { return len(holders(rs)) == 1 })

	n.stop()
	for _, r := range rs {
		waitFor(t, r.name+" falls back", func() bool { return !r.cl.Stats().Shared })
	}
	before := map[string]int{}
	for _, r := range rs {
		before[r.name] = u.callsOf(r.name)
	}
	u.set("", k.BatchID, 2, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	for _, r := range rs {
		waitCompleted(t, subs[r], 2, r.name+" during the outage")
		waitFor(t, r.name+" polls alone", func() bool { return u.callsOf(r.name) > before[r.name]+2 })
		if r.cl.Stats().Unavailable == 0 {
			t.Fatalf("%s: no Acquire refused during the outage", r.name)
		}
	}

	n.start()
	for _, r := range rs {
		waitFor(t, r.name+" shares again", func() bool { return r.cl.Stats().Shared })
	}
	waitFor(t, "one holder again", func() bool { return len(holders(rs)) == 1 })
	// Let pollers that were mid-wait look at the lease once more.
	time.Sleep(3 * interval)
	pollsBefore, start := u.total(), time.Now()
	time.Sleep(20 * interval)
	polls, intervals := u.total()-pollsBefore, float64(time.Since(start))/float64(interval)
	if limit := int(intervals*1.3) + 2; polls > limit {
		t.Fatalf("%d polls in %.1f intervals after NATS came back, want about one per interval", polls, intervals)
	}
	u.set("", k.BatchID, 10, batchv1.BatchStatus_BATCH_STATUS_COMPLETED)
	for _, r := range rs {
		waitTerminal(t, subs[r], r.name)
	}
}

// Keys are safe NATS tokens whatever the batch id and credential.
func TestOddKeys(t *testing.T) {
	const interval = 100 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	r := newReplica(t, n, u, "a", interval)
	for _, k := range []watch.Key{{Credential: "_", BatchID: "a.b"}, {Credential: "x y", BatchID: "*"}, {BatchID: ">"}} {
		s := subscribe(t, r, k)
		if s.Current().GetId() != k.BatchID {
			t.Fatalf("%v: got %v", k, s.Current().GetId())
		}
	}
	waitFor(t, "three leases", func() bool { return r.cl.Stats().Leases == 3 })
}

// A holder whose fetch outlasts the lease TTL keeps its lease: it is
// renewed on its own timer, not only at poll time, so no second replica
// starts polling meanwhile.
func TestLeaseRenewedDuringLongFetch(t *testing.T) {
	const interval = 200 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	oneSecond := func(o *cluster.Options) { o.LeaseTTL = time.Second }
	a := newReplica(t, n, u, "a", interval, oneSecond)
	b := newReplica(t, n, u, "b", interval, oneSecond)
	k := watch.Key{BatchID: "batch_slow"}
	subscribe(t, a, k)
	waitFor(t, "a holds", func() bool { return a.cl.Stats().Leases == 1 })
	u.slow("a", 3*time.Second)
	waitFor(t, "a's slow fetch under way", func() bool { return a.hub.Stats().Polls >= 2 })
	subscribe(t, b, k)
	deadline := time.Now().Add(2500 * time.Millisecond) // 2.5 TTLs
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		held, err := b.cl.Acquire(ctx, k)
		cancel()
		if err != nil || held {
			t.Fatalf("b's Acquire during a's long fetch: held %v, err %v", held, err)
		}
		if got := u.callsOf("b"); got != 0 {
			t.Fatalf("b polled %d times during a's long fetch", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := a.cl.Stats(); st.Leases != 1 || st.Lost != 0 {
		t.Fatalf("a's stats after its long fetch: %+v", st)
	}
	if st := b.cl.Stats(); st.Reclaimed != 0 {
		t.Fatalf("b reclaimed the lease of a, which beats through its long fetch: %+v", st)
	}
}

// A renewal that finds the lease changed (another replica holds it) marks
// it lost: the next Acquire reports it not held.
func TestRenewalLosesChangedLease(t *testing.T) {
	const interval = 200 * time.Millisecond
	n := startNATS(t)
	u := newUpstream()
	// DeadAfter an hour: the intruder never beats, and a would otherwise
	// reclaim the lease from it as from a dead replica.
	a := newReplica(t, n, u, "a", interval, func(o *cluster.Options) { o.DeadAfter, o.LeaseTTL = time.Hour, time.Second })
	k := watch.Key{BatchID: "batch_stolen"}
	subscribe(t, a, k)
	waitFor(t, "a holds", func() bool { return a.cl.Stats().Leases == 1 })
	// a's next fetch hangs: only the renewal timer touches the lease.
	u.slow("a", time.Minute)
	waitFor(t, "a's hanging fetch under way", func() bool { return a.hub.Stats().Polls >= 2 })
	kv := bucket(t, n)
	if _, err := kv.Put(context.Background(), "lease._.batch_stolen", []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's lease lost", func() bool { st := a.cl.Stats(); return st.Lost == 1 && st.Leases == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if held, err := a.cl.Acquire(ctx, k); held || err != nil {
		t.Fatalf("Acquire after the lease was lost: held %v, err %v", held, err)
	}
}

// bucket opens the test bucket on its own connection.
func bucket(t *testing.T, n *natsServer) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(n.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// A state written by a former holder (an older fencing token) after the
// current holder's is ignored by the followers and by Shared; the holder's
// next state still gets through.
func TestStaleWriterFenced(t *testing.T) {
	const interval = time.Minute // no poll but the first and the poked ones
	n := startNATS(t)
	u := newUpstream()
	a := newReplica(t, n, u, "a", interval)
	b := newReplica(t, n, u, "b", interval)
	k := watch.Key{BatchID: "batch_fenced"}
	subscribe(t, a, k)
	waitFor(t, "a holds", func() bool { return a.cl.Stats().Leases == 1 })
	sb := subscribe(t, b, k)
	u.set("", k.BatchID, 3, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	a.hub.PokeLocal(k.BatchID)
	waitCompleted(t, sb, 3, "b follows a")
	waitFor(t, "b has received a's state", func() bool { return b.cl.Stats().StatesReceived > 0 })

	// A former holder, whose lease had revision 1, writes late: a newer
	// observation time, an older token.
	a.cl.WriteState(k, batchOf(k.BatchID, "", 9, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS), time.Now().Add(time.Second), 1)
	waitFor(t, "the stale state fenced", func() bool { return b.cl.Stats().StatesFenced >= 1 })
	if got, _ := sb.Latest(); got.GetRequestCounts().GetCompleted() != 3 {
		t.Fatalf("b's watcher took the stale state: completed=%d", got.GetRequestCounts().GetCompleted())
	}
	if got, _, ok := b.cl.Shared(context.Background(), k); ok {
		t.Fatalf("Shared returned the stale state: completed=%d", got.GetRequestCounts().GetCompleted())
	}

	u.set("", k.BatchID, 5, batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	a.hub.PokeLocal(k.BatchID)
	waitCompleted(t, sb, 5, "b follows a after the stale write")
	if got, _, ok := b.cl.Shared(context.Background(), k); !ok || got.GetRequestCounts().GetCompleted() != 5 {
		t.Fatalf("Shared after the holder's next state: %v, %v", got.GetRequestCounts(), ok)
	}
	if st := b.hub.Stats(); st.Followed == 0 {
		t.Fatalf("b followed nothing: %+v", st)
	}
}

// TestUnreachableAtStartLogged: a NATS that is down when the replica
// starts is logged once, with the reason, and the replica shares once it
// is up; a later outage is logged again.
func TestUnreachableAtStartLogged(t *testing.T) {
	n := startNATS(t)
	n.stop()
	var logs testutil.SyncBuffer
	cl, err := cluster.New(cluster.Options{
		URL: n.url(), Bucket: "test", PollInterval: 100 * time.Millisecond, ReplicaID: "r0",
		OpTimeout: time.Second, ReconnectWait: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const msg = "cannot reach NATS"
	waitFor(t, "the failure logged", func() bool { return strings.Contains(logs.String(), msg) })
	time.Sleep(10 * 20 * time.Millisecond) // ten more failed attempts
	if c := strings.Count(logs.String(), msg); c != 1 {
		t.Fatalf("logged %d times, want once:\n%s", c, logs.String())
	}
	if !strings.Contains(logs.String(), "error=") {
		t.Errorf("the reason is missing:\n%s", logs.String())
	}
	n.start()
	waitFor(t, "shared", func() bool { return cl.Stats().Shared })
	n.stop()
	waitFor(t, "the outage logged", func() bool { return strings.Contains(logs.String(), "NATS unreachable") })
	waitFor(t, "the failure to reconnect logged", func() bool { return strings.Count(logs.String(), msg) == 2 })
}
