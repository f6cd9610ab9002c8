package bench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/batchgate/batchgate/internal/auth"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/limit"
	"github.com/batchgate/batchgate/internal/telemetry"
)

// fakeTransportStream lets grpc.SetHeader work outside a server.
type fakeTransportStream struct{}

func (fakeTransportStream) Method() string               { return "/batch.v1.BatchService/GetBatch" }
func (fakeTransportStream) SetHeader(metadata.MD) error  { return nil }
func (fakeTransportStream) SendHeader(metadata.MD) error { return nil }
func (fakeTransportStream) SetTrailer(metadata.MD) error { return nil }

// BenchmarkInterceptors measures the CPU the production posture adds to
// one unary call, without any network: the gateway's gRPC interceptor
// chain in key mode around a handler that does nothing.
func BenchmarkInterceptors(b *testing.B) {
	tokens := filepath.Join(b.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("bench "+benchToken+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	tel, err := telemetry.New(context.Background(), telemetry.Options{})
	if err != nil {
		b.Fatal(err)
	}
	authn, err := auth.New(auth.Options{Mode: auth.ModeKey, TokensFile: tokens})
	if err != nil {
		b.Fatal(err)
	}
	// The production chain, from the builder gateway.New uses.
	chain := gateway.NewChains(gateway.ChainDeps{
		Auth: authn, Limits: limit.New(limit.Options{}), Telemetry: tel, Logger: slog.New(slog.DiscardHandler),
	}).Unary
	info := &grpc.UnaryServerInfo{FullMethod: "/batch.v1.BatchService/GetBatch"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx := grpc.NewContextWithServerTransportStream(
		metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+benchToken)),
		fakeTransportStream{})
	for b.Loop() {
		next := handler
		for i := len(chain) - 1; i >= 0; i-- {
			ic, h := chain[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, h) }
		}
		if _, err := next(ctx, nil); err != nil {
			b.Fatal(err)
		}
	}
}
