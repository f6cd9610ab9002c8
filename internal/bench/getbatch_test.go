// Package bench holds the benchmarks quoted in the README. Each one starts
// the real servers on loopback and compares the gateway with a direct call
// to the same simulator in the same run.
package bench

import (
	"context"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
)

const benchKey = "sk-bench"

// stack is a simulator upstream and a gateway in front of it.
type stack struct {
	upstreamURL string
	httpBase    string
	grpcAddr    string
	grpc        batchv1.BatchServiceClient
	sim         *simulator.Simulator // nil for stacks started by dialStack
}

func startStack(b *testing.B, mutate ...func(*config.Config)) *stack {
	b.Helper()
	e := gatewaytest.Start(b, gatewaytest.Options{UpstreamKey: benchKey}, mutate...)
	return &stack{grpcAddr: e.GW.GRPCAddr().String(), upstreamURL: e.Upstream.URL, httpBase: e.BaseURL, grpc: e.Client, sim: e.Sim}
}

// dialStack connects a gRPC client to grpcAddr and returns the stack.
func dialStack(b *testing.B, upstreamURL, grpcAddr, httpAddr string) *stack {
	b.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return &stack{grpcAddr: grpcAddr, upstreamURL: upstreamURL, httpBase: "http://" + httpAddr, grpc: batchv1.NewBatchServiceClient(conn)}
}

// httpGet fetches url with client and discards the body; it fails the
// benchmark on any non-200 answer.
func httpGet(b *testing.B, client *http.Client, url, key string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
}

// BenchmarkGetBatch measures one GetBatch, sequentially, against the same
// simulator: a direct HTTP GET to the upstream (the baseline), canned
// one-hop answers of the gateway's own bytes (a plain gRPC server and a
// plain net/http server that do nothing else), then the gateway over gRPC
// and over REST with its cache off, so that every call goes upstream, and
// with its default cache, which answers repeated calls for a batch from
// the last result younger than the poll interval.
//
// The uncached gateway sub-benchmarks report x-floor: their ns/op over
// their floor, the canned hop of the same protocol plus the direct GET,
// as last measured in this run (with -count, each sub-benchmark's runs
// come one after another, so it is the last run of each).
func BenchmarkGetBatch(b *testing.B) {
	uncached := startStack(b, func(c *config.Config) { c.Watch.FreshFor = -1 })
	cached := startStack(b)
	id := simulator.DemoCompleted
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	b.Cleanup(client.CloseIdleConnections)

	// The canned hops answer with what the gateway answers for id.
	want, err := uncached.grpc.GetBatch(context.Background(), &batchv1.GetBatchRequest{BatchId: id})
	if err != nil {
		b.Fatal(err)
	}
	cannedGRPC := startCannedGRPC(b, want)
	contentType, body := fetchREST(b, client, uncached.httpBase+"/v1/batches/"+id)
	cannedURL := startCannedHTTP(b, contentType, body)

	nsPerOp := func(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }
	var directNs, cannedGRPCNs, cannedHTTPNs float64
	reportFloor := func(b *testing.B, hopNs float64) {
		if floor := hopNs + directNs; hopNs > 0 && directNs > 0 {
			b.ReportMetric(nsPerOp(b)/floor, "x-floor")
		}
	}

	b.Run("direct", withCPU(func(b *testing.B) {
		url := uncached.upstreamURL + "/v1/batches/" + id
		for b.Loop() {
			httpGet(b, client, url, benchKey)
		}
		directNs = nsPerOp(b)
	}))
	b.Run("canned-grpc", withCPU(func(b *testing.B) {
		req := &batchv1.GetBatchRequest{BatchId: id}
		for b.Loop() {
			if _, err := cannedGRPC.GetBatch(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
		cannedGRPCNs = nsPerOp(b)
	}))
	b.Run("canned-http", withCPU(func(b *testing.B) {
		url := cannedURL + "/v1/batches/" + id
		for b.Loop() {
			httpGet(b, client, url, "")
		}
		cannedHTTPNs = nsPerOp(b)
	}))
	for _, s := range []struct {
		name string
		*stack
	}{{"uncached", uncached}, {"cached", cached}} {
		b.Run("grpc-"+s.name, withCPU(func(b *testing.B) {
			req := &batchv1.GetBatchRequest{BatchId: id}
			for b.Loop() {
				if _, err := s.grpc.GetBatch(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
			if s.stack == uncached {
				reportFloor(b, cannedGRPCNs)
			}
		}))
		b.Run("rest-"+s.name, withCPU(func(b *testing.B) {
			url := s.httpBase + "/v1/batches/" + id
			for b.Loop() {
				httpGet(b, client, url, "")
			}
			if s.stack == uncached {
				reportFloor(b, cannedHTTPNs)
			}
		}))
	}
}

// withCPU wraps a sub-benchmark that loops with b.Loop (so its body runs
// once) and reports cpu-ns/op: the process's user and system CPU time per
// call, client, gateway and upstream together, as for the floor's hops.
// Unlike ns/op it does not count time spent waiting for a wake-up, and
// other processes' load moves it less.
func withCPU(f func(b *testing.B)) func(b *testing.B) {
	return func(b *testing.B) {
		start := processCPU(b)
		f(b)
		if b.N > 0 {
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// processCPU returns the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
