package gateway

import (
	"context"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is grpc-go's health server with Watch streams that end when
// stop is closed. grpc-go's Watch returns only when its client leaves, so
// without this an open Watch (client-side health checking keeps one) would
// hold graceful shutdown for the whole shutdown timeout.
type healthServer struct {
	*health.Server
	stop <-chan struct{}
}

// Watch implements healthpb.HealthServer: the inner Watch (which has
// already sent NOT_SERVING when stop is closed, after Shutdown), ended with
// UNAVAILABLE once stop is closed.
func (h healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	w := middleware.WrapServerStream(stream)
	w.WrappedContext = ctx
	err := h.Server.Watch(req, &grpc.GenericServerStream[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse]{ServerStream: w})
	select {
	case <-h.stop:
		return status.Error(codes.Unavailable, "the gateway is shutting down")
	default:
		return err
	}
}
