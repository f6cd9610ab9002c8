package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// watchBatchCount is how many batches BenchmarkWatchMemory watches.
const watchBatchCount = 1000

// BenchmarkWatchMemory compares the memory of watching 1,000 batches with
// one WatchBatches stream against 1,000 WatchBatch streams: the bare
// service on a real loopback gRPC listener, its client in the same
// process (so both ends are counted), the simulator upstream. The 1,000
// pollers already run before the measurement (a subscription of the
// benchmark's own holds each batch), so the figures are the cost of the
// watching alone: streams, subscriptions, goroutines, on both ends.
// Reported per watched batch, after GC, once every stream has delivered
// its snapshots: the HeapInuse delta (KiB/batch), the StackInuse delta of
// the goroutines (stack-KiB/batch) and the goroutine delta
// (goroutines/batch).
//
//	go test -run='^$' -bench=WatchMemory -benchtime=1x -count=5 ./internal/bench/
func BenchmarkWatchMemory(b *testing.B) {
	sim := simulator.New(simulator.Options{APIKey: benchKey, Phase: time.Hour})
	up := httptest.NewServer(sim)
	b.Cleanup(up.Close)
	client, err := upstream.New(upstream.Config{BaseURL: up.URL, APIKey: benchKey})
	if err != nil {
		b.Fatal(err)
	}
	hub := watch.New(client, watch.Options{PollInterval: time.Hour})
	b.Cleanup(hub.Close)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := gateway.NewServer(ctx, gateway.Services{Batch: service.New(hub, service.Options{Heartbeat: time.Hour})}, gateway.ServerOptions{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, MaxStreamsPerConn: 2 * watchBatchCount,
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	bc := batchv1.NewBatchServiceClient(conn)

	ids := make([]string, watchBatchCount)
	for i := range ids {
		ids[i] = sim.Create(simulator.CreateRequest{InputFileID: "file_in"}).ID
		// Keep the batch's poller running between the measurements.
		sub, err := hub.Subscribe(ctx, watch.Key{BatchID: ids[i]})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sub.Close)
	}
	// Warm the connection and the codecs.
	warm(b, bc, ids[:1], false)
	warm(b, bc, ids[:1], true)

	for _, multi := range []bool{true, false} {
		name := fmt.Sprintf("streams=%d", watchBatchCount)
		if multi {
			name = "streams=1"
		}
		b.Run(name, func(b *testing.B) {
			var sum watchCost
			for b.Loop() {
				c := measureWatch(b, bc, hub, ids, multi)
				sum.heapKiB += c.heapKiB
				sum.stackKiB += c.stackKiB
				sum.goroutines += c.goroutines
			}
			n := float64(b.N)
			b.ReportMetric(sum.heapKiB/n, "KiB/batch")
			b.ReportMetric(sum.stackKiB/n, "stack-KiB/batch")
			b.ReportMetric(sum.goroutines/n, "goroutines/batch")
		})
	}
}

// warm opens the watches of ids (one multi-watch, or one stream each),
// reads their snapshots and closes them again.
func warm(b *testing.B, bc batchv1.BatchServiceClient, ids []string, multi bool) {
	stop := openWatches(b, bc, ids, multi)
	stop()
}

// openWatches opens the watches of ids and returns once every batch has
// had its snapshot; the returned func closes them and waits until the
// server has let go of every subscription.
func openWatches(b *testing.B, bc batchv1.BatchServiceClient, ids []string, multi bool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var streams []interface{ RecvMsg(any) error }
	if multi {
		s, err := bc.WatchBatches(ctx, &batchv1.WatchBatchesRequest{BatchIds: ids})
		if err != nil {
			b.Fatal(err)
		}
		for range ids {
			if _, err := s.Recv(); err != nil {
				b.Fatal(err)
			}
		}
		streams = append(streams, s)
	} else {
		for _, id := range ids {
			s, err := bc.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				b.Fatal(err)
			}
			streams = append(streams, s)
		}
	}
	return func() {
		cancel()
		for _, s := range streams {
			for s.RecvMsg(new(batchv1.WatchBatchesResponse)) == nil {
			}
		}
	}
}

// watchCost is what watching costs per batch.
type watchCost struct{ heapKiB, stackKiB, goroutines float64 }

// measureWatch returns the heap, goroutine stacks and goroutines per batch
// of watching ids.
func measureWatch(b *testing.B, bc batchv1.BatchServiceClient, hub *watch.Hub, ids []string, multi bool) watchCost {
	base := hub.Stats().Watchers
	m0 := settled()
	stop := openWatches(b, bc, ids, multi)
	m1 := settled()
	stop()
	deadline := time.Now().Add(10 * time.Second)
	for hub.Stats().Watchers != base {
		if time.Now().After(deadline) {
			b.Fatalf("%d watchers left", hub.Stats().Watchers-base)
		}
		time.Sleep(time.Millisecond)
	}
	n := float64(len(ids))
	return watchCost{
		heapKiB:    float64(int64(m1.heap)-int64(m0.heap)) / 1024 / n,
		stackKiB:   float64(int64(m1.stack)-int64(m0.stack)) / 1024 / n,
		goroutines: float64(m1.goroutines-m0.goroutines) / n,
	}
}

type memSample struct {
	heap, stack uint64
	goroutines  int
}

// settled returns HeapInuse, StackInuse and the number of goroutines after
// GC.
func settled() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}
