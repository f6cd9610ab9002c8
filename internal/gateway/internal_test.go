package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/upstream"
)

func TestChainUnaryOrder(t *testing.T) {
	t.Parallel()
	var trace []string
	mk := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			trace = append(trace, name+">")
			resp, err := h(ctx, req)
			trace = append(trace, "<"+name)
			return resp, err
		}
	}
	if chainUnary(nil) != nil {
		t.Fatal("an empty chain should be nil")
	}
	ic := chainUnary([]grpc.UnaryServerInterceptor{mk("a"), mk("b")})
	for range 2 { // the chain is reusable
		trace = nil
		resp, err := ic(context.Background(), "req", &grpc.UnaryServerInfo{}, func(_ context.Context, req any) (any, error) {
			trace = append(trace, "handler")
			return req, nil
		})
		if resp != "req" || err != nil {
			t.Fatalf("got %v, %v", resp, err)
		}
		if got := strings.Join(trace, " "); got != "a> b> handler <b <a" {
			t.Fatalf("order %q", got)
		}
	}
}

type fetchFunc func(context.Context, string) (*batchv1.Batch, error)

func (f fetchFunc) GetBatch(ctx context.Context, id string) (*batchv1.Batch, error) {
	return f(ctx, id)
}

func TestUpstreamHealth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		errs    []error // answers, in order, starting from a healthy upstream
		advance time.Duration
		healthy bool
	}{
		{"no traffic", nil, time.Hour, true},
		{"successes", []error{nil, nil}, time.Hour, true},
		{"404 is a working upstream", []error{&upstream.Error{HTTPStatus: 404}}, time.Hour, true},
		{"failing briefly", []error{&upstream.Error{HTTPStatus: 503}}, 30 * time.Second, true},
		{"failing too long", []error{&upstream.Error{HTTPStatus: 503}, fmt.Errorf("x: %w", upstream.ErrUnreachable)}, 2 * time.Minute, false},
		{"429 too long", []error{&upstream.Error{HTTPStatus: 429}}, 2 * time.Minute, false},
		{"recovered", []error{upstream.ErrTimeout, nil}, 2 * time.Minute, true},
		{"cancelled calls say nothing", []error{upstream.ErrMalformedResponse, context.Canceled}, 2 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := time.Unix(1000, 0)
			i := 0
			u := newUpstreamHealth(fetchFunc(func(context.Context, string) (*batchv1.Batch, error) {
				err := tt.errs[i]
				i++
				return nil, err
			}))
			u.now = func() time.Time { return now }
			for range tt.errs {
				_, _ = u.GetBatch(context.Background(), "b")
			}
			now = now.Add(tt.advance)
			if got := u.healthy(time.Minute); got != tt.healthy {
				t.Fatalf("healthy = %v, want %v", got, tt.healthy)
			}
			if !u.healthy(0) {
				t.Fatal("a zero threshold must always be healthy")
			}
		})
	}
}
