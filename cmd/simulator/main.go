// Command simulator serves the upstream simulator (internal/simulator), the
// fake OpenAI-compatible batch API behind the gateway's -demo, as a process
// of its own, so that several gateway replicas and load tools can share one
// upstream. GET /healthz answers without a key; everything else needs the
// bearer key (-api-key), or any with -any-key. See the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.LookupEnv, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "simulator:", err)
		os.Exit(1)
	}
}

// realMain loads the configuration from args and the environment, and
// serves the simulator until ctx is done.
func realMain(ctx context.Context, args []string, lookup func(string) (string, bool), stderr io.Writer) error {
	cfg, err := config.LoadSimulator(args, lookup, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, cfg.Log.Logger(stderr))
}

// serve binds cfg.Addr and serves the simulator until ctx is done, then
// shuts down gracefully within cfg.ShutdownTimeout and stops the webhook
// sender.
func serve(ctx context.Context, cfg config.SimulatorConfig, log *slog.Logger) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	if cfg.AnyKey {
		cfg.Sim.APIKey = "" // the simulator's "any non-empty key"
	}
	sim := simulator.New(cfg.Sim)
	defer sim.Close()
	srv := &http.Server{
		Handler:           handler(sim),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("serving", slog.String("addr", lis.Addr().String()), slog.Bool("any_key", cfg.AnyKey),
		slog.Any("demo_batch_ids", sim.DemoBatchIDs()), slog.String("webhook_url", cfg.Sim.WebhookURL))

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown timed out; closing connections", slog.Any("error", err))
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	log.Info("stopped")
	return nil
}

// handler serves GET /healthz without a key and everything else from sim.
func handler(sim *simulator.Simulator) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/", sim)
	return mux
}
