package telemetry

import (
	"context"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"

	"github.com/batchgate/batchgate/internal/callinfo"
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
// grpc_server_handling_seconds) and in batchgate_requests_by_caller_total,
// whose caller label it reads from the call's callinfo.Record once the
// call has returned (chain callinfo.UnaryServerInterceptor before it; with
// no record the caller is "unknown"). It makes no span: spans come from
// the stats handler in GRPCTracingOptions.
func (t *Telemetry) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	metrics := t.grpc.UnaryServerInterceptor()
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := metrics(ctx, req, info, handler)
		t.countGRPC(ctx, err)
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls;
// it also counts stream messages (grpc_server_msg_received_total,
// grpc_server_msg_sent_total).
func (t *Telemetry) StreamServerInterceptor() grpc.StreamServerInterceptor {
	metrics := t.grpc.StreamServerInterceptor()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := metrics(srv, ss, info, handler)
		t.countGRPC(ss.Context(), err)
		return err
	}
}

func (t *Telemetry) countGRPC(ctx context.Context, err error) {
	// The code as go-grpc-middleware labels it (context errors converted).
	code := grpcprom.FromError(err).Code().String()
	t.byCaller.WithLabelValues(t.caller(callinfo.FromContext(ctx)), "grpc", code).Inc()
}
