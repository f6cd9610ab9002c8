package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
)

// scrape fetches /metrics and parses it.
func scrape(t *testing.T, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := checkedClient(t).Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the sum of the series of family name whose labels include
// want (sample counts for histograms), or -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	sum, found := 0.0, false
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	if !found {
		return -1
	}
	return sum
}

func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	e := start(t, slowPolls, quietHeartbeat)
	for range 3 {
		if _, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: "batch_nope"}); err == nil {
			t.Fatal("want NotFound")
		}
	}
	if _, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted}); err != nil {
		t.Fatal(err)
	}
	code, _, _ := getJSON(t, e.BaseURL+"/v1/batches/"+simulator.DemoFailed, nil)
	if code != 200 {
		t.Fatalf("REST GetBatch: %d", code)
	}
	e.Sim.InjectFaults(simulator.DemoExpired, simulator.Fault{Status: 429, RetryAfter: "0"})
	if _, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoExpired}); err != nil {
		t.Fatal(err)
	}
	w := e.watch(t, simulator.DemoValidating)
	w.next(t)
	// A REST watch, which runs in process, is labelled with its caller too.
	resp, err := e.HTTP.Get(e.BaseURL + "/v1/batches/" + simulator.DemoCancelled + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	fams := scrape(t, e.BaseURL)
	tests := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"grpc_server_handled_total", map[string]string{"grpc_method": "GetBatch", "grpc_code": "NotFound"}, 3},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "GetBatch", "grpc_code": "OK"}, 2},
		{"grpc_server_handling_seconds", map[string]string{"grpc_method": "GetBatch"}, 5},
		{"batchgate_http_requests_total", map[string]string{"route": "/v1/batches/{batch_id}", "code": "200"}, 1},
		{"batchgate_upstream_requests_total", map[string]string{"code": "404"}, 3},
		{"batchgate_upstream_requests_total", map[string]string{"code": "429"}, 1},
		{"batchgate_upstream_requests_total", map[string]string{"code": "200"}, 4},
		{"batchgate_upstream_request_duration_seconds", map[string]string{"code": "200"}, 4},
		{"batchgate_upstream_retries_total", nil, 1},
		{"batchgate_upstream_rate_limited_total", nil, 1},
		{"batchgate_watchers", nil, 1},
		{"batchgate_pollers", nil, 1},
		{"batchgate_requests_by_caller_total", map[string]string{"caller": "anonymous", "transport": "grpc"}, 5},
		{"batchgate_requests_by_caller_total", map[string]string{"caller": "anonymous", "transport": "http"}, 2},
		{"batchgate_http_requests_total", map[string]string{"route": "/v1/batches/{batch_id}/watch", "code": "200"}, 1},
	}
	for _, tt := range tests {
		if got := value(fams, tt.name, tt.labels); got < tt.min {
			t.Errorf("%s%v = %v, want at least %v", tt.name, tt.labels, got, tt.min)
		}
	}
	for name := range fams {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == simulator.DemoCompleted || l.GetValue() == "batch_nope" {
					t.Errorf("%s has a batch id in label %s", name, l.GetName())
				}
			}
		}
	}
}

// callerCounts returns batchgate_requests_by_caller_total{transport} by
// caller label.
func callerCounts(fams map[string]*dto.MetricFamily, transport string) map[string]float64 {
	counts := map[string]float64{}
	for _, m := range fams["batchgate_requests_by_caller_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["transport"] == transport {
			counts[labels["caller"]] += m.GetCounter().GetValue()
		}
	}
	return counts
}

// TestCallerLabelCap: every token name of key mode gets a caller label of
// its own, however many there are; passthrough callers, whose names anyone
// can invent, get at most 100 labels, then "passthrough:other", never the
// "other" of names that are too long.
func TestCallerLabelCap(t *testing.T) {
	t.Parallel()
	const callers = 110
	tokens := make([]string, callers)
	lines := make([]string, callers)
	for i := range callers {
		tokens[i] = fmt.Sprintf("tok-%03d-0123456789abcdef", i)
		lines[i] = fmt.Sprintf("svc-%03d %s all", i, tokens[i])
	}
	tokensFile := writeTokens(t, "", lines...)
	tests := []struct {
		name  string
		mode  func(*config.Config)
		check func(t *testing.T, counts map[string]float64)
	}{
		{
			name: "key mode",
			mode: keyMode(tokensFile),
			check: func(t *testing.T, counts map[string]float64) {
				for i := range callers {
					if name := fmt.Sprintf("svc-%03d", i); counts[name] != 1 {
						t.Errorf("caller %q counted %v times, want 1", name, counts[name])
					}
				}
				if len(counts) != callers {
					t.Errorf("caller labels %v, want one per token name", counts)
				}
			},
		},
		{
			name: "passthrough",
			mode: passthroughMode,
			check: func(t *testing.T, counts map[string]float64) {
				own := 0
				for name, n := range counts {
					switch {
					case name == "passthrough:other":
					case strings.HasPrefix(name, "passthrough:") && len(name) == len("passthrough:")+8:
						own++
						if n != 1 {
							t.Errorf("caller %q counted %v times, want 1", name, n)
						}
					default:
						t.Errorf("unexpected caller label %q (%v)", name, n)
					}
				}
				if own != 100 || counts["passthrough:other"] != callers-100 {
					t.Errorf("%d passthrough labels and passthrough:other %v, want 100 and %d", own, counts["passthrough:other"], callers-100)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startWith(t, gatewaytest.Options{SimAnyKey: true}, tt.mode, slowPolls)
			for _, tok := range tokens {
				// An invalid id: answered without an upstream call.
				_, err := e.Client.GetBatch(withAuthz(t.Context(), bearer(tok)), &batchv1.GetBatchRequest{BatchId: "bad id"})
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("GetBatch: %v, want InvalidArgument", err)
				}
			}
			// The server counts a call just after its answer: wait for all.
			var counts map[string]float64
			for deadline := time.Now().Add(waitLimit); ; time.Sleep(10 * time.Millisecond) {
				counts = callerCounts(scrape(t, e.BaseURL), "grpc")
				sum := 0.0
				for _, n := range counts {
					sum += n
				}
				if sum >= callers || time.Now().After(deadline) {
					break
				}
			}
			tt.check(t, counts)
		})
	}
}
