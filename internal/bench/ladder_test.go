package bench

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/rest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/wire"
)

// startMinimalREST serves GET of any path with the least an uncached REST
// GetBatch of id must do: call the upstream with the upstream client,
// decode its answer, encode it in the wire's canonical JSON, tag it and
// write it. Nothing else: no routing, authentication, limits, metrics,
// logs, grpc-gateway or hub. It returns the server's base URL.
func startMinimalREST(b *testing.B, upstreamURL, id, contentType string) string {
	b.Helper()
	client, err := upstream.New(upstream.Config{BaseURL: upstreamURL, APIKey: benchKey})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bt, err := client.GetBatch(r.Context(), id)
		if err != nil {
			http.Error(w, "upstream call failed", http.StatusBadGateway)
			return
		}
		data, err := wire.MarshalBatch(bt)
		if err != nil {
			http.Error(w, "encoding failed", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("ETag", `"`+wire.TagJSON(data)+`"`)
		h.Set("Cache-Control", rest.GetBatchCacheControl)
		_, _ = w.Write(data)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// BenchmarkRESTLadder places an uncached REST GetBatch between its floor
// and the gateway, one layer at a time, in one run against one simulator:
// direct and canned-http are the floor's two hops (as in
// BenchmarkGetBatch); minimal is a bare net/http handler that does only
// the work no REST GetBatch can skip (startMinimalREST); bare is the
// gateway's server (grpc-gateway, the in-process call, the service and
// its hub) with no posture (startBare); full is the gateway as configured
// by default, cache off. Each of the last three reports x-floor, its
// ns/op over canned-http + direct as last measured in this run.
func BenchmarkRESTLadder(b *testing.B) {
	full := startStack(b, func(c *config.Config) { c.Watch.FreshFor = -1 })
	bare := startBare(b)
	id := simulator.DemoCompleted
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	b.Cleanup(client.CloseIdleConnections)
	contentType, body := fetchREST(b, client, full.httpBase+"/v1/batches/"+id)
	canned := startCannedHTTP(b, contentType, body)
	minimal := startMinimalREST(b, full.upstreamURL, id, contentType)

	hops := map[string]float64{} // the floor's hops, last measured
	for _, step := range []struct {
		name, base, key string
	}{
		{"direct", full.upstreamURL, benchKey},
		{"canned-http", canned, ""},
		{"minimal", minimal, ""},
		{"bare", bare.httpBase, ""},
		{"full", full.httpBase, ""},
	} {
		b.Run(step.name, withCPU(func(b *testing.B) {
			url := step.base + "/v1/batches/" + id
			for b.Loop() {
				httpGet(b, client, url, step.key)
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			switch step.name {
			case "direct", "canned-http":
				hops[step.name] = ns
			default:
				if d, c := hops["direct"], hops["canned-http"]; d > 0 && c > 0 {
					b.ReportMetric(ns/(d+c), "x-floor")
				}
			}
		}))
	}
}
