package watch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/wire"
)

// These tests run the hub against the real upstream client and an
// httptest server speaking the provider's JSON.

const upstreamKey = "sk-watch-test-key"

func batchJSON(id, status string, completed int) string {
	return fmt.Sprintf(`{"id":%q,"object":"batch","endpoint":"/v1/chat/completions","status":%q,`+
		`"input_file_id":"file_in","completion_window":"24h","created_at":1710000000,`+
		`"request_counts":{"total":10,"completed":%d,"failed":0},"metadata":null,"errors":null}`,
		id, status, completed)
}

// upstreamServer answers the n-th request (from 1) with script[n-1], and
// the last entry after that. It counts requests and fails the test on a
// request without the client's API key.
func upstreamServer(t *testing.T, script ...func(w http.ResponseWriter)) (*upstream.Client, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer "+upstreamKey {
			t.Errorf("Authorization = %q", got)
		}
		i := int(n.Add(1)) - 1
		script[min(i, len(script)-1)](w)
	}))
	t.Cleanup(srv.Close) // also closes the idle connections of srv.Client()
	c, err := upstream.New(upstream.Config{
		BaseURL:     srv.URL,
		APIKey:      upstreamKey,
		HTTPClient:  srv.Client(),
		MaxAttempts: 1, // one HTTP request per hub fetch, so counts compare
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, &n
}

func answer(status int, body string, headers ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

func TestWithUpstreamClient(t *testing.T) {
	t.Parallel()
	const id = "batch_real01"
	c, requests := upstreamServer(t,
		answer(200, batchJSON(id, "in_progress", 0)),
		answer(200, batchJSON(id, "in_progress", 0)), // no change
		answer(200, batchJSON(id, "in_progress", 5)),
		answer(503, `{"error":{"message":"busy","type":"api_error"}}`, "Retry-After-Ms", "2"),
		answer(429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, "Retry-After-Ms", "2"),
		answer(200, `{"id":`), // malformed: transient
		answer(200, batchJSON(id, "finalizing", 10)),
		answer(200, batchJSON(id, "completed", 10)),
	)
	h := newHub(t, c, func(o *Options) { o.FreshFor = time.Hour })
	k := Key{BatchID: id}

	subs := []*Subscription{subscribe(t, h, k), subscribe(t, h, k), subscribe(t, h, k)}
	if got := subs[0].Current().GetUpstreamStatus(); got != "in_progress" {
		t.Fatalf("snapshot status %q", got)
	}
	for i, s := range subs {
		if err := waitDone(t, s); err != nil {
			t.Fatalf("sub %d: Err = %v", i, err)
		}
		b, v := s.Latest()
		if b.GetUpstreamStatus() != "completed" || !wire.IsTerminal(b) || v != 4 {
			t.Errorf("sub %d: Latest %q version %d; want completed, 4", i, b.GetUpstreamStatus(), v)
		}
	}
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })
	if st := h.Stats(); requests.Load() != 8 || st.Polls != 8 {
		t.Errorf("%d requests, %d polls; want 8 each", requests.Load(), st.Polls)
	}
	// The terminal batch answers Get from the cache.
	if b, err := h.Get(context.Background(), k); err != nil || !wire.IsTerminal(b) || requests.Load() != 8 {
		t.Errorf("Get = %v, %v after %d requests", b, err, requests.Load())
	}
}

func TestWithUpstreamClientNotFound(t *testing.T) {
	t.Parallel()
	c, _ := upstreamServer(t,
		answer(404, `{"error":{"message":"No batch found","type":"not_found_error","code":"404"}}`))
	h := newHub(t, c, nil)

	_, err := h.Subscribe(context.Background(), Key{BatchID: "batch_missing"})
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.HTTPStatus != 404 || ue.Type != "not_found_error" {
		t.Fatalf("Subscribe = %v, want the upstream's 404", err)
	}
	_, err = h.Subscribe(context.Background(), Key{BatchID: "bad/id"})
	if !errors.Is(err, upstream.ErrInvalidBatchID) {
		t.Errorf("Subscribe with a bad id = %v", err)
	}
}
