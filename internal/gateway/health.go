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

// Watch implements healthpb.HealthServer: the inner Watch, ended with
// UNAVAILABLE once stop is closed. Shutdown comes before stop, but the
// inner Watch may see its context end before the NOT_SERVING that
// Shutdown queued for it; then Watch sends NOT_SERVING itself, so that
// every watcher learns it before the stream ends.
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
	rec := &lastStatus{ServerStream: w}
	err := h.Server.Watch(req, &grpc.GenericServerStream[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse]{ServerStream: rec})
	select {
	case <-h.stop:
		if !rec.sent || rec.last != healthpb.HealthCheckResponse_NOT_SERVING {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}); err != nil {
				return err
			}
		}
		return status.Error(codes.Unavailable, "the gateway is shutting down")
	default:
		return err
	}
}

// lastStatus is a health Watch stream that remembers the last status it
// sent. Only the inner Watch's goroutine uses it.
type lastStatus struct {
	grpc.ServerStream
	sent bool
	last healthpb.HealthCheckResponse_ServingStatus
}

func (l *lastStatus) SendMsg(m any) error {
	if err := l.ServerStream.SendMsg(m); err != nil {
		return err
	}
	if r, ok := m.(*healthpb.HealthCheckResponse); ok {
		l.sent, l.last = true, r.GetStatus()
	}
	return nil
}
