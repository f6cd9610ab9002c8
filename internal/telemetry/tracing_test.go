package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// The caller's trace context in the tests below.
const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID  = "00f067aa0ba902b7"
	callerParent  = "00-" + callerTraceID + "-" + callerSpanID + "-01"
)

// headerLog records one header of the requests an upstream received.
type headerLog struct {
	mu   sync.Mutex
	name string
	got  []string
}

func (l *headerLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.got = append(l.got, r.Header.Get(l.name))
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *headerLog) values() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// TestTracing: a call over gRPC or HTTP, continuing the caller's
// traceparent, that makes an upstream request. With tracing on, the server
// span and the upstream client span are in the caller's trace, and the
// upstream got a traceparent naming the client span; with tracing off,
// nothing is recorded and the upstream gets no traceparent.
func TestTracing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		transport      string
		tracing        bool
		wantServerSpan string
	}{
		{"grpc", true, "grpc.health.v1.Health/Check"},
		{"grpc", false, ""},
		{"http", true, "GET /v1/batches/{batch_id}"},
		{"http", false, ""},
	} {
		t.Run(fmt.Sprintf("%s tracing=%v", tc.transport, tc.tracing), func(t *testing.T) {
			t.Parallel()
			exp := tracetest.NewInMemoryExporter()
			opts := Options{}
			if tc.tracing {
				opts.spanExporter = exp
			}
			tel := newTelemetry(t, opts)

			parents := &headerLog{name: "traceparent"}
			up := httptest.NewServer(parents.wrap(fakeUpstream(0)))
			defer up.Close()
			client := upstreamClient(t, tel)
			callUpstream := func(ctx context.Context) error {
				code, err := get(ctx, client, up.URL+"/v1/batches/batch_a")
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("upstream status %d", code)
				}
				return err
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			switch tc.transport {
			case "grpc":
				c := startGRPC(t, &testHealth{upstream: callUpstream}, grpcServerOptions(tel)...)
				ctx := metadata.AppendToOutgoingContext(ctx, "traceparent", callerParent)
				if got := (grpcCall{service: "upstream"}).do(ctx, c); got != codes.OK {
					t.Fatalf("Check: %v", got)
				}
			case "http":
				srv := httptest.NewServer(routed(tel, "/v1/batches/{batch_id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if err := callUpstream(r.Context()); err != nil {
						http.Error(w, err.Error(), http.StatusBadGateway)
					}
				})))
				defer srv.Close()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/batches/batch_a", nil)
				req.Header.Set("traceparent", callerParent)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET: %s", resp.Status)
				}
			}

			got := parents.values()
			if len(got) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(got))
			}
			if !tc.tracing {
				if got[0] != "" {
					t.Errorf("tracing off, yet upstream got traceparent %q", got[0])
				}
				if tel.tp != nil {
					t.Error("tracing off, yet an SDK provider exists")
				}
				return
			}

			server, client2 := waitSpans(t, exp, tc.wantServerSpan)
			if server.SpanKind != trace.SpanKindServer || client2.SpanKind != trace.SpanKindClient {
				t.Errorf("kinds: server span %v, client span %v", server.SpanKind, client2.SpanKind)
			}
			if id := server.SpanContext.TraceID().String(); id != callerTraceID {
				t.Errorf("server span trace %s, want the caller's %s", id, callerTraceID)
			}
			if p := server.Parent; !p.IsRemote() || p.SpanID().String() != callerSpanID {
				t.Errorf("server span parent %v, want the caller's remote span %s", p.SpanID(), callerSpanID)
			}
			if client2.SpanContext.TraceID() != server.SpanContext.TraceID() {
				t.Errorf("client span in trace %s, server span in %s", client2.SpanContext.TraceID(), server.SpanContext.TraceID())
			}
			if client2.Parent.SpanID() != server.SpanContext.SpanID() {
				t.Errorf("client span parent %s, want the server span %s", client2.Parent.SpanID(), server.SpanContext.SpanID())
			}
			want := "00-" + callerTraceID + "-" + client2.SpanContext.SpanID().String() + "-01"
			if got[0] != want {
				t.Errorf("upstream traceparent %q, want %q", got[0], want)
			}
			if tc.transport == "http" {
				if v, ok := attr(server, "http.route"); !ok || v != "/v1/batches/{batch_id}" {
					t.Errorf("http.route = %q, %v", v, ok)
				}
			}
			if svc, ok := resourceAttr(server, "service.name"); !ok || svc != "batchgate" {
				t.Errorf("service.name = %q, %v", svc, ok)
			}
		})
	}
}

// waitSpans waits for the server span named serverName and the upstream
// client span (the server side records its span just after the caller got
// its answer).
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, serverName string) (server, client tracetest.SpanStub) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var haveServer, haveClient bool
		for _, s := range exp.GetSpans() {
			switch {
			case s.SpanKind == trace.SpanKindServer && s.Name == serverName:
				server, haveServer = s, true
			case s.SpanKind == trace.SpanKindClient && s.Name == "GET /v1/batches/{batch_id}":
				client, haveClient = s, true
			}
		}
		if haveServer && haveClient {
			return server, client
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range exp.GetSpans() {
				names = append(names, s.Name+"/"+s.SpanKind.String())
			}
			t.Fatalf("no server span %q and client span after 5s; spans: %v", serverName, names)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attr(s tracetest.SpanStub, key string) (string, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

func resourceAttr(s tracetest.SpanStub, key string) (string, bool) {
	if s.Resource == nil {
		return "", false
	}
	for _, a := range s.Resource.Attributes() {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

// TestTracingFromEnv: which variables turn tracing on, and which values
// New refuses.
func TestTracingFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		env      map[string]string
		on       bool
		endpoint string
		err      bool
	}{
		{name: "empty"},
		{name: "generic endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, on: true, endpoint: "http://collector:4317"},
		{name: "traces endpoint wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://collector:4317",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317",
		}, on: true, endpoint: "https://traces:4317"},
		{name: "traces endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317"}, on: true, endpoint: "https://traces:4317"},
		{name: "blank", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}},
		{name: "SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "TRUE"}},
		{name: "SDK not disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "false"}, on: true, endpoint: "http://c:4317"},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "grpc protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true, endpoint: "http://c:4317"},
		{name: "http protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, err: true},
		{name: "traces protocol wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://c:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/protobuf",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
		}, on: true, endpoint: "http://c:4317"},
		{name: "no scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, err: true},
		{name: "not http", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "unix:///tmp/otel.sock"}, err: true},
		{name: "garbage", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := tracingFromEnv(env(tc.env))
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if cfg.on != tc.on || cfg.endpoint != tc.endpoint {
				t.Errorf("on=%v endpoint=%q, want on=%v endpoint=%q", cfg.on, cfg.endpoint, tc.on, tc.endpoint)
			}
			if err != nil {
				if _, err := New(context.Background(), Options{Getenv: env(tc.env)}); err == nil {
					t.Error("New accepted it")
				}
			}
		})
	}
}

// fakeCollector is an OTLP/gRPC trace collector that keeps what it gets.
type fakeCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.ResourceSpans
	md    metadata.MD
}

func (c *fakeCollector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, req.GetResourceSpans()...)
	c.md, _ = metadata.FromIncomingContext(ctx)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestNewWithOTLPExporter: an endpoint in the environment turns tracing on
// with a real OTLP/gRPC exporter; Shutdown sends the spans not yet sent and
// stops it, leaving no goroutine behind (TestMain checks).
func TestNewWithOTLPExporter(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &fakeCollector{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, col)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); <-done }()

	var logs strings.Builder
	tel, err := New(context.Background(), Options{
		ServiceName: "batchgate-test",
		Logger:      slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)),
		Getenv: env(map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + lis.Addr().String(),
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if tel.tp == nil {
		t.Fatal("tracing off: no SDK provider")
	}
	h := routed(tel, "/v1/batches/{batch_id}", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/batches/batch_a", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	var names []string
	var service string
	for _, rs := range col.spans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				names = append(names, s.GetName())
			}
		}
	}
	if len(names) != 1 || names[0] != "GET /v1/batches/{batch_id}" {
		t.Errorf("collector got spans %q, want [GET /v1/batches/{batch_id}]", names)
	}
	if service != "batchgate-test" {
		t.Errorf("service.name %q", service)
	}
	if !strings.Contains(logs.String(), "tracing on") {
		t.Errorf("log: %s", logs.String())
	}
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestTracingOffProvider: without an endpoint, no SDK provider exists.
func TestTracingOffProvider(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, Options{Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})})
	if tel.tp != nil {
		t.Fatal("an SDK provider with tracing off")
	}
	// No stats handler: the interceptors only.
	if n := len(grpcServerOptions(tel)); n != 2 || tel.GRPCTracingOptions() != nil {
		t.Errorf("%d gRPC server options, want 2", n)
	}
}
