package telemetry

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"google.golang.org/grpc"

	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/testutil"
)

// TestMain fails the package when a test leaves a goroutine behind: gRPC
// servers and clients, HTTP connections, the OTLP exporter and the span
// batcher must all stop with their test. No goroutine is ignored.
func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m)
}

// noEnv is a Getenv for an empty environment: tracing off.
func noEnv(string) string { return "" }

// env returns a Getenv reading vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// newTelemetry returns a Telemetry with tracing off (or on, through exp
// when opts sets spanExporter), shut down at the end of the test.
func newTelemetry(t testing.TB, opts Options) *Telemetry {
	t.Helper()
	if opts.Getenv == nil {
		opts.Getenv = noEnv
	}
	tel, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel
}

// families is one parsed scrape.
type families map[string]*dto.MetricFamily

// scrape serves GET /metrics from tel's handler and parses it.
func scrape(t testing.TB, tel *Telemetry) families {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// series returns the series of family name whose labels include all of
// want.
func (f families) series(name string, want map[string]string) []*dto.Metric {
	mf := f[name]
	if mf == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range mf.GetMetric() {
		got := labels(m)
		if hasAll(got, want) {
			out = append(out, m)
		}
	}
	return out
}

// value returns the value of the one series of family name whose labels
// include want: a counter's or gauge's value, a histogram's sample count.
// It fails the test unless exactly one series matches.
func (f families) value(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	ms := f.series(name, want)
	if len(ms) != 1 {
		t.Fatalf("%s%v: %d series match, want 1; all: %v", name, want, len(ms), f.labelSets(name))
	}
	return metricValue(ms[0])
}

// labelSets lists the label sets of family name, for failure messages.
func (f families) labelSets(name string) []map[string]string {
	var out []map[string]string
	if mf := f[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			out = append(out, labels(m))
		}
	}
	return out
}

// labelValues returns the sorted distinct values of label across family
// name.
func (f families) labelValues(name, label string) []string {
	set := map[string]bool{}
	for _, ls := range f.labelSets(name) {
		if v, ok := ls[label]; ok {
			set[v] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func hasAll(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// L builds a label set: L("code", "200", "route", "/x").
func L(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// routed serves h behind callinfo.HTTPMiddleware and tel.HTTPMiddleware,
// as the gateway does, with h recording route in the callinfo.Record as
// the gateway's muxes do.
func routed(tel *Telemetry, route string, h http.Handler) http.Handler {
	return callinfo.HTTPMiddleware(tel.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		callinfo.FromContext(r.Context()).SetRoute(route)
		h.ServeHTTP(w, r)
	})))
}

// grpcServerOptions instruments a test gRPC server as the gateway does:
// the tracing options, then the metric interceptors.
func grpcServerOptions(tel *Telemetry) []grpc.ServerOption {
	return append(tel.GRPCTracingOptions(),
		grpc.ChainUnaryInterceptor(tel.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(tel.StreamServerInterceptor()),
	)
}
