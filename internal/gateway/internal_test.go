package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/auth"
	"github.com/batchgate/batchgate/internal/inproc"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// TestChainUnaryOrder checks the order buildChains, the one builder of the
// gateway's chains, puts the layers in, over gRPC unary and stream calls,
// REST calls and HTTP requests, and that inproc.ChainUnary and
// inproc.ChainStream, which run the REST chains, keep it.
func TestChainUnaryOrder(t *testing.T) {
	t.Parallel()
	var trace []string
	mk := func(name string) stage {
		return stage{
			unary: func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				trace = append(trace, name+">")
				resp, err := h(ctx, req)
				trace = append(trace, "<"+name)
				return resp, err
			},
			stream: func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				trace = append(trace, name+">")
				err := h(srv, ss)
				trace = append(trace, "<"+name)
				return err
			},
			http: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					trace = append(trace, name+">")
					next.ServeHTTP(w, r)
					trace = append(trace, "<"+name)
				})
			},
		}
	}
	c := buildChains(stages{
		callinfo: mk("callinfo"), telemetry: mk("telemetry"), recovery: mk("recovery"),
		reqlog: mk("reqlog"), auth: mk("auth"), limits: mk("limits"), cors: mk("cors"),
	})
	const (
		grpcOrder = "callinfo> telemetry> recovery> reqlog> auth> limits> handler <limits <auth <reqlog <recovery <telemetry <callinfo"
		restOrder = "recovery> auth> limits> handler <limits <auth <recovery"
		httpOrder = "callinfo> telemetry> reqlog> cors> handler <cors <reqlog <telemetry <callinfo"
	)
	unary := func(_ context.Context, req any) (any, error) {
		trace = append(trace, "handler")
		return req, nil
	}
	stream := func(any, grpc.ServerStream) error {
		trace = append(trace, "handler")
		return nil
	}
	check := func(what, want string) {
		t.Helper()
		if got := strings.Join(trace, " "); got != want {
			t.Fatalf("%s order %q, want %q", what, got, want)
		}
		trace = nil
	}

	if inproc.ChainUnary(nil) != nil || inproc.ChainStream(nil) != nil {
		t.Fatal("an empty chain should be nil")
	}
	for _, ch := range []struct {
		name   string
		unary  []grpc.UnaryServerInterceptor
		stream []grpc.StreamServerInterceptor
		want   string
	}{
		{"gRPC", c.Unary, c.Stream, grpcOrder},
		{"REST", c.RESTUnary, c.RESTStream, restOrder},
	} {
		ic, sc := inproc.ChainUnary(ch.unary), inproc.ChainStream(ch.stream)
		for range 2 { // the chain is reusable
			resp, err := ic(context.Background(), "req", &grpc.UnaryServerInfo{}, unary)
			if resp != "req" || err != nil {
				t.Fatalf("got %v, %v", resp, err)
			}
			check(ch.name+" unary", ch.want)
			if err := sc(nil, nil, &grpc.StreamServerInfo{}, stream); err != nil {
				t.Fatal(err)
			}
			check(ch.name+" stream", ch.want)
		}
	}
	c.HTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		trace = append(trace, "handler")
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	check("HTTP", httpOrder)
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

// TestUpstreamHealthObserve: readiness follows upstream.Classify. A
// redirect, which the client never follows, is a failure (it used to count
// as a success); an id that was never sent counts as neither.
func TestUpstreamHealthObserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		healthy bool
	}{
		{"success", nil, true},
		{"302 redirect", &upstream.Error{HTTPStatus: 302}, false},
		{"404", &upstream.Error{HTTPStatus: 404}, true},
		{"408", &upstream.Error{HTTPStatus: 408}, false},
		{"409", &upstream.Error{HTTPStatus: 409}, true},
		{"429", &upstream.Error{HTTPStatus: 429}, false},
		{"503", &upstream.Error{HTTPStatus: 503}, false},
		{"unreachable", upstream.ErrUnreachable, false},
		{"canceled keeps the failure", context.Canceled, false},
		{"invalid id keeps the failure", upstream.ErrInvalidBatchID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := time.Unix(1_000_000, 0)
			u := newUpstreamHealth(nil)
			u.now = func() time.Time { return now }
			// Start failing, so that neutral outcomes show they keep it.
			u.observe(upstream.ErrTimeout)
			now = now.Add(time.Hour)
			u.observe(tt.err)
			now = now.Add(time.Hour)
			if got := u.healthy(time.Minute); got != tt.healthy {
				t.Errorf("after %v: healthy = %v, want %v", tt.err, got, tt.healthy)
			}
		})
	}
}

// TestPollContext: a shared poller's context carries the credential of the
// watch that started it, for the upstream, and nothing else of that call.
func TestPollContext(t *testing.T) {
	t.Parallel()
	const cred = "sk-caller-credential-0123456789"
	var mu sync.Mutex
	var sent []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = io.WriteString(w, `{"id":"batch_p","object":"batch","status":"in_progress"}`)
	}))
	t.Cleanup(up.Close)
	client, err := upstream.New(upstream.Config{BaseURL: up.URL, APIKey: "sk-gateway-own-key-0000", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(auth.Options{Mode: auth.ModePassthrough})
	if err != nil {
		t.Fatal(err)
	}
	call, err := authn.Authenticate(metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-call", "1")), "Bearer "+cred)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"passthrough", call, "Bearer " + cred},
		{"own key", metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-call", "1")), "Bearer sk-gateway-own-key-0000"},
	} {
		ctx := pollContext(tt.ctx, watch.Key{BatchID: "batch_p"})
		if _, ok := auth.FromContext(ctx); ok {
			t.Errorf("%s: the poll context carries the call's Caller", tt.name)
		}
		if _, ok := metadata.FromIncomingContext(ctx); ok {
			t.Errorf("%s: the poll context carries the call's metadata", tt.name)
		}
		mu.Lock()
		sent = nil
		mu.Unlock()
		if _, err := client.GetBatch(ctx, "batch_p"); err != nil {
			t.Fatalf("%s: GetBatch: %v", tt.name, err)
		}
		mu.Lock()
		if len(sent) != 1 || sent[0] != tt.want {
			t.Errorf("%s: upstream got Authorization %q, want %q", tt.name, sent, tt.want)
		}
		mu.Unlock()
	}
}
