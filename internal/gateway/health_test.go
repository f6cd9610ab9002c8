package gateway

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// heldWatch is a health Watch stream whose first send waits for hold to
// close; every status sent goes to sent.
type heldWatch struct {
	grpc.ServerStream // nil: only Context and the sends are called
	ctx               context.Context
	hold              chan struct{}
	sent              chan healthpb.HealthCheckResponse_ServingStatus
	n                 int
}

func (w *heldWatch) Context() context.Context { return w.ctx }

func (w *heldWatch) Send(r *healthpb.HealthCheckResponse) error { return w.SendMsg(r) }

func (w *heldWatch) SendMsg(m any) error {
	w.sent <- m.(*healthpb.HealthCheckResponse).GetStatus()
	if w.n++; w.n == 1 {
		<-w.hold
	}
	return nil
}

// TestHealthWatchSeesNotServingAtShutdown: a health Watch open at
// shutdown gets NOT_SERVING, once, then ends with UNAVAILABLE, even when
// its context has ended by the time it could send what Shutdown queued
// (grpc-go's Watch then picks either at random). Each round holds the
// Watch in its first send until both are ready.
func TestHealthWatchSeesNotServingAtShutdown(t *testing.T) {
	t.Parallel()
	for round := range 40 {
		hs, stop := health.NewServer(), make(chan struct{})
		ctx, cancel := context.WithCancel(t.Context())
		w := &heldWatch{ctx: ctx, hold: make(chan struct{}), sent: make(chan healthpb.HealthCheckResponse_ServingStatus, 8)}
		done := make(chan error, 1)
		go func() { done <- healthServer{Server: hs, stop: stop}.Watch(&healthpb.HealthCheckRequest{}, w) }()
		if st := <-w.sent; st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("round %d: first status %v", round, st)
		}
		hs.Shutdown() // queues NOT_SERVING for the Watch
		close(stop)
		cancel()
		close(w.hold)
		if err := <-done; status.Code(err) != codes.Unavailable {
			t.Fatalf("round %d: Watch ended with %v, want UNAVAILABLE", round, err)
		}
		close(w.sent)
		var after []healthpb.HealthCheckResponse_ServingStatus
		for st := range w.sent {
			after = append(after, st)
		}
		if len(after) != 1 || after[0] != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("round %d: sent %v after SERVING, want NOT_SERVING once", round, after)
		}
	}
}
