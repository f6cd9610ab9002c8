package bench

import (
	"context"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
)

// BenchmarkGetBatchParallel is BenchmarkGetBatch with many calls in flight
// (b.RunParallel, 8 goroutines per CPU, each on a batch of its own so that
// no two calls are coalesced): time per call is then the inverse of
// throughput, which CPU cost rather than wake-up latency decides.
func BenchmarkGetBatchParallel(b *testing.B) {
	s := startStack(b, func(c *config.Config) { c.Watch.FreshFor = -1 })
	const parallelism = 8
	ids := make([]string, 2*parallelism*runtime.GOMAXPROCS(0))
	for i := range ids {
		ids[i] = s.sim.Create(simulator.CreateRequest{InputFileID: "file_bench"}).ID
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: len(ids)}}
	b.Cleanup(client.CloseIdleConnections)
	run := func(b *testing.B, call func(id string)) {
		var next atomic.Int64
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			id := ids[int(next.Add(1)-1)%len(ids)]
			for pb.Next() {
				call(id)
			}
		})
	}
	b.Run("direct", func(b *testing.B) {
		run(b, func(id string) { httpGet(b, client, s.upstreamURL+"/v1/batches/"+id, benchKey) })
	})
	b.Run("grpc-uncached", func(b *testing.B) {
		run(b, func(id string) {
			if _, err := s.grpc.GetBatch(context.Background(), &batchv1.GetBatchRequest{BatchId: id}); err != nil {
				b.Error(err)
			}
		})
	})
	b.Run("rest-uncached", func(b *testing.B) {
		run(b, func(id string) { httpGet(b, client, s.httpBase+"/v1/batches/"+id, "") })
	})
}
