package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"golang.org/x/time/rate"
)

// Gateway is a configured batchgate: its servers and, in demo mode, the
// embedded upstream simulator. Create it with New; run it with Serve.
type Gateway struct {
	server *Server
	hub    *watch.Hub
	demo   *demoUpstream
	log    *slog.Logger
}

// New builds a Gateway from cfg: it starts the demo simulator when cfg.Demo
// is set, creates the upstream client and the service, and binds both
// listeners. It returns an error for an invalid upstream URL or an address
// that cannot be bound.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{log: log}
	upURL, upKey := cfg.UpstreamURL, cfg.UpstreamAPIKey
	if cfg.Demo {
		d, err := startDemo(ctx, log)
		if err != nil {
			return nil, err
		}
		g.demo = d
		upURL, upKey = d.url, d.key
	}
	client, err := upstream.New(upstream.Config{
		BaseURL:        upURL,
		APIKey:         upKey,
		AttemptTimeout: cfg.UpstreamTimeout,
		MaxAttempts:    cfg.UpstreamMaxAttempts,
		Logger:         log.With(slog.String("component", "upstream")),
	})
	if err != nil {
		g.closeDemo()
		return nil, fmt.Errorf("upstream: %w", err)
	}
	g.hub = watch.New(client, hubOptions(cfg, log))
	svc := service.New(g.hub, service.Options{
		Heartbeat: cfg.WatchHeartbeat,
		MaxAge:    cfg.WatchMaxAge,
		Logger:    log.With(slog.String("component", "service")),
	})
	g.server, err = NewServer(ctx, svc, ServerOptions{
		GRPCAddr:        cfg.GRPCAddr,
		HTTPAddr:        cfg.HTTPAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          log,
		// Watch streams end (UNAVAILABLE, reconnect) as soon as shutdown
		// starts, so that graceful stop only waits for unary calls.
		OnShutdown: g.hub.Close,
	})
	if err != nil {
		g.hub.Close()
		g.closeDemo()
		return nil, err
	}
	return g, nil
}

// hubOptions turns the configuration into the shared pollers' options.
func hubOptions(cfg config.Config, log *slog.Logger) watch.Options {
	o := watch.Options{
		PollInterval:  cfg.PollInterval,
		FailureBudget: cfg.WatchFailureBudget,
		FreshFor:      cfg.CacheTTL,
		Logger:        log.With(slog.String("component", "watch")),
	}
	if cfg.UpstreamRPS > 0 {
		burst := max(1, int(cfg.UpstreamRPS))
		o.Limiter = rate.NewLimiter(rate.Limit(cfg.UpstreamRPS), burst)
	}
	return o
}

// HubStats returns the shared pollers' counters.
func (g *Gateway) HubStats() watch.Stats { return g.hub.Stats() }

// GRPCAddr returns the bound gRPC address.
func (g *Gateway) GRPCAddr() net.Addr { return g.server.GRPCAddr() }

// HTTPAddr returns the bound HTTP address.
func (g *Gateway) HTTPAddr() net.Addr { return g.server.HTTPAddr() }

// DemoBatchIDs returns the simulator's demo batch ids, or nil outside demo
// mode.
func (g *Gateway) DemoBatchIDs() []string {
	if g.demo == nil {
		return nil
	}
	return g.demo.sim.DemoBatchIDs()
}

// Serve serves until ctx is done, then shuts down gracefully (see
// Server.Serve), ending every watch stream, and stops the demo simulator.
func (g *Gateway) Serve(ctx context.Context) error {
	defer g.closeDemo()
	defer g.hub.Close()
	return g.server.Serve(ctx)
}

// Run builds a Gateway from cfg and serves it until ctx is done.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	g, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return g.Serve(ctx)
}

func (g *Gateway) closeDemo() {
	if g.demo != nil {
		g.demo.close()
	}
}

// demoUpstream is the embedded simulator served on a loopback port, so that
// the gateway reaches it over real HTTP, as it would a real upstream.
type demoUpstream struct {
	sim *simulator.Simulator
	srv *http.Server
	url string
	key string
}

func startDemo(ctx context.Context, log *slog.Logger) (*demoUpstream, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo upstream listener: %w", err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	key := "sk-demo-" + hex.EncodeToString(raw[:])
	sim := simulator.New(simulator.Options{APIKey: key})
	d := &demoUpstream{
		sim: sim,
		srv: &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second},
		url: "http://" + lis.Addr().String(),
		key: key,
	}
	go func() {
		if err := d.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo upstream stopped", slog.Any("error", err))
		}
	}()
	log.Info("demo mode: fronting the embedded upstream simulator",
		slog.String("upstream_url", d.url), slog.Any("demo_batch_ids", sim.DemoBatchIDs()))
	return d, nil
}

func (d *demoUpstream) close() { _ = d.srv.Close() }
