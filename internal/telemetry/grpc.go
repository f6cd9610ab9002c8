package telemetry

import (
	"context"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
)

// GRPCTracingOptions returns, when tracing is on, the option installing an
// otelgrpc stats handler that makes a server span per call, continuing the
// caller's W3C traceparent; when tracing is off, none.
func (t *Telemetry) GRPCTracingOptions() []grpc.ServerOption {
	if t.tp == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(t.propagator),
		otelgrpc.WithMeterProvider(noopMeters),
	))}
}

// UnaryServerInterceptor records unary calls in the go-grpc-middleware
// server metrics (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_handling_seconds) and in batchgate_requests_by_caller_total.
// It makes no span: spans come from the stats handler in
// GRPCTracingOptions.
func (t *Telemetry) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	metrics := t.grpc.UnaryServerInterceptor()
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, slot := withCallerSlot(ctx)
		resp, err := metrics(ctx, req, info, handler)
		t.countGRPC(ctx, slot, err)
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls;
// it also counts stream messages (grpc_server_msg_received_total,
// grpc_server_msg_sent_total).
func (t *Telemetry) StreamServerInterceptor() grpc.StreamServerInterceptor {
	metrics := t.grpc.StreamServerInterceptor()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, slot := withCallerSlot(ss.Context())
		err := metrics(srv, &contextStream{ServerStream: ss, ctx: ctx}, info, handler)
		t.countGRPC(ctx, slot, err)
		return err
	}
}

func (t *Telemetry) countGRPC(ctx context.Context, slot *callerSlot, err error) {
	// The code as go-grpc-middleware labels it (context errors converted).
	code := grpcprom.FromError(err).Code().String()
	t.byCaller.WithLabelValues(t.caller(ctx, slot), "grpc", code).Inc()
}

// contextStream is a ServerStream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
