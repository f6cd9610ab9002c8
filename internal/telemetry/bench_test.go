package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
)

// The benchmarks measure what the instrumentation adds to a request, with
// tracing off (the default, and the ≤ 10 % budget of issue 4) and, for
// comparison, on with every span sampled and dropped by a no-op exporter:
//
//	go test -run '^$' -bench . -benchmem ./internal/telemetry/

// benchTelemetry returns a Telemetry for a benchmark variant: "off" or
// "on" (every span sampled, exported to nowhere).
func benchTelemetry(b *testing.B, variant string) *Telemetry {
	opts := Options{}
	if variant == "on" {
		opts.spanExporter = tracetest.NewNoopExporter()
	}
	return newTelemetry(b, opts)
}

// discardWriter is a reusable ResponseWriter that can flush.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}

func BenchmarkHTTPMiddleware(b *testing.B) {
	body := []byte(`{"id":"batch_abc","object":"batch","status":"completed"}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	for _, variant := range []string{"bare", "off", "on"} {
		b.Run("tracing="+variant, func(b *testing.B) {
			h := http.Handler(handler)
			if variant != "bare" {
				h = benchTelemetry(b, variant).HTTPMiddleware(handler)
			}
			req := httptest.NewRequest(http.MethodGet, "/v1/batches/batch_abc", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}

// stubTransport answers every request with 200 and a small body, without a
// network: what remains is the wrapper's own cost.
type stubTransport struct{ body string }

func (s stubTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(s.body))}, nil
}

func BenchmarkUpstreamTransport(b *testing.B) {
	base := stubTransport{body: `{"id":"batch_abc","object":"batch","status":"completed"}`}
	for _, variant := range []string{"bare", "off", "on"} {
		b.Run("tracing="+variant, func(b *testing.B) {
			rt := http.RoundTripper(base)
			if variant != "bare" {
				rt = benchTelemetry(b, variant).UpstreamTransport(base)
			}
			req := httptest.NewRequest(http.MethodGet, "http://upstream.test/v1/batches/batch_abc", nil)
			req.RequestURI = ""
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
}

// BenchmarkUpstreamLoopback is BenchmarkUpstreamTransport against a real
// loopback HTTP server: the overhead relative to an actual request.
func BenchmarkUpstreamLoopback(b *testing.B) {
	up := httptest.NewServer(fakeUpstream(0))
	defer up.Close()
	for _, variant := range []string{"bare", "off", "on"} {
		b.Run("tracing="+variant, func(b *testing.B) {
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			client := &http.Client{Transport: base}
			if variant != "bare" {
				client.Transport = benchTelemetry(b, variant).UpstreamTransport(base)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := get(ctx, client, up.URL+"/v1/batches/batch_abc"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnaryServerInterceptor(b *testing.B) {
	info := &grpc.UnaryServerInfo{FullMethod: "/batch.v1.BatchService/GetBatch"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, variant := range []string{"bare", "off"} {
		b.Run("tracing="+variant, func(b *testing.B) {
			call := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				return h(ctx, req)
			}
			if variant != "bare" {
				call = benchTelemetry(b, variant).UnaryServerInterceptor()
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, _ = call(ctx, nil, info, handler)
			}
		})
	}
}
