package simulator

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/webhook"
)

var hookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("simulator-webhook-test-secret!!!"))

// hookSink is a webhook endpoint that verifies what it gets; failFirst
// deliveries attempts are answered 500.
type hookSink struct {
	t         *testing.T
	v         *webhook.Verifier
	failFirst int64
	attempts  atomic.Int64
	mu        sync.Mutex
	ids       map[string]int // webhook-id -> attempts seen
	events    chan webhook.Event
}

func newHookSink(t *testing.T, failFirst int64) (*hookSink, *httptest.Server) {
	v, err := webhook.NewVerifier(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	s := &hookSink{t: t, v: v, failFirst: failFirst, ids: map[string]int{}, events: make(chan webhook.Event, 100)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ev, err := s.v.Verify(r.Header, body, time.Now())
	if err != nil {
		s.t.Errorf("the simulator sent a delivery that does not verify: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.ids[r.Header.Get("webhook-id")]++
	s.mu.Unlock()
	if s.attempts.Add(1) <= s.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	s.events <- ev
}

func (s *hookSink) next(t *testing.T) webhook.Event {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook")
		return webhook.Event{}
	}
}

func (s *hookSink) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-s.events:
		t.Fatalf("unexpected webhook %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
}

func newHookSim(t *testing.T, url string) (*Simulator, *fakeClock) {
	clk := &fakeClock{t: t0}
	sim := New(Options{APIKey: testKey, Now: clk.Now, Phase: time.Minute, WebhookURL: url, WebhookSecret: hookSecret,
		WebhookScan: 5 * time.Millisecond, WebhookRetryWait: time.Millisecond})
	t.Cleanup(sim.Close)
	return sim, clk
}

// TestWebhooksOnTerminalTransitions: a batch's completion and a cancel
// each send one signed event; the demo batches that are terminal from the
// start send none.
func TestWebhooksOnTerminalTransitions(t *testing.T) {
	sink, srv := newHookSink(t, 0)
	sim, clk := newHookSim(t, srv.URL+webhook.Path)
	a := sim.Create(CreateRequest{})
	b := sim.Create(CreateRequest{})
	sink.none(t)

	clk.Advance(90 * time.Second) // in progress
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/batches/"+b.ID+"/cancel", nil)
	req.Header.Set("Authorization", testBearer)
	sim.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("cancel: %d %s", w.Code, w.Body)
	}
	sink.none(t) // cancelling is not an end

	clk.Advance(2 * time.Minute) // a completed, b cancelled; demo progress completed
	got := map[string]string{}
	for range 3 {
		ev := sink.next(t)
		got[ev.Data.ID] = ev.Type
		if ev.Object != "event" || !strings.HasPrefix(ev.ID, "evt_") {
			t.Errorf("event %+v", ev)
		}
	}
	want := map[string]string{a.ID: "batch.completed", b.ID: "batch.cancelled", DemoProgress: "batch.completed"}
	for id, typ := range want {
		if got[id] != typ {
			t.Errorf("%s: %q, want %q (all: %v)", id, got[id], typ, got)
		}
	}
	sink.none(t)
	if sent, failed := sim.WebhooksSent(); sent != 3 || failed != 0 {
		t.Errorf("WebhooksSent = %d, %d", sent, failed)
	}
}

// TestWebhookRetries: a delivery answered 500 is retried with the same
// webhook-id until it is accepted.
func TestWebhookRetries(t *testing.T) {
	sink, srv := newHookSink(t, 2)
	sim, clk := newHookSim(t, srv.URL+webhook.Path)
	a := sim.Create(CreateRequest{})
	clk.Advance(3*time.Minute + time.Second)
	seen := map[string]bool{}
	for len(seen) < 2 { // a and the demo batch
		seen[sink.next(t).Data.ID] = true
	}
	if !seen[a.ID] {
		t.Fatalf("no event for %s: %v", a.ID, seen)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	total := 0
	for _, n := range sink.ids {
		total += n
	}
	if len(sink.ids) != 2 || total != 4 {
		t.Errorf("webhook ids %v: want 2 ids, 4 attempts", sink.ids)
	}
}

func TestWebhookBadSecretPanics(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || strings.Contains(r.(string), "not-a-secret") {
			t.Fatalf("recover = %v", r)
		}
	}()
	New(Options{WebhookURL: "http://127.0.0.1:1", WebhookSecret: "not-a-secret"})
}
