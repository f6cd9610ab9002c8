// Package gatewaytest boots a gateway in front of a simulator (or an
// upstream handler of the test's own) on loopback ports, for the tests
// of other packages: the one way the tests start a gateway in process.
package gatewaytest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/simulator"
)

// Key is the gateway's upstream key, and the simulator's, unless Options
// says otherwise.
const Key = "sk-test-upstream-key"

// Options says how Start builds a gateway. The zero value is a simulator
// upstream, Auth "none", plaintext clients and discarded logs.
type Options struct {
	// Upstream, when set, is the upstream instead of a simulator.
	Upstream http.Handler
	// Sim configures the simulator. Its APIKey defaults to UpstreamKey;
	// SimAnyKey makes it accept any bearer key instead.
	Sim       simulator.Options
	SimAnyKey bool
	// UpstreamKey is the gateway's own upstream key. Default Key.
	UpstreamKey string
	// Log receives the gateway's logs. Default: discarded.
	Log *slog.Logger
	// Dial are the gRPC client's options. Default: plaintext.
	Dial []grpc.DialOption
	// HTTPClient is the client for BaseURL, which is https:// when set.
	// Default: a plaintext client of the test's own. Env.HTTP is a copy
	// of it whose transport checks the responses (OpenAPITransport).
	HTTPClient *http.Client
}

// Env is a gateway started by Start, with its upstream and clients.
type Env struct {
	// Sim is the simulator upstream; nil with Options.Upstream.
	Sim *simulator.Simulator
	// Upstream serves Sim or Options.Upstream.
	Upstream *httptest.Server
	GW       *gateway.Gateway
	Conn     *grpc.ClientConn
	Client   batchv1.BatchServiceClient
	// HTTP is the client for BaseURL ("http://" or "https://" and the
	// gateway's HTTP address). Its transport is wrapped by
	// OpenAPITransport: a response that does not conform to
	// openapi/batchgate.yaml fails the test.
	HTTP    *http.Client
	BaseURL string
	// Stop shuts the gateway down and waits for Serve to return, failing
	// the test if Serve failed. It is idempotent and also runs at cleanup.
	Stop func()
}

// Start starts a gateway on loopback ports with the options of o; its
// config is config.Defaults with Auth "none", the upstream's URL and key
// and a 5 s shutdown timeout, until mutate changes it. Everything stops
// when the test ends.
func Start(t testing.TB, o Options, mutate ...func(*config.Config)) *Env {
	t.Helper()
	if o.UpstreamKey == "" {
		o.UpstreamKey = Key
	}
	var sim *simulator.Simulator
	handler := o.Upstream
	if handler == nil {
		if o.SimAnyKey {
			o.Sim.APIKey = ""
		} else if o.Sim.APIKey == "" {
			o.Sim.APIKey = o.UpstreamKey
		}
		sim = simulator.New(o.Sim)
		handler = sim
	}
	up := httptest.NewServer(handler)
	t.Cleanup(up.Close)

	cfg := config.Defaults()
	cfg.Auth.Mode = "none"
	cfg.Upstream.BaseURL = up.URL
	cfg.Upstream.APIKey = o.UpstreamKey
	cfg.Server.GRPCAddr = "127.0.0.1:0"
	cfg.Server.HTTPAddr = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = 5 * time.Second
	for _, f := range mutate {
		f(&cfg)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("gateway.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()

	dial := o.Dial
	if dial == nil {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(g.GRPCAddr().String(), dial...)
	if err != nil {
		cancel()
		if serr := <-done; serr != nil {
			t.Errorf("Serve: %v", serr)
		}
		t.Fatalf("grpc.NewClient: %v", err)
	}
	hc, scheme := o.HTTPClient, "https"
	if hc == nil {
		hc, scheme = &http.Client{Transport: &http.Transport{}}, "http"
	}
	checked := *hc
	checked.Transport = OpenAPITransport(t, hc.Transport)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		hc.CloseIdleConnections()
		_ = conn.Close()
		stop()
	})
	return &Env{Sim: sim, Upstream: up, GW: g, Conn: conn, Client: batchv1.NewBatchServiceClient(conn),
		HTTP: &checked, BaseURL: scheme + "://" + g.HTTPAddr().String(), Stop: stop}
}
