package reqlog_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"log/slog"

	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/reqlog"
	"github.com/batchgate/batchgate/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// logBuffer is a concurrency-safe log sink.
type logBuffer = testutil.SyncBuffer

func logLines(t *testing.T, b *logBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHTTPMiddleware(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		incoming string
		keep     bool
	}{
		{"generated", "", false},
		{"caller's id kept", "req-123_abc.9", true},
		{"malformed id replaced", "bad id\n", false},
		{"overlong id replaced", strings.Repeat("a", 65), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			var seen string
			h := callinfo.HTTPMiddleware(reqlog.HTTPMiddleware(reqlog.Options{
				Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
			}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec := callinfo.FromContext(r.Context())
				rec.SetCaller(callinfo.Caller{Name: "svc-a"}) // what authentication does
				seen = rec.RequestID
				if r.Header.Get(callinfo.Header) != seen {
					t.Errorf("id not forwarded in the request header")
				}
				w.WriteHeader(http.StatusTeapot)
				w.(http.Flusher).Flush()
			})))
			req := httptest.NewRequest(http.MethodGet, "/v1/batches/b", nil)
			if tt.incoming != "" {
				req.Header.Set(callinfo.Header, tt.incoming)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get(callinfo.Header)
			if got == "" || got != seen || (tt.keep && got != tt.incoming) || (!tt.keep && got == tt.incoming) {
				t.Fatalf("request id %q (handler saw %q, caller sent %q)", got, seen, tt.incoming)
			}
			if !rec.Flushed {
				t.Error("Flush did not reach the underlying writer")
			}
			lines := logLines(t, &logs)
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1", len(lines))
			}
			l := lines[0]
			if l["code"] != float64(http.StatusTeapot) || l["request_id"] != got || l["caller"] != "svc-a" || l["method"] != "GET" || l["path"] != "/v1/batches/b" {
				t.Fatalf("log line %v", l)
			}
		})
	}
}

func TestGRPCInterceptors(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	o := reqlog.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	// authenticate stands in for the auth interceptor: it names the caller
	// in the call's record (and a context that the logging interceptor,
	// outside it, never sees).
	type callerKey struct{}
	authUnary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		callinfo.FromContext(ctx).SetCaller(callinfo.Caller{Name: "svc-b"})
		return h(context.WithValue(ctx, callerKey{}, "svc-b"), req)
	}
	authStream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		callinfo.FromContext(ss.Context()).SetCaller(callinfo.Caller{Name: "svc-b"})
		return h(srv, ctxStream{ss, context.WithValue(ss.Context(), callerKey{}, "svc-b")})
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(callinfo.UnaryServerInterceptor(), reqlog.UnaryInterceptor(o), authUnary),
		grpc.ChainStreamInterceptor(callinfo.StreamServerInterceptor(), reqlog.StreamInterceptor(o), authStream),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), callinfo.Header, "abc-1")
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get(callinfo.Header); len(got) != 1 || got[0] != "abc-1" {
		t.Fatalf("x-request-id header = %v, want [abc-1]", got)
	}
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"}); err == nil {
		t.Fatal("want NOT_FOUND for an unknown service")
	}
	stream, err := hc.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	srv.Stop() // ends the stream, which logs its line once its handler returns

	var lines []map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if lines = logLines(t, &logs); len(lines) >= 3 {
			break
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3: %v", len(lines), lines)
	}
	want := []struct{ method, code string }{
		{"/grpc.health.v1.Health/Check", "OK"},
		{"/grpc.health.v1.Health/Check", "NotFound"},
		{"/grpc.health.v1.Health/Watch", ""},
	}
	for i, w := range want {
		l := lines[i]
		if l["method"] != w.method || (w.code != "" && l["code"] != w.code) || l["caller"] != "svc-b" || l["request_id"] == "" {
			t.Errorf("line %d = %v, want method %s code %s", i, l, w.method, w.code)
		}
	}
	if lines[0]["request_id"] != "abc-1" {
		t.Errorf("first line request_id = %v, want abc-1", lines[0]["request_id"])
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// TestHTTPCallerFromInterceptor: a REST call served in process passes the
// request's context (and so its record) through the gRPC interceptors,
// where authentication names the caller for the HTTP log line.
func TestHTTPCallerFromInterceptor(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	o := reqlog.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	authUnary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		callinfo.FromContext(ctx).SetCaller(callinfo.Caller{Name: "svc-c"}) // what authentication does
		return h(ctx, req)
	}
	h := callinfo.HTTPMiddleware(reqlog.HTTPMiddleware(o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = authUnary(r.Context(), nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) { return nil, nil })
	})))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/batches/b", nil))
	lines := logLines(t, &logs)
	if len(lines) != 1 || lines[0]["caller"] != "svc-c" {
		t.Fatalf("lines %v", lines)
	}
}
