package gateway_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/webhook"
	"github.com/batchgate/batchgate/internal/wire"
)

var e2eHookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("gateway-e2e-webhook-secret-0123"))

// relay forwards POSTs to the gateway's webhook port once it is known:
// the simulator starts before the gateway and needs a URL at once. Until
// then it answers 503 (and the simulator retries).
type relay struct{ target atomic.Pointer[string] }

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	t := r.target.Load()
	if t == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(req.Body)
	out, _ := http.NewRequestWithContext(req.Context(), http.MethodPost, *t+req.URL.Path, bytes.NewReader(body))
	out.Header = req.Header.Clone()
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	_ = resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
}

// startWebhooks starts a gateway with its webhook receiver and a
// simulator (phase p) that sends it real signed webhooks; polls are an
// hour apart, so only a webhook makes anything arrive soon.
func startWebhooks(t *testing.T, p time.Duration) (*env, string) {
	t.Helper()
	rl := &relay{}
	rs := httptest.NewServer(rl)
	t.Cleanup(rs.Close)
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{
		Phase: p, WebhookURL: rs.URL + webhook.Path, WebhookSecret: e2eHookSecret,
		WebhookScan: 10 * time.Millisecond, WebhookRetryWait: 50 * time.Millisecond,
	}}, func(c *config.Config) {
		c.Webhook.Addr = "127.0.0.1:0"
		c.Webhook.Secret = e2eHookSecret
		c.Watch.PollInterval = time.Hour
		c.Service.Heartbeat = time.Hour
	})
	t.Cleanup(e.Sim.Close)
	hook := "http://" + e.GW.WebhookAddr().String()
	rl.target.Store(&hook)
	return e, hook
}

// soon bounds every wait for a webhook's effect: generous for a loaded
// machine, and far below the hour between polls.
const soon = 30 * time.Second

func TestWebhookEndsWatchAndDropsCache(t *testing.T) {
	e, _ := startWebhooks(t, 500*time.Millisecond)
	watched := e.Sim.Create(simulator.CreateRequest{})
	cached := e.Sim.Create(simulator.CreateRequest{})

	w := e.watch(t, watched.ID)
	if ev := w.next(t); ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_VALIDATING {
		t.Fatalf("first event %v", ev)
	}
	// A GetBatch now is cached for the poll interval (an hour).
	b, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: cached.ID})
	if err != nil || wire.IsTerminal(b.GetBatch()) {
		t.Fatalf("GetBatch = %v, %v", b, err)
	}

	deadline := time.Now().Add(soon)
	for {
		ev, err := testutil.Next(w.events, w.done, time.Until(deadline))
		if errors.Is(err, testutil.ErrNoMessage) {
			t.Fatalf("no terminal event within %v of an hourly poll: the webhook did not poke", soon)
		}
		if err != nil {
			t.Fatalf("stream ended (%v) before the terminal event", err)
		}
		if !ev.GetTerminal() {
			continue // a change seen on the way (none is polled for, but a poke may land mid-run)
		}
		if ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_COMPLETED {
			t.Fatalf("terminal event %v", ev)
		}
		break
	}
	// The unwatched batch's cached result was dropped by its webhook.
	for {
		b, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: cached.ID})
		if err != nil {
			t.Fatal(err)
		}
		if b.GetBatch().GetStatus() == batchv1.BatchStatus_BATCH_STATUS_COMPLETED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetBatch still %v: the cached result was not dropped", b.GetBatch().GetStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The delivery latency was measured.
	body := metrics(t, e)
	for _, want := range []string{
		`batchgate_webhooks_received_total{outcome="accepted",type="batch.completed"}`,
		"batchgate_webhook_delivery_seconds_count 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func metrics(t *testing.T, e *env) string {
	t.Helper()
	resp, err := http.Get(e.BaseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestWebhookBadSignatureChangesNothing: a forged delivery is answered
// 400 and polls nothing; the genuine one pokes.
func TestWebhookBadSignatureChangesNothing(t *testing.T) {
	e, hook := startWebhooks(t, time.Hour)
	id := "batch_static_hook"
	e.Sim.Put(wire.Batch{ID: id, Object: "batch", Status: "in_progress"})
	w := e.watch(t, id)
	w.next(t)
	before := e.Sim.BatchRequests(id)

	body := []byte(fmt.Sprintf(`{"id":"evt_x","object":"event","type":"batch.completed","created_at":%d,"data":{"id":%q}}`, time.Now().Unix(), id))
	wrong, _ := webhook.ParseSecret("whsec_" + base64.StdEncoding.EncodeToString([]byte("not-the-gateway-secret-at-all!!")))
	right, _ := webhook.ParseSecret(e2eHookSecret)
	post := func(h http.Header) int {
		req, _ := http.NewRequest(http.MethodPost, hook+webhook.Path, bytes.NewReader(body))
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusBadRequest && string(b) != "bad request\n" {
			t.Errorf("400 body %q", b)
		}
		return resp.StatusCode
	}
	for _, h := range []http.Header{
		webhook.Headers(wrong, "msg_forged", time.Now(), body),
		webhook.Headers(right, "msg_stale", time.Now().Add(-time.Hour), body),
		{"Content-Type": {"application/json"}},
	} {
		if code := post(h); code != http.StatusBadRequest {
			t.Fatalf("forged delivery: %d", code)
		}
	}
	// The API routes are not on the webhook port.
	if resp, err := http.Get(hook + "/v1/batches/" + id); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("API route on the webhook port: %v %v", resp, err)
	} else {
		_ = resp.Body.Close()
	}
	time.Sleep(200 * time.Millisecond) // a poke, had there been one, would have polled by now
	if n := e.Sim.BatchRequests(id); n != before {
		t.Fatalf("forged deliveries caused %d upstream GETs", n-before)
	}
	if code := post(webhook.Headers(right, "msg_genuine", time.Now(), body)); code != http.StatusOK {
		t.Fatalf("genuine delivery: %d", code)
	}
	deadline := time.Now().Add(soon)
	for e.Sim.BatchRequests(id) == before {
		if time.Now().After(deadline) {
			t.Fatal("the genuine delivery polled nothing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(metrics(t, e), `batchgate_webhooks_received_total{outcome="bad_signature",type="none"} 2`) {
		t.Error("bad signatures not counted")
	}
}
