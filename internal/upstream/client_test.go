package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/testutil"
)

func sampleBatch() *batchv1.Batch { return testutil.SampleBatch() }

func assertProtoEqual(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}

func TestGetBatchSampleAndRequestShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		prefix   string // appended to the server URL to form BaseURL
		wantPath string
	}{
		{"no prefix", "", "/v1/batches/batch_01abc"},
		{"trailing slash", "/", "/v1/batches/batch_01abc"},
		{"prefix", "/proxy/openai", "/proxy/openai/v1/batches/batch_01abc"},
		{"prefix with trailing slashes", "/proxy//", "/proxy/v1/batches/batch_01abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				switch {
				case r.Method != http.MethodGet:
					t.Errorf("method = %q", r.Method)
				case r.URL.Path != tt.wantPath || r.RequestURI != tt.wantPath:
					t.Errorf("path = %q (RequestURI %q), want %q", r.URL.Path, r.RequestURI, tt.wantPath)
				case r.Header.Get("Authorization") != "Bearer "+testKey:
					t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
				case r.Header.Get("Accept") != "application/json":
					t.Errorf("Accept = %q", r.Header.Get("Accept"))
				case r.Header.Get("User-Agent") != "batchgate-test":
					t.Errorf("User-Agent = %q", r.Header.Get("User-Agent"))
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, sampleJSON)
			})
			c := newTestClient(t, srv.URL+tt.prefix, func(c *Config) { c.UserAgent = "batchgate-test" })
			got, err := c.GetBatch(context.Background(), "batch_01abc")
			if err != nil {
				t.Fatalf("GetBatch: %v", err)
			}
			assertProtoEqual(t, got, sampleBatch())
			if n := count.Load(); n != 1 {
				t.Errorf("requests = %d, want 1", n)
			}
			if s := c.Stats(); s != (Stats{Requests: 1}) {
				t.Errorf("Stats = %+v", s)
			}
		})
	}
}

func TestGetBatchDefaultUserAgentAndNoKey(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		if ua := r.Header.Get("User-Agent"); ua != DefaultUserAgent {
			t.Errorf("User-Agent = %q", ua)
		}
		if _, ok := r.Header["Authorization"]; ok {
			t.Errorf("Authorization sent without an API key")
		}
		io.WriteString(w, `{"id":"b"}`)
	})
	c := newTestClient(t, srv.URL, func(c *Config) { c.APIKey = "" })
	if _, err := c.GetBatch(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
}

func TestGetBatchStatusTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status    int
		typ       string
		code      string // JSON literal: a string or a number
		wantCode  string
		retryable bool
	}{
		{400, "invalid_request_error", `"invalid_batch"`, "invalid_batch", false},
		{401, "invalid_api_key", `"401"`, "401", false},
		{402, "insufficient_balance", `402`, "402", false},
		{403, "permission_error", `null`, "", false},
		{404, "not_found_error", `"batch_not_found"`, "batch_not_found", false},
		{408, "timeout", `408`, "408", true},
		{409, "conflict", `"conflict"`, "conflict", true},
		{429, "rate_limit_error", `"rate_limit_exceeded"`, "rate_limit_exceeded", true},
		{500, "api_error", `500`, "500", true},
		{502, "api_error", `"bad_gateway"`, "bad_gateway", true},
		{503, "api_error", `"overloaded"`, "overloaded", true},
		{504, "api_error", `"gateway_timeout"`, "gateway_timeout", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				// The message echoes the key, as some upstreams do.
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s","type":%q,"param":"batch_id","code":%s}}`,
					r.Header.Get("Authorization"), tt.typ, tt.code)
			})
			c := newTestClient(t, srv.URL, nil)
			w := recordWaits(c)
			_, err := c.GetBatch(context.Background(), "batch_01abc")
			var ue *Error
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if ue.HTTPStatus != tt.status || ue.Type != tt.typ || ue.Code != tt.wantCode || ue.Param != "batch_id" {
				t.Errorf("Error = %+v", ue)
			}
			if !strings.HasPrefix(ue.Message, "Incorrect API key provided") {
				t.Errorf("Message = %q", ue.Message)
			}
			for _, s := range []string{err.Error(), ue.Message} {
				if strings.Contains(s, testKey) {
					t.Errorf("API key leaked: %q", s)
				}
			}
			if strings.Contains(err.Error(), "Incorrect API key") {
				t.Errorf("error string carries the upstream message: %q", err.Error())
			}
			wantReq, wantRetries := int64(1), uint64(0)
			if tt.retryable {
				wantReq, wantRetries = DefaultMaxAttempts, DefaultMaxAttempts-1
			}
			if n := count.Load(); n != wantReq {
				t.Errorf("requests = %d, want %d", n, wantReq)
			}
			if got := len(w.get()); got != int(wantRetries) {
				t.Errorf("waits = %d, want %d", got, wantRetries)
			}
			wantStats := Stats{Requests: uint64(wantReq), Retries: wantRetries}
			if tt.status == http.StatusTooManyRequests {
				wantStats.RateLimited = uint64(wantReq)
			}
			if s := c.Stats(); s != wantStats {
				t.Errorf("Stats = %+v, want %+v", s, wantStats)
			}
		})
	}
}

func TestErrorEnvelopeVariants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header map[string]string
		body   string
		want   Error
	}{
		{"empty body", nil, "", Error{HTTPStatus: 400}},
		{"html", nil, "<html><body>Bad Gateway</body></html>", Error{HTTPStatus: 400}},
		{"truncated envelope", nil, `{"error":{"type":"x"`, Error{HTTPStatus: 400}},
		{"no error member", nil, `{"detail":"nope"}`, Error{HTTPStatus: 400}},
		{"error is a string", nil, `{"error":"plain text"}`, Error{HTTPStatus: 400, Message: "plain text"}},
		{"error is a number", nil, `{"error":5}`, Error{HTTPStatus: 400}},
		{"error is null", nil, `{"error":null}`, Error{HTTPStatus: 400}},
		{"wrong field types", nil, `{"error":{"type":{"a":1},"code":[1],"param":null,"message":7}}`, Error{HTTPStatus: 400, Message: "7"}},
		{"float code", nil, `{"error":{"code":1.5e2}}`, Error{HTTPStatus: 400, Code: "1.5e2"}},
		{"control chars and long type", nil,
			`{"error":{"type":"a\nb` + strings.Repeat("x", 300) + `"}}`,
			Error{HTTPStatus: 400, Type: "ab" + strings.Repeat("x", maxEnvelopeFieldLen-2)}},
		{"key in type", nil, `{"error":{"type":"` + testKey + `"}}`, Error{HTTPStatus: 400, Type: "[redacted]"}},
		{"oversized body", nil, `{"error":{"type":"x","pad":"` + strings.Repeat("p", maxErrorBodyBytes) + `"}}`, Error{HTTPStatus: 400}},
		{"retry-after on a 400", map[string]string{"Retry-After": "7"}, "", Error{HTTPStatus: 400, RetryAfter: 7 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, tt.body)
			})
			c := newTestClient(t, srv.URL, nil)
			_, err := c.GetBatch(context.Background(), "b")
			var ue *Error
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if *ue != tt.want {
				t.Errorf("Error = %+v, want %+v", *ue, tt.want)
			}
			if count.Load() != 1 {
				t.Errorf("requests = %d, want 1", count.Load())
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("API key leaked: %q", err)
			}
		})
	}
}

func TestRetryAfterThenSuccess(t *testing.T) {
	t.Parallel()
	date := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name     string
		status   int
		header   map[string]string
		wantWait time.Duration // lower bound on the one recorded wait
		maxWait  time.Duration // upper bound
	}{
		{"Retry-After 0", 429, map[string]string{"Retry-After": "0"}, 0, 10 * time.Millisecond},
		{"Retry-After 1", 429, map[string]string{"Retry-After": "1"}, time.Second, time.Second},
		{"Retry-After-Ms", 429, map[string]string{"Retry-After-Ms": "1500"}, 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"Retry-After-Ms wins", 503, map[string]string{"Retry-After-Ms": "20", "Retry-After": "9"}, 20 * time.Millisecond, 20 * time.Millisecond},
		{"HTTP date", 503, map[string]string{"Retry-After": date}, 20 * time.Second, 30 * time.Second},
		{"capped", 429, map[string]string{"Retry-After": "86400"}, DefaultMaxRetryAfter, DefaultMaxRetryAfter},
		{"garbage", 429, map[string]string{"Retry-After": "soon"}, 0, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					for k, v := range tt.header {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tt.status)
					io.WriteString(w, `{"error":{"type":"rate_limit_error"}}`)
					return
				}
				io.WriteString(w, sampleJSON)
			})
			c := newTestClient(t, srv.URL, nil)
			w := recordWaits(c)
			got, err := c.GetBatch(context.Background(), "batch_01abc")
			if err != nil {
				t.Fatalf("GetBatch: %v", err)
			}
			assertProtoEqual(t, got, sampleBatch())
			if count.Load() != 2 {
				t.Errorf("requests = %d, want 2", count.Load())
			}
			waits := w.get()
			if len(waits) != 1 || waits[0] < tt.wantWait || waits[0] > tt.maxWait {
				t.Errorf("waits = %v, want one in [%v, %v]", waits, tt.wantWait, tt.maxWait)
			}
		})
	}
}

// TestRetryAfterRealWait runs the real timer with a tiny Retry-After-Ms.
func TestRetryAfterRealWait(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After-Ms", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, `{"id":"b"}`)
	})
	c := newTestClient(t, srv.URL, nil)
	if _, err := c.GetBatch(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if count.Load() != 2 {
		t.Errorf("requests = %d", count.Load())
	}
	if s := c.Stats(); s != (Stats{Requests: 2, Retries: 1, RateLimited: 1}) {
		t.Errorf("Stats = %+v", s)
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := newTestClient(t, srv.URL, func(c *Config) {
		c.MaxAttempts = 5
		c.InitialBackoff = 100 * time.Millisecond
		c.MaxBackoff = 300 * time.Millisecond
	})
	w := recordWaits(c)
	_, err := c.GetBatch(context.Background(), "b")
	var ue *Error
	if !errors.As(err, &ue) || ue.HTTPStatus != 503 {
		t.Fatalf("err = %v", err)
	}
	// Intervals 100, 200, 300, 300ms, each ±50%.
	bounds := [][2]time.Duration{{50, 151}, {100, 301}, {150, 451}, {150, 451}}
	waits := w.get()
	if len(waits) != len(bounds) {
		t.Fatalf("waits = %v", waits)
	}
	for i, b := range bounds {
		if waits[i] < b[0]*time.Millisecond || waits[i] > b[1]*time.Millisecond {
			t.Errorf("wait %d = %v, want in [%dms, %dms]", i, waits[i], b[0], b[1])
		}
	}
}

func TestServerErrorsThenSuccess(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			w.WriteHeader(http.StatusBadGateway)
		default:
			io.WriteString(w, sampleJSON)
		}
	})
	c := newTestClient(t, srv.URL, nil) // real (tiny) waits
	got, err := c.GetBatch(context.Background(), "batch_01abc")
	if err != nil {
		t.Fatalf("GetBatch: %v", err)
	}
	assertProtoEqual(t, got, sampleBatch())
	if count.Load() != 3 {
		t.Errorf("requests = %d, want 3", count.Load())
	}
	if s := c.Stats(); s != (Stats{Requests: 3, Retries: 2}) {
		t.Errorf("Stats = %+v", s)
	}
}

func TestAllAttemptsFailReturnsLastError(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":{"type":"api_error","code":"attempt-%d"}}`, n)
	})
	c := newTestClient(t, srv.URL, func(c *Config) { c.MaxAttempts = 4 })
	_, err := c.GetBatch(context.Background(), "b")
	var ue *Error
	if !errors.As(err, &ue) || ue.Code != "attempt-4" {
		t.Fatalf("err = %v, want the 4th attempt's *Error", err)
	}
	if count.Load() != 4 {
		t.Errorf("requests = %d, want 4", count.Load())
	}
}

func TestCallerDeadlineDuringSlowAttempt(t *testing.T) {
	t.Parallel()
	released := make(chan struct{})
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		defer close(released)
		<-r.Context().Done() // only the client going away releases us
	})
	c := newTestClient(t, srv.URL, nil) // AttemptTimeout 10s: the caller's deadline comes first
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.GetBatch(ctx, "b")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v wraps an upstream sentinel", err)
	}
	if s := c.Stats(); s.Requests != 1 || s.Retries != 0 {
		t.Errorf("Stats = %+v, want one request", s)
	}
	// On a badly loaded machine the deadline may pass before the handler
	// runs at all; when it did run, it must have been released.
	if count.Load() > 0 {
		select {
		case <-released:
		case <-time.After(10 * time.Second):
			t.Fatal("server handler still blocked after the caller gave up")
		}
	}
}

func TestCallerCancelDuringAttempt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		cancel()
		<-r.Context().Done()
	})
	c := newTestClient(t, srv.URL, nil)
	_, err := c.GetBatch(ctx, "b")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if count.Load() != 1 {
		t.Errorf("requests = %d, want 1", count.Load())
	}
}

func TestCallerCancelDuringWait(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := newTestClient(t, srv.URL, func(c *Config) {
		c.InitialBackoff = time.Hour
		c.MaxBackoff = time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waited time.Duration
	c.wait = func(ctx context.Context, d time.Duration) error {
		waited = d
		cancel()                // the caller gives up while we wait...
		return sleepCtx(ctx, d) // ...so the real, hour-long wait returns at once
	}
	_, err := c.GetBatch(ctx, "b")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if waited < 30*time.Minute {
		t.Errorf("wait = %v, want about an hour", waited)
	}
	if count.Load() != 1 {
		t.Errorf("requests = %d, want 1", count.Load())
	}
}

func TestCancelledBeforeStartSendsNothing(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {})
	c := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.GetBatch(ctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if count.Load() != 0 || c.Stats().Requests != 0 {
		t.Errorf("requests sent after cancel")
	}
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	c := newTestClient(t, srv.URL, func(c *Config) { c.AttemptTimeout = 20 * time.Millisecond })
	_, err := c.GetBatch(context.Background(), "b")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("per-attempt timeout must not look like the caller's deadline: %v", err)
	}
	// Count attempts on the client side: under heavy load an attempt may
	// time out before its request reaches the handler.
	if s := c.Stats(); s.Requests != DefaultMaxAttempts || s.Retries != DefaultMaxAttempts-1 {
		t.Errorf("Stats = %+v, want %d attempts", s, DefaultMaxAttempts)
	}
	if count.Load() > DefaultMaxAttempts {
		t.Errorf("server saw %d requests", count.Load())
	}
}

func TestWaitBeyondCallerDeadlineReturnsUpstreamError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header string
		mutate func(*Config)
	}{
		{"Retry-After beyond deadline", "30", nil},
		{"backoff beyond deadline", "", func(c *Config) { c.InitialBackoff, c.MaxBackoff = time.Hour, time.Hour }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(http.StatusTooManyRequests)
				io.WriteString(w, `{"error":{"type":"rate_limit_error","code":"rate_limit_exceeded"}}`)
			})
			c := newTestClient(t, srv.URL, tt.mutate)
			w := recordWaits(c)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.GetBatch(ctx, "b")
			var ue *Error
			if !errors.As(err, &ue) || ue.HTTPStatus != 429 {
				t.Fatalf("err = %v, want the 429 *Error", err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v looks like a deadline", err)
			}
			if tt.header != "" && ue.RetryAfter != 30*time.Second {
				t.Errorf("RetryAfter = %v", ue.RetryAfter)
			}
			if n := len(w.get()); n != 0 {
				t.Errorf("waited %d times", n)
			}
			if count.Load() != 1 {
				t.Errorf("requests = %d, want 1", count.Load())
			}
		})
	}
}

func TestMalformedBodiesNotRetried(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body string }{
		{"truncated", sampleJSON[:len(sampleJSON)/2]},
		{"malformed", `{"id":"b",,}`},
		{"wrong type id", `{"id":5}`},
		{"wrong type request_counts", `{"id":"b","request_counts":"x"}`},
		{"non-object", `["batch_01abc"]`},
		{"empty", ``},
		{"missing id", `{"object":"batch"}`},
		{"html", `<html>502</html>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, tt.body)
			})
			c := newTestClient(t, srv.URL, nil)
			_, err := c.GetBatch(context.Background(), "b")
			if !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("err = %v, want ErrMalformedResponse", err)
			}
			if count.Load() != 1 {
				t.Errorf("requests = %d, want 1", count.Load())
			}
			if len(tt.body) > 8 && strings.Contains(err.Error(), tt.body) {
				t.Errorf("error quotes the body: %v", err)
			}
		})
	}
}

func TestResponseSizeLimit(t *testing.T) {
	t.Parallel()
	const limit = 1024
	exact := `{"id":"b","pad":"` + strings.Repeat("p", limit-len(`{"id":"b","pad":""}`)) + `"}`
	if len(exact) != limit {
		t.Fatalf("bad fixture: %d", len(exact))
	}
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request)
		wantErr error
	}{
		{"exactly the limit", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, exact) }, nil},
		{"one byte over", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, exact+" ") }, ErrResponseTooLarge},
		{"much larger", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"id":"b","pad":"`+strings.Repeat("p", 1<<20)+`"}`)
		}, ErrResponseTooLarge},
		{"endless", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"id":"b","pad":"`)
			chunk := bytes.Repeat([]byte("p"), 4096)
			rc := http.NewResponseController(w)
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				if err := rc.Flush(); err != nil {
					return
				}
			}
		}, ErrResponseTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan struct{})
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				defer close(done)
				tt.handler(w, r)
			})
			c := newTestClient(t, srv.URL, func(c *Config) { c.MaxBodyBytes = limit })
			_, err := c.GetBatch(context.Background(), "b")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if count.Load() != 1 {
				t.Errorf("requests = %d, want 1", count.Load())
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("handler still writing after the client gave up")
			}
		})
	}
}

func TestConnectionFailures(t *testing.T) {
	t.Parallel()
	hijack := func(t *testing.T, w http.ResponseWriter, then func(net.Conn)) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		then(conn)
	}
	tests := []struct {
		name    string
		handler func(t *testing.T, w http.ResponseWriter)
	}{
		{"close before answering", func(t *testing.T, w http.ResponseWriter) {
			hijack(t, w, func(c net.Conn) { c.Close() })
		}},
		{"reset", func(t *testing.T, w http.ResponseWriter) {
			hijack(t, w, func(c net.Conn) {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0) // close sends RST
				}
				c.Close()
			})
		}},
		{"EOF mid-body", func(t *testing.T, w http.ResponseWriter) {
			hijack(t, w, func(c net.Conn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":\"b\",")
				c.Close()
			})
		}},
		{"garbage status line", func(t *testing.T, w http.ResponseWriter) {
			hijack(t, w, func(c net.Conn) {
				io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
				c.Close()
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
				tt.handler(t, w)
			})
			c := newTestClient(t, srv.URL, nil)
			_, err := c.GetBatch(context.Background(), "b")
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("err = %v, want ErrUnreachable", err)
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				t.Errorf("err = %v looks like a context error", err)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("API key leaked: %v", err)
			}
			if count.Load() != DefaultMaxAttempts {
				t.Errorf("requests = %d, want %d", count.Load(), DefaultMaxAttempts)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newTestClient(t, "http://"+addr, nil)
	_, err = c.GetBatch(context.Background(), "b")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("cause not kept: %v", err)
	}
	if s := c.Stats(); s.Requests != DefaultMaxAttempts || s.Retries != DefaultMaxAttempts-1 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestConnectionDropThenSuccess(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		io.WriteString(w, sampleJSON)
	})
	c := newTestClient(t, srv.URL, nil)
	got, err := c.GetBatch(context.Background(), "batch_01abc")
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, got, sampleBatch())
	if count.Load() != 2 {
		t.Errorf("requests = %d, want 2", count.Load())
	}
}

func TestInvalidIDsSendNothing(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, id string }{
		{"empty", ""},
		{"too long", strings.Repeat("a", MaxBatchIDLen+1)},
		{"slash", "/"},
		{"dot dot", ".."},
		{"dot", "."},
		{"a/b", "a/b"},
		{"escaped slash", "a%2Fb"},
		{"query", "a?b"},
		{"fragment", "a#b"},
		{"NUL", "a\x00b"},
		{"newline", "batch\n"},
		{"CR LF header injection", "b\r\nX-Evil: 1"},
		{"DEL", "a\x7f"},
		{"unicode", "bätch"},
		{"fullwidth solidus", "a\uff0fb"},
		{"invalid UTF-8", "a\xffb"},
		{"space", "a b"},
		{"leading space", " batch_01abc"},
		{"traversal", "../files/file_abc123/content"},
		{"cancel suffix", "batch_01abc/cancel"},
		{"backslash", `a\b`},
		{"semicolon", "a;b"},
		{"plus", "a+b"},
		{"dot in id", "batch.1"},
	}
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"id":"b"}`)
	})
	c := newTestClient(t, srv.URL, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.GetBatch(context.Background(), tt.id)
			if !errors.Is(err, ErrInvalidBatchID) {
				t.Fatalf("err = %v, want ErrInvalidBatchID", err)
			}
			if verr := ValidateBatchID(tt.id); verr == nil || verr.Error() != err.Error() {
				t.Errorf("ValidateBatchID = %v, GetBatch = %v", verr, err)
			}
		})
	}
	t.Cleanup(func() {
		if n := count.Load(); n != 0 {
			t.Errorf("invalid ids reached the upstream %d times", n)
		}
		if s := c.Stats(); s.Requests != 0 {
			t.Errorf("Stats = %+v", s)
		}
	})
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name string
		cfg  Config
	}{
		{"empty BaseURL", Config{}},
		{"relative", Config{BaseURL: "/v1"}},
		{"no scheme", Config{BaseURL: "api.token360.ai"}},
		{"ftp", Config{BaseURL: "ftp://api.token360.ai"}},
		{"no host", Config{BaseURL: "https://"}},
		{"query", Config{BaseURL: "https://api.token360.ai/?x=1"}},
		{"empty query", Config{BaseURL: "https://api.token360.ai/?"}},
		{"fragment", Config{BaseURL: "https://api.token360.ai/#x"}},
		{"empty fragment", Config{BaseURL: "https://api.token360.ai/#"}},
		{"user info", Config{BaseURL: "https://user:" + testKey + "@api.token360.ai"}},
		{"unparseable", Config{BaseURL: "http://[::1"}},
		{"key with newline", Config{BaseURL: "https://x", APIKey: testKey + "\n"}},
		{"user agent with newline", Config{BaseURL: "https://x", UserAgent: "a\r\nb"}},
		{"negative timeout", Config{BaseURL: "https://x", AttemptTimeout: -1}},
		{"negative attempts", Config{BaseURL: "https://x", MaxAttempts: -1}},
		{"negative body cap", Config{BaseURL: "https://x", MaxBodyBytes: -1}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("New(%+v) = %v, want an error", tt.cfg, c)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("API key leaked: %v", err)
			}
		})
	}

	c, err := New(Config{BaseURL: "HTTPS://api.token360.ai/proxy/"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		BaseURL:        "HTTPS://api.token360.ai/proxy/",
		AttemptTimeout: DefaultAttemptTimeout,
		MaxAttempts:    DefaultMaxAttempts,
		InitialBackoff: DefaultInitialBackoff,
		MaxBackoff:     DefaultMaxBackoff,
		MaxRetryAfter:  DefaultMaxRetryAfter,
		MaxBodyBytes:   DefaultMaxBodyBytes,
		UserAgent:      DefaultUserAgent,
	}
	got := c.cfg
	if got.HTTPClient == nil || got.HTTPClient.Timeout != 0 || got.Logger == nil {
		t.Errorf("HTTPClient/Logger defaults: %+v", got)
	}
	if tr, ok := got.HTTPClient.Transport.(*http.Transport); !ok || tr.MaxIdleConnsPerHost < 100 {
		t.Errorf("default transport not tuned: %#v", got.HTTPClient.Transport)
	}
	got.HTTPClient, got.Logger = nil, nil
	if got != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if u := c.batchURL("b"); u != "https://api.token360.ai/proxy/v1/batches/b" {
		t.Errorf("batchURL = %q", u)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/v1/files/file_abc123/content", http.StatusFound)
	})
	c := newTestClient(t, srv.URL, nil)
	_, err := c.GetBatch(context.Background(), "b")
	var ue *Error
	if !errors.As(err, &ue) || ue.HTTPStatus != http.StatusFound {
		t.Fatalf("err = %v, want a 302 *Error", err)
	}
	if count.Load() != 1 {
		t.Errorf("requests = %d", count.Load())
	}
}

func TestRetryLogHasNoSecrets(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	srv, _ := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":{"message":"upstream body text %s","type":"api_error"}}`, r.Header.Get("Authorization"))
	})
	c := newTestClient(t, srv.URL, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if _, err := c.GetBatch(context.Background(), "b"); err == nil {
		t.Fatal("want an error")
	}
	out := buf.String()
	if n := strings.Count(out, "upstream: retrying"); n != DefaultMaxAttempts-1 {
		t.Errorf("%d retry lines, want %d:\n%s", n, DefaultMaxAttempts-1, out)
	}
	if strings.Contains(out, testKey) || strings.Contains(out, "upstream body text") {
		t.Errorf("log leaks secrets or bodies:\n%s", out)
	}
}

// countingTransport counts the requests it passes on.
type countingTransport struct {
	next http.RoundTripper
	n    int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n++
	return c.next.RoundTrip(r)
}

func TestDefaultHTTPClientWrapped(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/moved") {
			http.Redirect(w, r, "/v1/batches/b", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte(`{"id":"b"}`))
	})
	hc := DefaultHTTPClient()
	if _, ok := hc.Transport.(*http.Transport); !ok {
		t.Fatalf("default transport is %T", hc.Transport)
	}
	ct := &countingTransport{next: hc.Transport}
	hc.Transport = ct
	c, err := New(Config{BaseURL: srv.URL, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetBatch(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetBatch(context.Background(), "moved"); err == nil {
		t.Fatal("a redirect was followed")
	}
	if ct.n != 2 {
		t.Fatalf("the wrapped transport saw %d requests, want 2", ct.n)
	}
}

func TestGetBatchRejectsAnotherBatch(t *testing.T) {
	t.Parallel()
	srv, n := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"id":"batch_other","status":"completed"}`))
	})
	c := newTestClient(t, srv.URL, nil)
	b, err := c.GetBatch(context.Background(), "batch_mine")
	if !errors.Is(err, ErrMalformedResponse) || b != nil {
		t.Fatalf("got %v, %v; want ErrMalformedResponse", b, err)
	}
	if strings.Contains(err.Error(), "batch_other") {
		t.Errorf("error quotes the body: %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests, want 1 (not retried)", n.Load())
	}
}
