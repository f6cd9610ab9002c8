package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// testHealth is a trivial gRPC service: Check and Watch answer SERVING for
// service "" or "ok", NotFound for "missing"; Check("upstream") first calls
// upstream with the call's context.
type testHealth struct {
	healthpb.UnimplementedHealthServer
	upstream func(ctx context.Context) error
}

func (h *testHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	switch req.GetService() {
	case "", "ok":
	case "upstream":
		if err := h.upstream(ctx); err != nil {
			return nil, status.Error(codes.Unavailable, "upstream failed")
		}
	default:
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *testHealth) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if s := req.GetService(); s != "" && s != "ok" {
		return status.Error(codes.NotFound, "unknown service")
	}
	return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// startGRPC serves svc on a loopback port with opts and returns a client,
// all stopped at the end of the test.
func startGRPC(t testing.TB, svc healthpb.HealthServer, opts ...grpc.ServerOption) healthpb.HealthClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, svc)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return healthpb.NewHealthClient(conn)
}

// fakeAuth stands for the authenticating interceptor: the caller's name is
// its "x-caller" metadata, written into the call's callinfo.Record as
// auth does; without one the call is Unauthenticated.
func fakeAuth(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-caller"); len(v) == 1 {
		callinfo.FromContext(ctx).SetCaller(callinfo.Caller{Name: v[0]})
		return handler(ctx, req)
	}
	return nil, status.Error(codes.Unauthenticated, "no caller")
}

func fakeAuthStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	if v := md.Get("x-caller"); len(v) == 1 {
		callinfo.FromContext(ss.Context()).SetCaller(callinfo.Caller{Name: v[0]})
		return handler(srv, ss)
	}
	return status.Error(codes.Unauthenticated, "no caller")
}

// withRecord returns the options that chain callinfo's interceptors, to
// put before the others.
func withRecord(opts ...grpc.ServerOption) []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(callinfo.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(callinfo.StreamServerInterceptor()),
	}, opts...)
}

type grpcCall struct {
	caller  string // x-caller metadata; "" sends none
	service string // health service name: "ok", "missing"
	stream  bool   // Watch instead of Check
}

func (c grpcCall) do(ctx context.Context, client healthpb.HealthClient) codes.Code {
	if c.caller != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-caller", c.caller)
	}
	req := &healthpb.HealthCheckRequest{Service: c.service}
	if !c.stream {
		_, err := client.Check(ctx, req)
		return status.Code(err)
	}
	st, err := client.Watch(ctx, req)
	if err != nil {
		return status.Code(err)
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return codes.OK
			}
			return status.Code(err)
		}
	}
}

func TestGRPCMetrics(t *testing.T) {
	t.Parallel()
	const health = "grpc.health.v1.Health"
	calls := []grpcCall{
		{caller: "billing", service: "ok"},
		{caller: "billing", service: "ok"},
		{caller: "billing", service: "missing"},
		{caller: "reports", service: "ok", stream: true},
		{caller: "reports", service: "missing", stream: true},
		{service: "ok"}, // rejected by fakeAuth
	}
	type series struct {
		name   string
		labels map[string]string
		want   float64
	}
	// What every layout must count: the go-grpc-middleware series and the
	// caller series.
	common := []series{
		{"grpc_server_started_total", L("grpc_type", "unary", "grpc_service", health, "grpc_method", "Check"), 4},
		{"grpc_server_handled_total", L("grpc_type", "unary", "grpc_method", "Check", "grpc_code", "OK"), 2},
		{"grpc_server_handled_total", L("grpc_type", "unary", "grpc_method", "Check", "grpc_code", "NotFound"), 1},
		{"grpc_server_handled_total", L("grpc_type", "unary", "grpc_method", "Check", "grpc_code", "Unauthenticated"), 1},
		{"grpc_server_handled_total", L("grpc_type", "server_stream", "grpc_method", "Watch", "grpc_code", "OK"), 1},
		{"grpc_server_handled_total", L("grpc_type", "server_stream", "grpc_method", "Watch", "grpc_code", "NotFound"), 1},
		{"grpc_server_handling_seconds", L("grpc_type", "unary", "grpc_method", "Check"), 4},
		{"grpc_server_handling_seconds", L("grpc_type", "server_stream", "grpc_method", "Watch"), 2},
		{"grpc_server_msg_sent_total", L("grpc_type", "server_stream", "grpc_method", "Watch"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "billing", "transport", "grpc", "code", "OK"), 2},
		{"batchgate_requests_by_caller_total", L("caller", "billing", "transport", "grpc", "code", "NotFound"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "reports", "transport", "grpc", "code", "OK"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "reports", "transport", "grpc", "code", "NotFound"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "unknown", "transport", "grpc", "code", "Unauthenticated"), 1},
	}
	for _, tc := range []struct {
		name    string
		tracing bool
		// opts builds the server options around tel's; the Watch stream
		// is authenticated too.
		opts func(tel *Telemetry) []grpc.ServerOption
	}{
		{
			// The recommended layout: the call record, then telemetry
			// (rejected calls counted), then authentication, which fills
			// the record.
			name:    "record then telemetry then auth, tracing on",
			tracing: true,
			opts: func(tel *Telemetry) []grpc.ServerOption {
				return withRecord(append(grpcServerOptions(tel),
					grpc.ChainUnaryInterceptor(fakeAuth),
					grpc.ChainStreamInterceptor(fakeAuthStream))...)
			},
		},
		{
			// Separately chained interceptors, with tracing off.
			name: "record then interceptors then auth, tracing off",
			opts: func(tel *Telemetry) []grpc.ServerOption {
				return []grpc.ServerOption{
					grpc.ChainUnaryInterceptor(callinfo.UnaryServerInterceptor(), tel.UnaryServerInterceptor(), fakeAuth),
					grpc.ChainStreamInterceptor(callinfo.StreamServerInterceptor(), tel.StreamServerInterceptor(), fakeAuthStream),
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{}
			if tc.tracing {
				opts.spanExporter = tracetest.NewInMemoryExporter()
			}
			tel := newTelemetry(t, opts)
			if (tel.tp != nil) != tc.tracing {
				t.Fatalf("tracing on = %v", tel.tp != nil)
			}
			client := startGRPC(t, &testHealth{}, tc.opts(tel)...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, c := range calls {
				want := codes.OK
				switch {
				case c.caller == "":
					want = codes.Unauthenticated
				case c.service == "missing":
					want = codes.NotFound
				}
				if got := c.do(ctx, client); got != want {
					t.Fatalf("%+v: code %v, want %v", c, got, want)
				}
			}
			// The server records a call after the client has its status;
			// wait for the last one.
			m := waitScrape(t, tel, "grpc_server_handled_total", float64(len(calls)))
			for _, s := range common {
				if got := m.value(t, s.name, s.labels); got != s.want {
					t.Errorf("%s%v = %v, want %v", s.name, s.labels, got, s.want)
				}
			}
		})
	}
}

// TestGRPCCallerFromRecord: the caller is read from the call's
// callinfo.Record, wherever authentication runs; without a record it is
// "unknown".
func TestGRPCCallerFromRecord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		chain      func(tel *Telemetry) []grpc.UnaryServerInterceptor
		wantCaller string
	}{
		{"record, auth before telemetry", func(tel *Telemetry) []grpc.UnaryServerInterceptor {
			return []grpc.UnaryServerInterceptor{callinfo.UnaryServerInterceptor(), fakeAuth, tel.UnaryServerInterceptor()}
		}, "billing"},
		{"record, auth after telemetry", func(tel *Telemetry) []grpc.UnaryServerInterceptor {
			return []grpc.UnaryServerInterceptor{callinfo.UnaryServerInterceptor(), tel.UnaryServerInterceptor(), fakeAuth}
		}, "billing"},
		{"no record", func(tel *Telemetry) []grpc.UnaryServerInterceptor {
			return []grpc.UnaryServerInterceptor{tel.UnaryServerInterceptor(), fakeAuth}
		}, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tel := newTelemetry(t, Options{})
			chain := tc.chain(tel)
			client := startGRPC(t, &testHealth{}, grpc.ChainUnaryInterceptor(chain...))
			if got := (grpcCall{caller: "billing", service: "ok"}).do(t.Context(), client); got != codes.OK {
				t.Fatalf("code %v", got)
			}
			m := waitScrape(t, tel, "batchgate_requests_by_caller_total", 1)
			if got := m.labelValues("batchgate_requests_by_caller_total", "caller"); len(got) != 1 || got[0] != tc.wantCaller {
				t.Errorf("caller labels %v, want [%s]", got, tc.wantCaller)
			}
		})
	}
}

// TestGRPCCallerCap: beyond the cap, callers are counted as "other".
func TestGRPCCallerCap(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, Options{maxCallers: 3})
	client := startGRPC(t, &testHealth{}, grpc.ChainUnaryInterceptor(callinfo.UnaryServerInterceptor(), fakeAuth, tel.UnaryServerInterceptor()))
	for _, c := range []string{"a", "b", "c", "d", "e", "a"} {
		if got := (grpcCall{caller: c, service: "ok"}).do(t.Context(), client); got != codes.OK {
			t.Fatalf("code %v", got)
		}
	}
	m := waitScrape(t, tel, "batchgate_requests_by_caller_total", 6)
	for caller, want := range map[string]float64{"a": 2, "b": 1, "c": 1, "other": 2} {
		if got := m.value(t, "batchgate_requests_by_caller_total", L("caller", caller)); got != want {
			t.Errorf("caller %q: %v, want %v", caller, got, want)
		}
	}
	if got := len(m.series("batchgate_requests_by_caller_total", nil)); got != 4 {
		t.Errorf("%d caller series, want 4", got)
	}
}

// TestGRPCCallerCapGroups: with Options.CapCaller, known callers keep
// their own label however many invented ones came first, and invented ones
// beyond the cap get their group's overflow label.
func TestGRPCCallerCapGroups(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, Options{CapCaller: invented, maxCallers: 2})
	client := startGRPC(t, &testHealth{}, grpc.ChainUnaryInterceptor(callinfo.UnaryServerInterceptor(), fakeAuth, tel.UnaryServerInterceptor()))
	for _, c := range []string{"inv:1", "inv:2", "inv:3", "inv:4", "a", "b", "c"} {
		if got := (grpcCall{caller: c, service: "ok"}).do(t.Context(), client); got != codes.OK {
			t.Fatalf("code %v", got)
		}
	}
	m := waitScrape(t, tel, "batchgate_requests_by_caller_total", 7)
	for caller, want := range map[string]float64{"inv:1": 1, "inv:2": 1, "inv:other": 2, "a": 1, "b": 1, "c": 1} {
		if got := m.value(t, "batchgate_requests_by_caller_total", L("caller", caller)); got != want {
			t.Errorf("caller %q: %v, want %v", caller, got, want)
		}
	}
	if got := len(m.series("batchgate_requests_by_caller_total", nil)); got != 6 {
		t.Errorf("%d caller series, want 6", got)
	}
}

// waitScrape scrapes until the counter family name sums to at least want
// (the server records a call just after the client got its answer), or
// fails after 5 s.
func waitScrape(t testing.TB, tel *Telemetry, name string, want float64) families {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := scrape(t, tel)
		var sum float64
		for _, s := range m.series(name, nil) {
			sum += metricValue(s)
		}
		if sum >= want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s sums to %v after 5s, want %v", name, sum, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
