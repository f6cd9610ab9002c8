package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/testutil"
)

// testKey is the API key used throughout; no error string may contain it.
const testKey = "sk-test-5f3a9c0d7e1b-SECRET"

// sampleJSON is the provider's sample answer to GET /v1/batches/batch_01abc.
const sampleJSON = `{
  "id": "batch_01abc",
  "object": "batch",
  "endpoint": "/v1/chat/completions",
  "status": "completed",
  "input_file_id": "file_abc123",
  "output_file_id": "file_output_xyz",
  "error_file_id": null,
  "completion_window": "24h",
  "request_counts": {
    "total": 2,
    "completed": 2,
    "failed": 0
  },
  "created_at": 1710000000,
  "in_progress_at": 1710000060,
  "completed_at": 1710003600,
  "expires_at": 1710086400,
  "metadata": {
    "job": "nightly"
  },
  "errors": null
}`

// countingServer starts a fresh httptest server whose handler counts its
// requests. The server is closed when the test ends.
func countingServer(t *testing.T, h func(n int64, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var count atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(count.Add(1), w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &count
}

// newTestClient returns a Client for baseURL with tiny backoffs, so tests
// never wait long; mutate may adjust the config.
func newTestClient(t *testing.T, baseURL string, mutate func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:        baseURL,
		APIKey:         testKey,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     2 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// waitRecorder replaces Client.wait: it records each requested wait and
// returns at once (or with ctx.Err() if ctx is already done).
type waitRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (w *waitRecorder) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.waits = append(w.waits, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waitRecorder) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.waits...)
}

func recordWaits(c *Client) *waitRecorder {
	w := &waitRecorder{}
	c.wait = w.wait
	return w
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = testutil.SyncBuffer
