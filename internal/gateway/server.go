// Package gateway assembles and serves batchgate: the gRPC server
// (BatchService, health, reflection), the HTTP server (grpc-gateway's REST
// mapping, /healthz, /readyz) and, in demo mode, the embedded upstream
// simulator. cmd/gateway only parses configuration and calls Run.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/rest"
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// GRPCAddr and HTTPAddr are the listen addresses; ":0" picks a free port.
	GRPCAddr, HTTPAddr string
	// ShutdownTimeout bounds graceful shutdown; after it, connections are
	// closed hard.
	ShutdownTimeout time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// OnShutdown, when set, runs once shutdown starts, after readiness has
	// flipped to NOT_SERVING and before the servers stop: the place to end
	// long-lived streams.
	OnShutdown func()
}

// Server serves one BatchServiceServer over gRPC and HTTP/JSON. Create it
// with NewServer, which binds the listeners; run it with Serve.
type Server struct {
	opts    ServerOptions
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server
	grpcLis net.Listener
	httpLis net.Listener
	// inproc carries grpc-gateway's calls to the gRPC server in memory.
	inproc *bufconn.Listener
	conn   *grpc.ClientConn
	ready  atomic.Bool
}

// inprocBuffer is the in-memory connection buffer between the HTTP/JSON
// front and the gRPC server.
const inprocBuffer = 1 << 20

// NewServer binds both listeners and registers svc. It returns an error when
// an address cannot be bound. Call Serve to start serving; until then the
// listeners only queue connections.
func NewServer(ctx context.Context, svc batchv1.BatchServiceServer, opts ServerOptions) (_ *Server, err error) {
	s := &Server{opts: opts, log: opts.Logger, inproc: bufconn.Listen(inprocBuffer)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	var lc net.ListenConfig
	if s.grpcLis, err = lc.Listen(ctx, "tcp", opts.GRPCAddr); err != nil {
		return nil, fmt.Errorf("gRPC listener: %w", err)
	}
	if s.httpLis, err = lc.Listen(ctx, "tcp", opts.HTTPAddr); err != nil {
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}

	s.grpc = grpc.NewServer(grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))))
	batchv1.RegisterBatchServiceServer(s.grpc, svc)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	// grpc-gateway calls the gRPC server as a client: unary RPCs in
	// process, streaming ones over an in-memory connection, the only way
	// it supports server streaming.
	s.conn, err = grpc.NewClient("passthrough:///inproc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		return nil, fmt.Errorf("in-process gRPC client: %w", err)
	}
	gw := rest.NewServeMux()
	rc := &restClient{BatchServiceClient: batchv1.NewBatchServiceClient(s.conn), srv: svc}
	if err := batchv1.RegisterBatchServiceHandlerClient(ctx, gw, rc); err != nil {
		return nil, fmt.Errorf("register REST handlers: %w", err)
	}
	// Replaces the generated WatchBatch handler (the last registered wins):
	// NDJSON or SSE, and real HTTP statuses for errors before the first event.
	if err := rest.RegisterWatchHandler(gw, rc); err != nil {
		return nil, fmt.Errorf("register REST watch handler: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("/", gw)
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// GRPCAddr returns the bound gRPC address.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// HTTPAddr returns the bound HTTP address.
func (s *Server) HTTPAddr() net.Addr { return s.httpLis.Addr() }

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Serve serves until ctx is done or a server fails, then shuts down: it
// reports NOT_SERVING on health and /readyz, stops accepting, lets calls in
// flight finish for up to ShutdownTimeout, then closes what is left. It
// returns nil after a shutdown caused by ctx, or the first server error.
func (s *Server) Serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ignoreClosed(s.grpc.Serve(s.grpcLis)) })
	g.Go(func() error { return ignoreClosed(s.grpc.Serve(s.inproc)) })
	g.Go(func() error { return ignoreClosed(s.http.Serve(s.httpLis)) })
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(batchv1.BatchService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.ready.Store(true)
	s.log.Info("serving", slog.String("grpc_addr", s.GRPCAddr().String()), slog.String("http_addr", s.HTTPAddr().String()))

	g.Go(func() error {
		<-gctx.Done()
		s.shutdown()
		return nil
	})
	return g.Wait()
}

func (s *Server) shutdown() {
	s.ready.Store(false)
	s.health.Shutdown()
	s.log.Info("shutting down", slog.Duration("timeout", s.opts.ShutdownTimeout))
	if s.opts.OnShutdown != nil {
		s.opts.OnShutdown()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()

	var g errgroup.Group
	g.Go(func() error {
		if err := s.http.Shutdown(ctx); err != nil {
			s.log.Warn("HTTP shutdown timed out; closing connections", slog.Any("error", err))
			_ = s.http.Close()
		}
		return nil
	})
	g.Go(func() error {
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("gRPC graceful stop timed out; stopping")
			s.grpc.Stop()
			<-done
		}
		return nil
	})
	_ = g.Wait()
	_ = s.conn.Close()
	s.log.Info("stopped")
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.grpcLis, s.httpLis, s.inproc} {
		if l != nil {
			_ = l.Close()
		}
	}
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
