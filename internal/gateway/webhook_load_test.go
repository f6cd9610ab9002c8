package gateway_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/webhook"
)

var (
	webhookLoad = flag.Int("webhook.load", 0, "TestWebhookFanOutLatency: this many gRPC watchers (0: skip)")
	webhookOff  = flag.Bool("webhook.off", false, "TestWebhookFanOutLatency: the baseline: the webhooks reach the relay, which stamps them, but not the gateway, so only the 30 s polls deliver")
)

// stampRelay is relay that also records when each batch's webhook
// reached it, on its way to the gateway.
type stampRelay struct {
	relay
	off     bool // the baseline: stamp, but do not pass on
	mu      sync.Mutex
	arrived map[string]time.Time
}

func (r *stampRelay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(req.Body)
	var ev webhook.Event
	_ = json.Unmarshal(body, &ev)
	r.mu.Lock()
	if _, ok := r.arrived[ev.Data.ID]; !ok && (r.target.Load() != nil || r.off) {
		r.arrived[ev.Data.ID] = at
	}
	r.mu.Unlock()
	if r.off {
		w.WriteHeader(http.StatusOK) // stamped, not passed on
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.relay.ServeHTTP(w, req)
}

// TestWebhookFanOutLatency measures, with -poll-interval 30s and
// webhooks on, batch end (the webhook's arrival) → each of N gRPC
// watchers receiving the terminal event; with -webhook.off, the same run
// where the webhooks never reach the gateway (the baseline: polls only).
// Run it alone:
//
//	go test -run TestWebhookFanOutLatency -v ./internal/gateway/ -args -webhook.load=10000 [-webhook.off]
func TestWebhookFanOutLatency(t *testing.T) {
	n := *webhookLoad
	if n == 0 {
		t.Skip("set -webhook.load")
	}
	const batches = 10
	const phase = 5 * time.Second // each batch ends 15 s after its creation
	rl := &stampRelay{arrived: map[string]time.Time{}, off: *webhookOff}
	rs := httptest.NewServer(rl)
	t.Cleanup(rs.Close)
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{
		Phase: phase, WebhookURL: rs.URL + webhook.Path, WebhookSecret: e2eHookSecret,
		WebhookScan: 10 * time.Millisecond, WebhookRetryWait: 50 * time.Millisecond,
	}}, func(c *config.Config) {
		c.Webhook.Addr = "127.0.0.1:0"
		c.Webhook.Secret = e2eHookSecret
		c.Watch.PollInterval = 30 * time.Second
		c.Service.Heartbeat = time.Hour
		c.Limits.MaxWatchersPerCaller = 0
	})
	t.Cleanup(e.Sim.Close)
	hook := "http://" + e.GW.WebhookAddr().String()
	rl.target.Store(&hook)

	ids := make([]string, batches)
	for i := range ids {
		ids[i] = e.Sim.Create(simulator.CreateRequest{}).ID
	}
	created := time.Now()
	const perConn = 500
	var conns []*grpc.ClientConn
	for range (n + perConn - 1) / perConn {
		c, err := grpc.NewClient(e.GW.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	got := make([]time.Time, n)
	var subscribed, failed atomic.Int64
	var wg sync.WaitGroup
	ctx := t.Context()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := batchv1.NewBatchServiceClient(conns[i/perConn])
			stream, err := cl.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: ids[i%batches]})
			if err != nil {
				failed.Add(1)
				return
			}
			first := true
			for {
				ev, err := stream.Recv()
				if err != nil {
					failed.Add(1)
					return
				}
				if first {
					subscribed.Add(1)
					first = false
				}
				if ev.GetTerminal() {
					got[i] = time.Now()
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(3 * phase)
	mode := "webhooks on"
	if rl.off {
		mode = "webhooks off (polls only)"
	}
	for subscribed.Load()+failed.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d watchers subscribed in %v (%d failed)", subscribed.Load(), time.Since(created).Round(time.Millisecond), failed.Load())
	if time.Since(created) > 3*phase-time.Second {
		t.Fatal("the watchers were not all subscribed before the batches ended")
	}
	wg.Wait()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	var lat []time.Duration
	for i, at := range got {
		a, ok := rl.arrived[ids[i%batches]]
		if at.IsZero() || !ok {
			continue
		}
		lat = append(lat, at.Sub(a))
	}
	if len(lat) != n {
		t.Fatalf("%d of %d watchers measured (%d failed)", len(lat), n, failed.Load())
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	t.Logf("%s: batch end (webhook sent) → terminal event, %d gRPC watchers of %d batches, poll interval 30s: mean %v, p50 %v, p90 %v, p99 %v, max %v",
		mode, n, batches, (sum / time.Duration(len(lat))).Round(time.Millisecond), pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1])
	if !rl.off && pct(0.99) > 5*time.Second {
		t.Errorf("p99 %v: the webhook did not poke", pct(0.99))
	}
}
