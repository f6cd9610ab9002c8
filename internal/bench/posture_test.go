package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

const benchToken = "tok-bench-0123456789abcdef"

// startBare serves the service with nothing around it: no authentication,
// limits, logs, metrics or tracing, and an uninstrumented upstream client.
func startBare(b *testing.B) *stack {
	b.Helper()
	up := httptest.NewServer(simulator.New(simulator.Options{APIKey: benchKey}))
	b.Cleanup(up.Close)
	client, err := upstream.New(upstream.Config{BaseURL: up.URL, APIKey: benchKey})
	if err != nil {
		b.Fatal(err)
	}
	hub := watch.New(client, watch.Options{FreshFor: -1})
	b.Cleanup(hub.Close)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := gateway.NewServer(ctx, gateway.Services{Batch: service.New(hub, service.Options{})}, gateway.ServerOptions{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return dialStack(b, up.URL, srv.GRPCAddr().String(), srv.HTTPAddr().String())
}

// BenchmarkPosture measures what the production posture costs GetBatch:
// the bare service against the full gateway in key mode (token check,
// per-caller limits, request logs to a discarding handler, Prometheus
// metrics, tracing off), both uncached, over gRPC and REST, in one run.
func BenchmarkPosture(b *testing.B) {
	tokens := filepath.Join(b.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("bench "+benchToken+" all\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	bare := startBare(b)
	full := startStack(b, func(c *config.Config) {
		c.Auth.Mode, c.Auth.TokensFile, c.Watch.FreshFor = "key", tokens, -1
	})
	id := simulator.DemoCompleted
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	b.Cleanup(client.CloseIdleConnections)
	for _, s := range []struct {
		name string
		*stack
	}{{"bare", bare}, {"full", full}} {
		b.Run("grpc-"+s.name, withCPU(func(b *testing.B) {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+benchToken)
			req := &batchv1.GetBatchRequest{BatchId: id}
			for b.Loop() {
				if _, err := s.grpc.GetBatch(ctx, req, grpc.WaitForReady(true)); err != nil {
					b.Fatal(err)
				}
			}
		}))
		b.Run("rest-"+s.name, withCPU(func(b *testing.B) {
			url := s.httpBase + "/v1/batches/" + id
			for b.Loop() {
				httpGet(b, client, url, benchToken)
			}
		}))
	}
}
