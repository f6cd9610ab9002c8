package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// createAnswer is what a fake upstream answers a create with.
const createAnswer = `{"id":"batch_new","object":"batch","endpoint":"/v1/chat/completions","status":"validating",
	"input_file_id":"file_in","completion_window":"24h","created_at":1710000000,"metadata":{"job":"nightly"}}`

func TestCreateBatchRequestShape(t *testing.T) {
	t.Parallel()
	req := wire.CreateBatchRequest{
		InputFileID:        "file_in",
		Endpoint:           "/v1/chat/completions",
		CompletionWindow:   "24h",
		Metadata:           map[string]string{"job": "nightly", "html": "<a&b>"},
		OutputExpiresAfter: &wire.OutputExpiresAfter{Anchor: "created_at", Seconds: 3600},
	}
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodPost:
			t.Errorf("method = %q", r.Method)
		case r.URL.Path != "/proxy/v1/batches" || r.URL.RawQuery != "":
			t.Errorf("URL = %q", r.URL)
		case r.Header.Get("Content-Type") != "application/json":
			t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
		case r.Header.Get("Accept") != "application/json":
			t.Errorf("Accept = %q", r.Header.Get("Accept"))
		case r.Header.Get("Authorization") != "Bearer "+testKey:
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		want := map[string]any{
			"input_file_id": "file_in", "endpoint": "/v1/chat/completions", "completion_window": "24h",
			"metadata":             map[string]any{"job": "nightly", "html": "<a&b>"},
			"output_expires_after": map[string]any{"anchor": "created_at", "seconds": 3600.0},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("body = %v, want %v", got, want)
		}
		io.WriteString(w, createAnswer)
	})
	c := newTestClient(t, srv.URL+"/proxy/", nil)
	b, err := c.CreateBatch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, b, &batchv1.Batch{
		Id: "batch_new", Object: "batch", Endpoint: "/v1/chat/completions",
		Status: batchv1.BatchStatus_BATCH_STATUS_VALIDATING, UpstreamStatus: "validating",
		InputFileId: "file_in", CompletionWindow: "24h", CreatedAt: proto.Int64(1710000000),
		Metadata: &batchv1.Metadata{Pairs: map[string]string{"job": "nightly"}},
	})
	if count.Load() != 1 {
		t.Errorf("requests = %d", count.Load())
	}
}

func TestCreateBatchOmitsOptionalFields(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if want := `{"input_file_id":"f","endpoint":"/v1/embeddings","completion_window":"24h"}`; string(body) != want {
			t.Errorf("body = %s, want %s", body, want)
		}
		io.WriteString(w, `{"id":"batch_x"}`)
	})
	c := newTestClient(t, srv.URL, nil)
	if _, err := c.CreateBatch(context.Background(), wire.CreateBatchRequest{InputFileID: "f", Endpoint: "/v1/embeddings", CompletionWindow: "24h"}); err != nil {
		t.Fatal(err)
	}
}

// TestCreateBatchOneAttempt: whatever goes wrong, a create is sent once,
// and Classify says whether it may have created a batch.
func TestCreateBatchOneAttempt(t *testing.T) {
	t.Parallel()
	status := func(code int, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(code)
			fmt.Fprintf(w, body, r.Header.Get("Authorization"))
		}
	}
	hangUpAfterReading := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}
	reset := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
		}
	}
	tests := []struct {
		name        string
		handler     func(w http.ResponseWriter, r *http.Request)
		wantErr     error
		wantStatus  int
		wantApplied bool
	}{
		{"400", status(400, `{"error":{"message":"bad %s","type":"invalid_request_error","code":"invalid_endpoint"}}`), nil, 400, false},
		{"401", status(401, `{"error":{"message":"key %s","type":"invalid_api_key","code":"401"}}`), nil, 401, false},
		{"408", status(408, `{"error":{"message":"%s"}}`), nil, 408, false},
		{"409", status(409, `{"error":{"message":"%s","type":"conflict"}}`), nil, 409, false},
		{"429", status(429, `{"error":{"message":"%s","type":"rate_limit_error"}}`), nil, 429, false},
		{"500", status(500, `{"error":{"message":"%s","type":"api_error"}}`), nil, 500, true},
		{"503", status(503, `{"error":{"message":"%s","type":"api_error"}}`), nil, 503, true},
		{"hang up after reading", hangUpAfterReading, ErrUnreachable, 0, true},
		{"reset after reading", reset, ErrUnreachable, 0, true},
		{"slow answer", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body) // the server notices a hang-up only once the body is read
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, ErrTimeout, 0, true},
		{"malformed 2xx", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"id":`) }, ErrMalformedResponse, 0, true},
		{"2xx without id", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"object":"batch"}`) }, ErrMalformedResponse, 0, true},
		{"2xx too large", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"id":"b","pad":"`+strings.Repeat("p", 2048)+`"}`)
		}, ErrResponseTooLarge, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) { tt.handler(w, r) })
			c := newTestClient(t, srv.URL, func(c *Config) {
				c.AttemptTimeout = 500 * time.Millisecond
				c.MaxBodyBytes = 1024
			})
			w := recordWaits(c)
			b, err := c.CreateBatch(context.Background(), wire.CreateBatchRequest{InputFileID: "f", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
			if err == nil || b != nil {
				t.Fatalf("got %v, %v; want an error", b, err)
			}
			var ue *Error
			switch {
			case tt.wantStatus != 0:
				if !errors.As(err, &ue) || ue.HTTPStatus != tt.wantStatus {
					t.Fatalf("err = %v, want HTTP %d", err, tt.wantStatus)
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n := count.Load(); n != 1 {
				t.Errorf("requests = %d, want exactly 1", n)
			}
			if s := c.Stats(); s.Requests != 1 || s.Retries != 0 || len(w.get()) != 0 {
				t.Errorf("Stats = %+v, waits %v", s, w.get())
			}
			if got := Classify(err).MayHaveApplied; got != tt.wantApplied {
				t.Errorf("MayHaveApplied = %v, want %v (err %v)", got, tt.wantApplied, err)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("API key leaked: %v", err)
			}
		})
	}
}

func TestCreateBatchNothingSent(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, createAnswer) })
	tests := []struct {
		name    string
		base    string
		ctx     context.Context
		wantErr error
	}{
		{"connection refused", "http://" + addr, context.Background(), ErrUnreachable},
		{"canceled before", srv.URL, canceled, context.Canceled},
		{"key with control characters", srv.URL, WithAPIKey(context.Background(), "k\n"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, tt.base, nil)
			_, err := c.CreateBatch(tt.ctx, wire.CreateBatchRequest{InputFileID: "f"})
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if Classify(err).MayHaveApplied {
				t.Errorf("MayHaveApplied = true for %v", err)
			}
			if s := c.Stats(); s.Requests > 1 || s.Retries != 0 {
				t.Errorf("Stats = %+v", s)
			}
		})
	}
	t.Cleanup(func() {
		if n := count.Load(); n != 0 {
			t.Errorf("%d requests reached the upstream", n)
		}
	})
}

func TestListBatches(t *testing.T) {
	t.Parallel()
	const page = `{"object":"list","data":[{"id":"batch_2","status":"in_progress"},{"id":"batch_1","status":"completed"}],
		"first_id":"batch_2","last_id":"batch_1","has_more":true}`
	tests := []struct {
		name      string
		after     string
		limit     int
		wantQuery string
	}{
		{"no parameters", "", 0, ""},
		{"after", "batch_3", 0, "after=batch_3"},
		{"limit", "", 2, "limit=2"},
		{"both", "batch_3", 100, "after=batch_3&limit=100"},
		{"negative limit sends none", "", -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v1/batches" || r.URL.RawQuery != tt.wantQuery {
					t.Errorf("request = %s %s, want query %q", r.Method, r.URL, tt.wantQuery)
				}
				io.WriteString(w, page)
			})
			c := newTestClient(t, srv.URL, nil)
			got, err := c.ListBatches(context.Background(), tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			assertProtoEqual(t, got, &batchv1.ListBatchesResponse{
				Batches: []*batchv1.Batch{
					{Id: "batch_2", Status: batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, UpstreamStatus: "in_progress"},
					{Id: "batch_1", Status: batchv1.BatchStatus_BATCH_STATUS_COMPLETED, UpstreamStatus: "completed"},
				},
				FirstId: "batch_2", LastId: "batch_1", HasMore: true,
			})
			if count.Load() != 1 {
				t.Errorf("requests = %d", count.Load())
			}
		})
	}
}

func TestListBatchesErrors(t *testing.T) {
	t.Parallel()
	t.Run("invalid after sends nothing", func(t *testing.T) {
		t.Parallel()
		srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"data":[]}`) })
		c := newTestClient(t, srv.URL, nil)
		for _, after := range []string{"a&limit=1", "../x", "a b", strings.Repeat("a", MaxBatchIDLen+1)} {
			if _, err := c.ListBatches(context.Background(), after, 0); !errors.Is(err, ErrInvalidBatchID) {
				t.Errorf("after %q: err = %v, want ErrInvalidBatchID", after, err)
			}
		}
		if count.Load() != 0 {
			t.Errorf("requests = %d", count.Load())
		}
	})
	t.Run("item without id not retried", func(t *testing.T) {
		t.Parallel()
		srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"data":[{"id":"b"},{"status":"completed"}]}`)
		})
		c := newTestClient(t, srv.URL, nil)
		if _, err := c.ListBatches(context.Background(), "", 0); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("err = %v, want ErrMalformedResponse", err)
		}
		if count.Load() != 1 {
			t.Errorf("requests = %d", count.Load())
		}
	})
}

func TestCancelBatch(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodPost:
			t.Errorf("method = %q", r.Method)
		case r.URL.Path != "/v1/batches/batch_01abc/cancel":
			t.Errorf("path = %q", r.URL.Path)
		case r.ContentLength != 0 || r.Header.Get("Content-Type") != "":
			t.Errorf("a body was sent: length %d, type %q", r.ContentLength, r.Header.Get("Content-Type"))
		}
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"id":"batch_01abc","status":"cancelling","cancelling_at":1710000100}`)
	})
	c := newTestClient(t, srv.URL, nil)
	b, err := c.CancelBatch(context.Background(), "batch_01abc")
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, b, &batchv1.Batch{
		Id: "batch_01abc", Status: batchv1.BatchStatus_BATCH_STATUS_CANCELLING, UpstreamStatus: "cancelling",
		CancellingAt: proto.Int64(1710000100),
	})
	if count.Load() != 2 {
		t.Errorf("requests = %d, want 2 (one retry)", count.Load())
	}
}

func TestCancelBatchErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		id       string
		body     string
		status   int
		wantErr  error
		wantReqs int64
	}{
		{"answer for another batch", "batch_mine", `{"id":"batch_other","status":"cancelling"}`, 200, ErrMalformedResponse, 1},
		{"invalid id", "batch_1/../x", "", 200, ErrInvalidBatchID, 0},
		{"404", "batch_gone", `{"error":{"type":"not_found_error"}}`, 404, nil, 1},
		{"500 retried", "batch_1", ``, 500, nil, DefaultMaxAttempts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			c := newTestClient(t, srv.URL, nil)
			b, err := c.CancelBatch(context.Background(), tt.id)
			if b != nil || err == nil {
				t.Fatalf("got %v, %v", b, err)
			}
			var ue *Error
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) || tt.wantErr == nil && (!errors.As(err, &ue) || ue.HTTPStatus != tt.status) {
				t.Errorf("err = %v, want %v / HTTP %d", err, tt.wantErr, tt.status)
			}
			if strings.Contains(err.Error(), "batch_other") {
				t.Errorf("error quotes the body: %v", err)
			}
			if count.Load() != tt.wantReqs {
				t.Errorf("requests = %d, want %d", count.Load(), tt.wantReqs)
			}
		})
	}
}
