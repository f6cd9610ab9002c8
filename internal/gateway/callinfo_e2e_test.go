package gateway_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
)

// TestCallRecordPerTransport: the per-call record carries the caller that
// authentication found out to the log line and the caller metric, for
// gRPC unary and stream calls and REST unary and watch calls; a rejected
// REST request is authenticated once (one "auth: call rejected" line; the
// access log used to authenticate it a second time), logged without a
// caller and counted as "unknown" under its route.
func TestCallRecordPerTransport(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := startWith(t, gatewaytest.Options{Log: log}, keyMode(writeTokens(t, "", "alice "+tokAlice+" all", "bob "+tokBob+" all")), fastWatch, quietHeartbeat)

	if o := grpcGet(t, e, bearer(tokAlice), simulator.DemoCompleted); !o.ok() {
		t.Fatalf("gRPC GetBatch: %+v", o)
	}
	if o := grpcWatchFirst(t, e, bearer(tokAlice), simulator.DemoCompleted); !o.ok() {
		t.Fatalf("gRPC WatchBatch: %+v", o)
	}
	if o := restGet(t, e, bearer(tokBob), simulator.DemoCompleted); !o.ok() {
		t.Fatalf("REST GetBatch: %+v", o)
	}
	if o := restWatchFirst(t, e, bearer(tokBob), simulator.DemoCompleted); !o.ok() {
		t.Fatalf("REST watch: %+v", o)
	}
	resp, _ := restRequest(t, e, http.MethodGet, "/v1/batches/"+simulator.DemoCompleted, bearer(tokUnlisted), nil, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("REST wrong token: %d", resp.StatusCode)
	}

	// Every line is written once its call has ended; watches end when
	// their client goes away.
	type line = map[string]any
	var requests, rejections []line
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		requests, rejections = nil, nil
		for _, s := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var l line
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("log line %q: %v", s, err)
			}
			switch l["msg"] {
			case "request":
				if l["path"] != "/metrics" {
					requests = append(requests, l)
				}
			case "auth: call rejected":
				rejections = append(rejections, l)
			}
		}
		if len(requests) >= 5 || time.Now().After(deadline) {
			break
		}
	}
	want := map[string]string{ // transport and method or path → caller
		"grpc /batch.v1.BatchService/GetBatch":                   "alice",
		"grpc /batch.v1.BatchService/WatchBatch":                 "alice",
		"http /v1/batches/" + simulator.DemoCompleted:            "bob",
		"http /v1/batches/" + simulator.DemoCompleted + "/watch": "bob",
	}
	got := map[string][]string{}
	for _, l := range requests {
		key, _ := l["transport"].(string)
		if key == "grpc" {
			key += " " + l["method"].(string)
		} else {
			key += " " + l["path"].(string)
		}
		caller, ok := l["caller"].(string)
		if !ok {
			t.Errorf("no caller attribute in %v", l)
		}
		if id, _ := l["request_id"].(string); id == "" {
			t.Errorf("no request id in %v", l)
		}
		got[key] = append(got[key], caller)
	}
	for key, caller := range want {
		if key == "http /v1/batches/"+simulator.DemoCompleted {
			// The REST GetBatch and the rejected one.
			if c := got[key]; len(c) != 2 || !(c[0] == "bob" && c[1] == "" || c[0] == "" && c[1] == "bob") {
				t.Errorf("%s: callers %q, want bob and none", key, c)
			}
			continue
		}
		if c := got[key]; len(c) != 1 || c[0] != caller {
			t.Errorf("%s: callers %q, want [%s]", key, c, caller)
		}
	}
	if len(rejections) != 1 {
		t.Errorf("%d auth rejection lines, want 1 (one Authenticate per REST request): %v", len(rejections), rejections)
	}

	fams := scrape(t, e.BaseURL)
	for _, tc := range []struct {
		transport string
		want      map[string]float64
	}{
		{"grpc", map[string]float64{"alice": 2}},
		{"http", map[string]float64{"bob": 2, "unknown": 1}},
	} {
		counts := callerCounts(fams, tc.transport)
		for caller, n := range tc.want {
			if counts[caller] != n {
				t.Errorf("%s caller %q counted %v, want %v (all: %v)", tc.transport, caller, counts[caller], n, counts)
			}
		}
	}
	for _, m := range fams["batchgate_http_requests_total"].GetMetric() {
		var route, code string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "route":
				route = l.GetValue()
			case "code":
				code = l.GetValue()
			}
		}
		if code == "401" && route != "/v1/batches/{batch_id}" {
			t.Errorf("rejected REST request counted under route %q, want /v1/batches/{batch_id}", route)
		}
	}
}
