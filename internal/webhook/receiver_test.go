package webhook

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakePoker records pokes; when block is set each poke waits on it.
type fakePoker struct {
	mu    sync.Mutex
	ids   []string
	n     atomic.Int64
	block chan struct{}
	poked chan string
	ret   atomic.Int64
}

func newFakePoker() *fakePoker {
	p := &fakePoker{poked: make(chan string, 100)}
	p.ret.Store(1)
	return p
}

func (p *fakePoker) PokeBatch(id string) int {
	if p.block != nil {
		<-p.block
	}
	p.mu.Lock()
	p.ids = append(p.ids, id)
	p.mu.Unlock()
	p.n.Add(1)
	r := int(p.ret.Load())
	p.poked <- id
	return r
}

func newTestReceiver(t *testing.T, p Poker, now time.Time) (*Receiver, *Metrics) {
	t.Helper()
	v, err := NewVerifier(secretA)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	r := NewReceiver(Options{Verifier: v, Poker: p, Metrics: m, Now: func() time.Time { return now }})
	t.Cleanup(r.Close)
	return r, m
}

func event(typ, batchID string) string {
	return fmt.Sprintf(`{"id":"evt_1","object":"event","type":%q,"created_at":1800000000,"data":{"id":%q}}`, typ, batchID)
}

func post(r http.Handler, h http.Header, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

func signed(id, body string) http.Header { return Headers(keyA, id, testNow, []byte(body)) }

func waitPoke(t *testing.T, p *fakePoker) string {
	t.Helper()
	select {
	case id := <-p.poked:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no poke")
		return ""
	}
}

func TestReceiverPokesAcceptedBatchEvents(t *testing.T) {
	p := newFakePoker()
	r, m := newTestReceiver(t, p, testNow)
	for i, typ := range BatchEventTypes {
		body := event(typ, fmt.Sprintf("batch_%d", i))
		if w := post(r, signed(fmt.Sprint("msg_", i), body), body); w.Code != http.StatusOK {
			t.Fatalf("%s: %d", typ, w.Code)
		}
		if got := waitPoke(t, p); got != fmt.Sprintf("batch_%d", i) {
			t.Fatalf("poked %q", got)
		}
		if got := value(m.received.WithLabelValues(typ, OutcomeAccepted)); got != 1 {
			t.Errorf("%s accepted = %v", typ, got)
		}
	}
}

func TestReceiverDuplicate(t *testing.T) {
	p := newFakePoker()
	r, m := newTestReceiver(t, p, testNow)
	body := event("batch.completed", "batch_x")
	for range 3 {
		if w := post(r, signed("msg_dup", body), body); w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
	}
	waitPoke(t, p)
	// A different id for the same batch pokes again.
	post(r, signed("msg_other", body), body)
	waitPoke(t, p)
	r.Close()
	if n := p.n.Load(); n != 2 {
		t.Fatalf("%d pokes, want 2", n)
	}
	if got := value(m.received.WithLabelValues("batch.completed", OutcomeDuplicate)); got != 2 {
		t.Errorf("duplicates = %v", got)
	}
}

func TestReceiverRefusesWithoutPoking(t *testing.T) {
	p := newFakePoker()
	r, m := newTestReceiver(t, p, testNow)
	body := event("batch.completed", "batch_x")
	badSig := Headers(keyB, "msg_1", testNow, []byte(body))
	stale := Headers(keyA, "msg_2", testNow.Add(-time.Hour), []byte(body))
	badID := event("batch.completed", "batch/../x")
	notJSON := "{not json"
	cases := []struct {
		name    string
		h       http.Header
		body    string
		outcome string
	}{
		{"bad signature", badSig, body, OutcomeBadSignature},
		{"no headers", http.Header{}, body, OutcomeBadSignature},
		{"stale", stale, body, OutcomeStale},
		{"malformed", signed("msg_3", notJSON), notJSON, OutcomeMalformed},
		{"bad batch id", signed("msg_4", badID), badID, OutcomeMalformed},
	}
	for _, c := range cases {
		w := post(r, c.h, c.body)
		if w.Code != http.StatusBadRequest || w.Body.String() != "bad request\n" {
			t.Errorf("%s: %d %q", c.name, w.Code, w.Body)
		}
		if got := value(m.received.WithLabelValues("none", c.outcome)); got < 1 {
			t.Errorf("%s: outcome %s not counted", c.name, c.outcome)
		}
	}
	// The bad signature's id is not remembered: the real delivery is
	// accepted.
	if w := post(r, signed("msg_1", body), body); w.Code != http.StatusOK {
		t.Fatalf("genuine delivery: %d", w.Code)
	}
	waitPoke(t, p)
	r.Close()
	if n := p.n.Load(); n != 1 {
		t.Fatalf("%d pokes, want 1", n)
	}
}

func TestReceiverOversizedBody(t *testing.T) {
	p := newFakePoker()
	r, m := newTestReceiver(t, p, testNow)
	body := event("batch.completed", "batch_x")
	big := body + strings.Repeat(" ", MaxBodyBytes) // valid JSON, signed, too large
	if w := post(r, signed("msg_big", big), big); w.Code != http.StatusBadRequest {
		t.Fatalf("oversized: %d", w.Code)
	}
	if got := value(m.received.WithLabelValues("none", OutcomeMalformed)); got != 1 {
		t.Errorf("malformed = %v", got)
	}
	// Exactly the cap is fine.
	atCap := body + strings.Repeat(" ", MaxBodyBytes-len(body))
	if w := post(r, signed("msg_cap", atCap), atCap); w.Code != http.StatusOK {
		t.Fatalf("at the cap: %d", w.Code)
	}
	waitPoke(t, p)
}

func TestReceiverUnknownType(t *testing.T) {
	p := newFakePoker()
	r, m := newTestReceiver(t, p, testNow)
	body := event("response.completed", "resp_1")
	if w := post(r, signed("msg_u", body), body); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	r.Close()
	if n := p.n.Load(); n != 0 {
		t.Fatalf("%d pokes", n)
	}
	if got := value(m.received.WithLabelValues("other", OutcomeUnknownType)); got != 1 {
		t.Errorf("unknown_type = %v", got)
	}
}

// TestReceiverAnswersBeforePoking: a poke that blocks does not hold the
// answer, and a flood beyond the queue is dropped rather than queued.
func TestReceiverAnswersBeforePoking(t *testing.T) {
	p := newFakePoker()
	p.block = make(chan struct{})
	v, _ := NewVerifier(secretA)
	m := NewMetrics()
	r := NewReceiver(Options{Verifier: v, Poker: p, Metrics: m, Now: func() time.Time { return testNow }, QueueSize: 2})
	for i := range 10 {
		body := event("batch.completed", fmt.Sprint("batch_", i))
		done := make(chan int)
		go func() { done <- post(r, signed(fmt.Sprint("msg_", i), body), body).Code }()
		select {
		case code := <-done:
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the answer waited for the poke")
		}
	}
	// One poke in the worker, two queued, the rest dropped.
	if got := value(m.drops); got < 7 {
		t.Errorf("dropped = %v, want at least 7", got)
	}
	close(p.block)
	r.Close()
}

func TestReceiverRoutes(t *testing.T) {
	r, _ := newTestReceiver(t, newFakePoker(), testNow)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/healthz", http.StatusOK},
		{http.MethodGet, Path, http.StatusMethodNotAllowed},
		{http.MethodGet, "/readyz", http.StatusNotFound},
		{http.MethodGet, "/metrics", http.StatusNotFound},
		{http.MethodPost, "/v1/batches", http.StatusNotFound},
	} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, w.Code, c.want)
		}
	}
}

func TestMetricsDelivered(t *testing.T) {
	p := newFakePoker()
	r, m := newTestReceiver(t, p, testNow)
	body := event("batch.completed", "batch_d")
	post(r, signed("msg_d", body), body)
	waitPoke(t, p)
	if _, ok := m.Delivered("batch_other", testNow.Add(time.Second)); ok {
		t.Error("delivered another batch")
	}
	if _, ok := m.Delivered("batch_d", testNow.Add(-time.Second)); ok {
		t.Error("a publication before the arrival counted")
	}
	d, ok := m.Delivered("batch_d", testNow.Add(250*time.Millisecond))
	if !ok || d != 250*time.Millisecond {
		t.Fatalf("Delivered = %v, %v", d, ok)
	}
	if _, ok := m.Delivered("batch_d", testNow.Add(time.Second)); ok {
		t.Error("delivered twice")
	}
	if n := int(histCount(m.delivery)); n != 1 {
		t.Errorf("histogram count = %d", n)
	}
	// No poller poked: nothing pending.
	p.ret.Store(0)
	body = event("batch.failed", "batch_e")
	post(r, signed("msg_e", body), body)
	waitPoke(t, p)
	r.Close()
	if _, ok := m.Delivered("batch_e", testNow.Add(time.Second)); ok {
		t.Error("delivered a batch nobody watched")
	}
}

// BenchmarkReceiverBadSignatures is the receiver under a flood of forged
// deliveries: each is read, refused with 400, and pokes nothing.
func BenchmarkReceiverBadSignatures(b *testing.B) {
	p := newFakePoker()
	v, _ := NewVerifier(secretA)
	r := NewReceiver(Options{Verifier: v, Poker: p, Metrics: NewMetrics()})
	defer r.Close()
	body := []byte(event("batch.completed", "batch_x"))
	h := Headers(keyB, "msg_1", time.Now(), body)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rd := bytes.NewReader(nil)
		for pb.Next() {
			rd.Reset(body)
			req := httptest.NewRequest(http.MethodPost, Path, io.NopCloser(rd))
			req.Header = h
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != http.StatusBadRequest {
				b.Fatal(w.Code)
			}
		}
	})
	if p.n.Load() != 0 {
		b.Fatal("poked")
	}
}

// value reads a counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// histCount reads a histogram's sample count.
func histCount(h prometheus.Histogram) uint64 {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		panic(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// BenchmarkReceiverHTTPBadSignatures floods a real loopback HTTP server
// (keep-alive clients, client and server on the same CPUs) with forged
// deliveries and reports the requests per second it refused.
func BenchmarkReceiverHTTPBadSignatures(b *testing.B) {
	p := newFakePoker()
	v, _ := NewVerifier(secretA)
	r := NewReceiver(Options{Verifier: v, Poker: p, Metrics: NewMetrics()})
	defer r.Close()
	srv := httptest.NewServer(r)
	defer srv.Close()
	body := []byte(event("batch.completed", "batch_x"))
	h := Headers(keyB, "msg_1", time.Now(), body)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+Path, bytes.NewReader(body))
			req.Header = h
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	if p.n.Load() != 0 {
		b.Fatal("poked")
	}
}
