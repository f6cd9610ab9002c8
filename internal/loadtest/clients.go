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
}

// Clients is a running set of clients. Stop ends them.
type Clients struct {
	Logs []*ClientLog
	// Opened is how long it took until every client had its first state.
	Opened time.Duration
	// OpenErrors counts clients that failed before their first state.
	OpenErrors int

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

// assign spreads n clients over batches and connections: client i watches
// batch i mod batches and uses connection (i div batches) mod conns, so
// every connection carries every batch when n ≥ batches×conns.
func assign(i, batches, conns int) (batch, conn int) {
	return i % batches, (i / batches) % conns
}

// openAll starts n clients with at most par opening at once, and returns
// once every one has its first state or failed. run must call opened
// exactly once, after the first state or on failure before it, and then
// keep recording until ctx ends.
func openAll(ctx context.Context, n, par int, run func(ctx context.Context, i int, opened func(error))) *Clients {
	ctx, cancel := context.WithCancel(ctx)
	cs := &Clients{cancel: cancel}
	sem := make(chan struct{}, max(par, 1))
	var openWG sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	openWG.Add(n)
	cs.wg.Add(n)
	for i := range n {
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
	cs.Opened = time.Since(start)
	cs.OpenErrors = int(failed.Load())
	return cs
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
	cs := openAll(ctx, n, par, func(ctx context.Context, i int, opened func(error)) {
		b, c := assign(i, len(ids), conns)
		l := &ClientLog{Batch: b}
		logs[i] = l
		l.Err = ended(ctx, watchGRPC(ctx, batchv1.NewBatchServiceClient(ccs[c]), ids[b], l, opened))
		opened(l.Err)
	})
	cs.Logs = logs
	cs.close = closeAll
	return cs, nil
}

func watchGRPC(ctx context.Context, client batchv1.BatchServiceClient, id string, l *ClientLog, opened func(error)) error {
	stream, err := client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id})
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		at := time.Now().UnixMicro()
		if err != nil {
			if status.Code(err) == codes.Canceled && ctx.Err() != nil {
				return nil //nolint:nilerr // cancelled by the load tool: a clean end
			}
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended")
			}
			return err
		}
		switch ev.GetType() {
		case batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT:
			l.Heartbeats++
			continue
		case batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE:
		default:
			return fmt.Errorf("unexpected event type %v", ev.GetType())
		}
		b := ev.GetBatch()
		rc := b.GetRequestCounts()
		l.Got = append(l.Got, Receipt{
			At:         at,
			ObservedMs: ev.GetObservedAtUnixMs(),
			FP:         MakeFP(b.GetUpstreamStatus(), rc.GetCompleted(), rc.GetFailed()),
			Change:     ev.GetType() == batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE,
		})
		if len(l.Got) == 1 {
			opened(nil)
		}
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
	cs := openAll(ctx, n, par, func(ctx context.Context, i int, opened func(error)) {
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
