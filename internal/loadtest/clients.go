package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Receipt is one batch state a client received.
type Receipt struct {
	// At is when the client had it (Unix µs).
	At int64
	// ObservedMs is the gateway's observed_at_unix_ms; 0 when the event
	// carries none (SSE, naive polls).
	ObservedMs int64
	FP         FP
	// Change is false for a stream's SNAPSHOT and for naive polls.
	Change bool
	// Terminal is the event's terminal flag (gRPC only).
	Terminal bool
}

// Reconnect is one break of a watcher's stream and its resumption on
// another replica (OpenReplicas with failover).
type Reconnect struct {
	// Broke is when the stream failed (Unix µs), Err how.
	Broke int64
	Err   string
	// Resumed is when the first event of the resumed stream arrived (Unix
	// µs; 0: never, the load tool stopped first), Replica the index of the
	// replica it came from, Attempts the WatchBatch calls it took.
	Resumed  int64
	Replica  int
	Attempts int
	// Snapshot is whether that first event was a SNAPSHOT (the batch had
	// changed since the resume tag) rather than a HEARTBEAT.
	Snapshot bool
}

// ClientLog is what one client (watcher or naive poller) saw.
type ClientLog struct {
	// Batch is the index of its batch.
	Batch int
	// Got holds the states received, in arrival order.
	Got []Receipt
	// Heartbeats counts heartbeat events.
	Heartbeats int
	// Failures counts failed polls of a naive client (it keeps polling;
	// Err is the last failure).
	Failures int
	// Err is how the client ended, when not by the load tool's own
	// cancellation.
	Err error
	// Reconnects lists the stream's breaks and resumptions, in order.
	Reconnects []Reconnect
	// Done is set when the stream ended with OK right after the terminal
	// event.
	Done bool
}

// Clients is a running set of clients. Stop ends them.
type Clients struct {
	Logs []*ClientLog
	// Opened is how long it took until every client had its first state.
	Opened time.Duration
	// OpenErrors counts clients that failed before their first state.
	OpenErrors int
	// Replica holds, for OpenReplicas, the index of the replica each
	// client opened on; nil otherwise.
	Replica []int

	cancel context.CancelFunc
	wg     sync.WaitGroup
	close  func()
}

// Stop ends the clients and waits for them.
func (c *Clients) Stop() {
	c.cancel()
	c.wg.Wait()
	if c.close != nil {
		c.close()
	}
}

// Errors counts the clients that ended with an error, by message.
func (c *Clients) Errors() map[string]int {
	m := make(map[string]int)
	for _, l := range c.Logs {
		if l.Err != nil {
			m[l.Err.Error()]++
		}
	}
	return m
}

// Breaks counts the clients' stream breaks that were followed by a
// reconnection, by error.
func (c *Clients) Breaks() map[string]int {
	m := make(map[string]int)
	for _, l := range c.Logs {
		for _, r := range l.Reconnects {
			m[r.Err]++
		}
	}
	return m
}

// assign spreads n clients over batches and connections: client i watches
// batch i mod batches and uses connection (i div batches) mod conns, so
// every connection carries every batch when n ≥ batches×conns.
func assign(i, batches, conns int) (batch, conn int) {
	return i % batches, (i / batches) % conns
}

// openAll starts the clients of each wave (indexes), with at most par
// opening at once, a wave once every client of the previous one has its
// first state or failed, and returns once the last wave's have. run must
// call opened exactly once, after the first state or on failure before it,
// and then keep recording until ctx ends.
func openAll(ctx context.Context, waves [][]int, par int, run func(ctx context.Context, i int, opened func(error))) *Clients {
	ctx, cancel := context.WithCancel(ctx)
	cs := &Clients{cancel: cancel}
	sem := make(chan struct{}, max(par, 1))
	var openWG sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for _, wave := range waves {
		openWG.Add(len(wave))
		cs.wg.Add(len(wave))
		for _, i := range wave {
			sem <- struct{}{}
			go func() {
				defer cs.wg.Done()
				var once sync.Once
				run(ctx, i, func(err error) {
					once.Do(func() {
						if err != nil {
							failed.Add(1)
						}
						<-sem
						openWG.Done()
					})
				})
			}()
		}
		openWG.Wait()
	}
	cs.Opened = time.Since(start)
	cs.OpenErrors = int(failed.Load())
	return cs
}

// oneWave is the single wave of clients 0 to n-1.
func oneWave(n int) [][]int {
	w := make([]int, n)
	for i := range w {
		w[i] = i
	}
	return [][]int{w}
}

// ended returns the error a client's loop ended with, or nil when the load
// tool cancelled it.
func ended(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil //nolint:nilerr // the load tool's own cancellation is a clean end
	}
	return err
}

// OpenGRPC opens n WatchBatch streams to addr over conns connections,
// spread over the batches ids (see assign), at most par opening at once.
func OpenGRPC(ctx context.Context, addr string, conns, n, par int, ids []string) (*Clients, error) {
	var ccs []*grpc.ClientConn
	closeAll := func() {
		for _, cc := range ccs {
			_ = cc.Close()
		}
	}
	for range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, err
		}
		cc.Connect()
		ccs = append(ccs, cc)
	}
	logs := make([]*ClientLog, n)
	cs := openAll(ctx, oneWave(n), par, func(ctx context.Context, i int, opened func(error)) {
		b, c := assign(i, len(ids), conns)
		l := &ClientLog{Batch: b}
		logs[i] = l
		_, err := watchGRPC(ctx, batchv1.NewBatchServiceClient(ccs[c]), ids[b], "", l, func(int64, bool) { opened(nil) })
		l.Err = ended(ctx, err)
		opened(l.Err)
	})
	cs.Logs = logs
	cs.close = closeAll
	return cs, nil
}

// errStreamEnded: a stream ended with OK before any terminal event.
var errStreamEnded = errors.New("stream ended")

// watchGRPC follows one WatchBatch stream, resuming from tag unless it is
// empty, and appends the states it receives to l. first is called at the
// stream's first state, or on a resumed stream its first event (the
// HEARTBEAT that says the state is unchanged, or a SNAPSHOT), with its
// receipt time and whether it was a SNAPSHOT. It returns the tag
// of the last state received (tag if none was), and nil once the stream
// ended with OK right after the terminal event (l.Done) or when the load
// tool cancelled it.
func watchGRPC(ctx context.Context, client batchv1.BatchServiceClient, id, tag string, l *ClientLog, first func(at int64, snapshot bool)) (string, error) {
	stream, err := client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id, ResumeTag: tag})
	if err != nil {
		return tag, err
	}
	resumed, started, terminal := tag != "", false, false
	for {
		ev, err := stream.Recv()
		at := time.Now().UnixMicro()
		if err != nil {
			switch {
			case status.Code(err) == codes.Canceled && ctx.Err() != nil:
				return tag, nil //nolint:nilerr // cancelled by the load tool: a clean end
			case errors.Is(err, io.EOF) && terminal:
				l.Done = true
				return tag, nil
			case errors.Is(err, io.EOF):
				return tag, errStreamEnded
			case terminal:
				return tag, fmt.Errorf("after the terminal event: %w", err)
			}
			return tag, err
		}
		if terminal {
			return tag, errors.New("an event after the terminal one")
		}
		typ := ev.GetType()
		switch typ {
		case batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT:
			l.Heartbeats++
		case batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE:
			b := ev.GetBatch()
			rc := b.GetRequestCounts()
			l.Got = append(l.Got, Receipt{
				At:         at,
				ObservedMs: ev.GetObservedAtUnixMs(),
				FP:         MakeFP(b.GetUpstreamStatus(), rc.GetCompleted(), rc.GetFailed()),
				Change:     typ == batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE,
				Terminal:   ev.GetTerminal(),
			})
			tag, terminal = ev.GetTag(), ev.GetTerminal()
		default:
			return tag, fmt.Errorf("unexpected event type %v", typ)
		}
		if !started && (resumed || typ != batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT) {
			started = true
			first(at, typ == batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT)
		}
	}
}

// ReplicaWatch configures OpenReplicas.
type ReplicaWatch struct {
	// Addrs are the replicas' gRPC addresses.
	Addrs []string
	// Watchers and Conns are split evenly across the replicas (the first
	// ones take the remainders); each replica's watchers are spread over
	// the batches IDs and its connections as OpenGRPC spreads them.
	Watchers, Conns int
	IDs             []string
	// Par bounds the watchers opening at once.
	Par int
	// Failover resumes a broken stream on another replica, as a client
	// would: WatchBatch with the resume tag of the last state received, on
	// a connection of its own to that replica (one per connection of the
	// replica that failed), at once and then with a backoff from 100ms to
	// 1s (or after the RetryInfo delay of the error, when longer) until it
	// gets an event; the replica tried next rotates over the others.
	Failover bool
}

// OpenReplicas opens WatchBatch streams on several replicas, in two waves
// so that each replica is the first to watch a share of the batches: first
// replica r's streams of the batches b with b mod len(Addrs) = r, on every
// replica at once, then, once those all have their snapshot, the rest.
// Clients.Replica says which replica each log opened on.
func OpenReplicas(ctx context.Context, o ReplicaWatch) (*Clients, error) {
	n := len(o.Addrs)
	if n == 0 || o.Watchers < n || o.Conns < n || len(o.IDs) == 0 {
		return nil, errors.New("loadtest: OpenReplicas needs a replica, and a watcher and a connection per replica")
	}
	p := &replicaPool{addrs: o.Addrs, extra: make(map[[2]int]*grpc.ClientConn)}
	type watcher struct{ replica, batch, conn int }
	var ws []watcher
	var waves [2][]int
	for r := range n {
		p.conns = append(p.conns, nil)
		for range o.Conns/n + btoi(r < o.Conns%n) {
			cc, err := p.dial(r)
			if err != nil {
				p.close()
				return nil, err
			}
			p.conns[r] = append(p.conns[r], cc)
		}
		for i := range o.Watchers/n + btoi(r < o.Watchers%n) {
			b, c := assign(i, len(o.IDs), len(p.conns[r]))
			wave := btoi(b%n != r)
			waves[wave] = append(waves[wave], len(ws))
			ws = append(ws, watcher{r, b, c})
		}
	}
	logs := make([]*ClientLog, len(ws))
	replica := make([]int, len(ws))
	for g, w := range ws {
		logs[g] = &ClientLog{Batch: w.batch}
		replica[g] = w.replica
	}
	cs := openAll(ctx, waves[:], o.Par, func(ctx context.Context, g int, opened func(error)) {
		w, l := ws[g], logs[g]
		l.Err = ended(ctx, p.watch(ctx, w.replica, w.conn, o.IDs[w.batch], l, o.Failover && n > 1, opened))
		opened(l.Err)
	})
	cs.Logs, cs.Replica, cs.close = logs, replica, p.close
	return cs, nil
}

// replicaPool holds the connections of OpenReplicas: each replica's own,
// and those made on failover, one per (replica, connection index of the
// replica that failed).
type replicaPool struct {
	addrs []string
	conns [][]*grpc.ClientConn

	mu    sync.Mutex
	extra map[[2]int]*grpc.ClientConn
}

func (p *replicaPool) dial(r int) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(p.addrs[r], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	cc.Connect()
	return cc, nil
}

// failoverConn returns the failover connection to replica r for
// connection c, dialled on first use.
func (p *replicaPool) failoverConn(r, c int) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := [2]int{r, c}
	if cc := p.extra[k]; cc != nil {
		return cc, nil
	}
	cc, err := p.dial(r)
	if err != nil {
		return nil, err
	}
	p.extra[k] = cc
	return cc, nil
}

func (p *replicaPool) close() {
	for _, ccs := range p.conns {
		for _, cc := range ccs {
			_ = cc.Close()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cc := range p.extra {
		_ = cc.Close()
	}
}

// failoverTarget is the replica a watcher of replica home on connection c
// tries at its attempt-th failover call (from 0): the others in turn,
// connections spread over them.
func failoverTarget(home, c, attempt, n int) int {
	return (home + 1 + (c+attempt)%(n-1)) % n
}

// failoverWait is the wait before the attempt-th call of one resumption
// (from 1): none for the first, then 100ms doubling up to 1s.
func failoverWait(attempt int) time.Duration {
	if attempt <= 1 {
		return 0
	}
	return min(100*time.Millisecond<<min(attempt-2, 4), time.Second)
}

// retryDelay is the RetryInfo delay of a gRPC error (a gateway shutting
// down asks for 1s), 0 without one.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// watch runs one watcher of replica home on its connection c, resuming on
// the other replicas when failover is set and the stream breaks after it
// opened (before: an open error) and before its terminal state.
func (p *replicaPool) watch(ctx context.Context, home, c int, id string, l *ClientLog, failover bool, opened func(error)) error {
	client := batchv1.NewBatchServiceClient(p.conns[home][c])
	var tag string
	var pending *Reconnect
	calls := 0
	isOpen := false
	for {
		var err error
		tag, err = watchGRPC(ctx, client, id, tag, l, func(at int64, snapshot bool) {
			if pending != nil {
				pending.Resumed, pending.Snapshot = at, snapshot
				l.Reconnects = append(l.Reconnects, *pending)
				pending = nil
			}
			if !isOpen {
				isOpen = true
				opened(nil)
			}
		})
		switch {
		case err == nil || ctx.Err() != nil:
			if pending != nil {
				l.Reconnects = append(l.Reconnects, *pending)
			}
			return err
		case !failover || !isOpen || (len(l.Got) > 0 && l.Got[len(l.Got)-1].Terminal):
			return err
		}
		if pending == nil {
			pending = &Reconnect{Broke: time.Now().UnixMicro(), Err: err.Error()}
		}
		pending.Attempts++
		pending.Replica = failoverTarget(home, c, calls, len(p.addrs))
		calls++
		wait := max(failoverWait(pending.Attempts), retryDelay(err))
		if err := sleep(ctx, wait); err != nil {
			l.Reconnects = append(l.Reconnects, *pending)
			return nil //nolint:nilerr // the load tool stopped: a clean end
		}
		cc, err := p.failoverConn(pending.Replica, c)
		if err != nil {
			return err
		}
		client = batchv1.NewBatchServiceClient(cc)
	}
}

// ErrNoSSE says the gateway does not serve Server-Sent Events on the watch
// path.
var ErrNoSSE = errors.New("the gateway does not answer GET /v1/batches/{id}/watch with text/event-stream")

// sseTransport returns a transport on which every request gets its own
// connection.
func sseTransport() *http.Transport {
	return &http.Transport{
		DialContext:       (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DisableKeepAlives: true,
		// A watch response starts after the first event: the poller's
		// first fetch for an unwatched batch.
		ResponseHeaderTimeout: 30 * time.Second,
	}
}

// OpenSSE opens n SSE watches on httpAddr, each on its own HTTP/1.1
// connection, spread over the batches ids, at most par opening at once.
func OpenSSE(ctx context.Context, httpAddr string, n, par int, ids []string) (*Clients, error) {
	tr := sseTransport()
	client := &http.Client{Transport: tr}
	logs := make([]*ClientLog, n)
	cs := openAll(ctx, oneWave(n), par, func(ctx context.Context, i int, opened func(error)) {
		b, _ := assign(i, len(ids), 1)
		l := &ClientLog{Batch: b}
		logs[i] = l
		l.Err = ended(ctx, watchSSE(ctx, client, "http://"+httpAddr, ids[b], l, opened))
		opened(l.Err)
	})
	cs.Logs = logs
	cs.close = tr.CloseIdleConnections
	return cs, nil
}

// ProbeSSE checks that the gateway serves SSE watches: ErrNoSSE if not.
func ProbeSSE(ctx context.Context, httpAddr, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tr := sseTransport()
	defer tr.CloseIdleConnections()
	l := &ClientLog{}
	err := watchSSE(ctx, &http.Client{Transport: tr}, "http://"+httpAddr, id, l, func(error) { cancel() })
	if len(l.Got) > 0 {
		return nil
	}
	return err
}

func watchSSE(ctx context.Context, client *http.Client, base, id string, l *ClientLog, opened func(error)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/batches/"+id+"/watch", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		return fmt.Errorf("%w (status %d, Content-Type %q)", ErrNoSSE, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReaderSize(resp.Body, 4096)
	var event string
	var data []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errors.New("SSE line longer than 4 KiB")
			}
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended")
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0: // end of an event
			at := time.Now().UnixMicro()
			switch event {
			case "snapshot", "change":
				fp, _, err := ParseFP(data)
				if err != nil {
					return fmt.Errorf("SSE %s data: %w", event, err)
				}
				l.Got = append(l.Got, Receipt{At: at, FP: fp, Change: event == "change"})
				if len(l.Got) == 1 {
					opened(nil)
				}
			case "heartbeat":
				l.Heartbeats++
			case "end":
				return errors.New("stream ended")
			case "error":
				return fmt.Errorf("SSE error event: %s", data)
			}
			event, data = "", data[:0]
		case bytes.HasPrefix(line, []byte("event:")):
			event = strings.TrimSpace(string(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}

// StartNaive starts n clients that each poll one batch of the upstream
// directly, every interval from a random phase, over conns shared HTTP
// connections, until ctx ends or Stop. They start within one interval.
func StartNaive(ctx context.Context, upstreamURL, key string, conns, n int, interval time.Duration, ids []string) *Clients {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	cs := &Clients{cancel: cancel, Logs: make([]*ClientLog, n), close: tr.CloseIdleConnections}
	start := time.Now()
	cs.wg.Add(n)
	for i := range n {
		l := &ClientLog{Batch: i % len(ids)}
		cs.Logs[i] = l
		url := upstreamURL + "/v1/batches/" + ids[l.Batch]
		first := start.Add(rand.N(interval))
		go func() {
			defer cs.wg.Done()
			pollLoop(ctx, client, url, key, first, interval, l)
		}()
	}
	return cs
}

func pollLoop(ctx context.Context, client *http.Client, url, key string, next time.Time, interval time.Duration, l *ClientLog) {
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		fp, err := pollOnce(ctx, client, url, key)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.Failures++
			l.Err = err
		default:
			l.Got = append(l.Got, Receipt{At: time.Now().UnixMicro(), FP: fp})
		}
		// Keep the schedule; a client that fell behind polls at once.
		next = next.Add(interval)
		timer.Reset(max(time.Until(next), 0))
	}
}

func pollOnce(ctx context.Context, client *http.Client, url, key string) (FP, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return FP{}, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return FP{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return FP{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return FP{}, fmt.Errorf("upstream status %d", resp.StatusCode)
	}
	fp, _, err := ParseFP(body)
	return fp, err
}
