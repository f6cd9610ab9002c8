package limit_test

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/limit"
)

var multiInfo = &grpc.StreamServerInfo{FullMethod: "/batch.v1.BatchService/WatchBatches", IsServerStream: true}

// openMulti starts a multi-watch of n batches through the interceptor: its
// handler calls CountWatchers(n) as WatchBatches does, and stays open until
// the returned func is called. It returns CountWatchers' error (or the
// interceptor's) when the watch is refused.
func openMulti(t *testing.T, l *limit.Limiter, caller string, n int) (release func(), err error) {
	t.Helper()
	entered := make(chan struct{})
	leave := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- l.StreamInterceptor()(nil, fakeStream{ctx: as(caller)}, multiInfo, func(_ any, ss grpc.ServerStream) error {
			if err := limit.CountWatchers(ss.Context(), n); err != nil {
				return err
			}
			close(entered)
			<-leave
			return nil
		})
	}()
	select {
	case <-entered:
		return func() { close(leave); <-done }, nil
	case err := <-done:
		return nil, err
	}
}

func TestMultiWatchCountsItsBatches(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Options{MaxWatchers: 30, MaxWatchersPerCaller: 10, CallerName: callerName})
	// 20 batches against a per-caller cap of 10: refused, nothing kept.
	_, err := openMulti(t, l, "a", 20)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("20-batch watch with a cap of 10: %v, want RESOURCE_EXHAUSTED", err)
	}
	var reason string
	for _, d := range st.Details() {
		if d, ok := d.(*errdetails.ErrorInfo); ok {
			reason = d.GetReason()
		}
	}
	if reason != limit.ReasonTooManyWatchers || apierr.ToEnvelope(st).Error.Code == nil || *apierr.ToEnvelope(st).Error.Code != apierr.CodeTooManyWatchers {
		t.Fatalf("reason %q, envelope %+v", reason, apierr.ToEnvelope(st).Error)
	}
	if got := l.Watchers(); got != 0 {
		t.Fatalf("Watchers = %d after a refused multi-watch", got)
	}
	// 8 batches fit; then a single watch and a 2-batch multi-watch are
	// one too many for caller a (8+1+2 > 10), while caller b still fits.
	m8, err := openMulti(t, l, "a", 8)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Watchers(); got != 8 {
		t.Fatalf("Watchers = %d, want 8", got)
	}
	s1, err := openWatch(t, l, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openMulti(t, l, "a", 2); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("2 more batches for caller a at 9 of 10: %v", err)
	}
	b, err := openMulti(t, l, "b", 10)
	if err != nil {
		t.Fatal(err)
	}
	// The total cap (30) counts batches too: 19 open, 12 more is over.
	if _, err := openMulti(t, l, "c", 12); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("12 batches at 19 of 30 in total: %v", err)
	}
	if got := l.Watchers(); got != 19 {
		t.Fatalf("Watchers = %d, want 19", got)
	}
	for _, f := range []func(){m8, s1, b} {
		f()
	}
	if got := l.Watchers(); got != 0 {
		t.Fatalf("Watchers = %d after every watch closed", got)
	}
}

func TestCountWatchersWithoutInterceptor(t *testing.T) {
	t.Parallel()
	if err := limit.CountWatchers(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
}
