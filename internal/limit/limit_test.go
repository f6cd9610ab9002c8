package limit_test

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/limit"
)

type callerKey struct{}

func callerName(ctx context.Context) string { s, _ := ctx.Value(callerKey{}).(string); return s }

func as(caller string) context.Context {
	return context.WithValue(context.Background(), callerKey{}, caller)
}

// fakeStream is a grpc.ServerStream with a context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context     { return f.ctx }
func (f fakeStream) SetHeader(metadata.MD) error  { return nil }
func (f fakeStream) SendHeader(metadata.MD) error { return nil }

var watchInfo = &grpc.StreamServerInfo{FullMethod: "/batch.v1.BatchService/WatchBatch", IsServerStream: true}

// openWatch starts a watch through the interceptor and keeps it open
// until the returned func is called. It returns the interceptor's error
// when the watch is refused.
func openWatch(t *testing.T, l *limit.Limiter, caller string) (release func(), err error) {
	t.Helper()
	entered := make(chan struct{})
	leave := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- l.StreamInterceptor()(nil, fakeStream{ctx: as(caller)}, watchInfo, func(any, grpc.ServerStream) error {
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

func TestWatcherCaps(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Options{MaxWatchers: 3, MaxWatchersPerCaller: 2, CallerName: callerName})
	a1, err := openWatch(t, l, "a")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := openWatch(t, l, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openWatch(t, l, "a"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third watch of caller a: %v, want RESOURCE_EXHAUSTED", err)
	}
	b1, err := openWatch(t, l, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openWatch(t, l, "c"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("fourth watch in total: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := l.Watchers(); got != 3 {
		t.Fatalf("Watchers = %d, want 3", got)
	}
	a1()
	c1, err := openWatch(t, l, "c")
	if err != nil {
		t.Fatalf("a slot freed by a closed watch was not reused: %v", err)
	}
	for _, f := range []func(){a2, b1, c1} {
		f()
	}
	if got := l.Watchers(); got != 0 {
		t.Fatalf("Watchers = %d after every watch closed", got)
	}
}

func TestCallerRate(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Options{CallerRPS: 1, CallerName: callerName}) // burst 2
	unary := l.UnaryInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/batch.v1.BatchService/GetBatch"}
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	for i := range 2 {
		if _, err := unary(as("a"), nil, info, ok); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	_, err := unary(as("a"), nil, info, ok)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("call past the burst: %v, want RESOURCE_EXHAUSTED", err)
	}
	var retry *errdetails.RetryInfo
	var reason string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || reason != limit.ReasonRateLimited {
		t.Fatalf("details: retry %v reason %q", retry, reason)
	}
	// Another caller has its own bucket; health checks are never limited.
	if _, err := unary(as("b"), nil, info, ok); err != nil {
		t.Fatalf("caller b: %v", err)
	}
	health := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	if _, err := unary(as("a"), nil, health, ok); err != nil {
		t.Fatalf("health check of a limited caller: %v", err)
	}
	// Opening a stream counts as a call.
	if _, err := openWatch(t, l, "a"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("watch of a limited caller: %v", err)
	}
}

func TestUnlimitedByDefault(t *testing.T) {
	t.Parallel()
	l := limit.New(limit.Options{})
	var releases []func()
	for range 100 {
		r, err := openWatch(t, l, "")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	for _, r := range releases {
		r()
	}
}
