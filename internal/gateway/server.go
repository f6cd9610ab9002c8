// Package gateway assembles and serves batchgate: the gRPC server
// (BatchService, health, reflection), the HTTP server (grpc-gateway's REST
// mapping, /healthz, /readyz, /metrics, /openapi.yaml) and, in demo mode,
// the embedded upstream simulator. cmd/gateway only parses configuration
// and calls Run.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/fanout"
	"github.com/batchgate/batchgate/internal/inproc"
	"github.com/batchgate/batchgate/internal/rest"
	"github.com/batchgate/batchgate/openapi"
)

// ServerOptions configures a Server. Zero fields are off or defaulted as
// documented.
type ServerOptions struct {
	// GRPCAddr and HTTPAddr are the listen addresses; ":0" picks a free port.
	GRPCAddr, HTTPAddr string
	// ShutdownTimeout bounds graceful shutdown; after it, connections are
	// closed hard.
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long a shutdown caused by Serve's context
	// (SIGTERM) serves on with readiness already NOT_SERVING before the
	// servers stop accepting, so that load balancers take the server out
	// of rotation first. Zero: no delay. A server failure stops at once.
	ShutdownDelay time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// OnShutdown, when set, runs once shutdown starts, after readiness has
	// flipped to NOT_SERVING and the ShutdownDelay has passed, and before
	// the servers stop: the place to end long-lived streams.
	OnShutdown func()
	// TLS, when set, serves both ports over TLS (with client certificates
	// if it asks for them). Nil: plaintext.
	TLS *tls.Config
	// GRPCOptions are extra options of the public gRPC server (stats
	// handlers, for example).
	GRPCOptions []grpc.ServerOption
	// UnaryInterceptors and StreamInterceptors run, outermost first, on
	// calls to the public gRPC port.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// RESTUnaryInterceptors and RESTStreamInterceptors run, outermost
	// first, on calls that arrive over REST; HTTPMiddleware logs and
	// measures those, so these are typically authentication and limits.
	RESTUnaryInterceptors  []grpc.UnaryServerInterceptor
	RESTStreamInterceptors []grpc.StreamServerInterceptor
	// HTTPMiddleware wraps the whole HTTP port. Nil: none.
	HTTPMiddleware func(http.Handler) http.Handler
	// MetricsHandler, when set, is served at GET /metrics on the HTTP port.
	MetricsHandler http.Handler
	// UI, when set, is the status page, served at GET /ui/ (and HEAD) on
	// the HTTP port; /ui redirects there.
	UI http.Handler
	// Ready, when set, is consulted by /readyz and gRPC health while
	// serving: false reports NOT_SERVING (an upstream that keeps failing).
	Ready func() bool
	// ReadyDetail, when set, adds a line to /readyz's answer (the
	// cluster's state); it never changes readiness.
	ReadyDetail func() string
	// MaxStreamsPerConn caps concurrent streams per gRPC connection.
	// Default 1000.
	MaxStreamsPerConn uint32
	// MaxUploadBytes caps a REST upload's file (POST /v1/files). Default
	// 200 MB.
	MaxUploadBytes int64
	// WebhookListener and Webhook, when both set, serve the upstream
	// webhook receiver on a port of its own (over TLS when TLS is set),
	// stopped gracefully with the HTTP server. The Server closes the
	// listener.
	WebhookListener net.Listener
	Webhook         http.Handler
}

// Server serves one BatchServiceServer over gRPC and HTTP/JSON. Create it
// with NewServer, which binds the listeners; run it with Serve.
type Server struct {
	opts       ServerOptions
	log        *slog.Logger
	grpc       *grpc.Server
	health     *health.Server
	http       *http.Server
	grpcLis    net.Listener
	httpLis    net.Listener
	hook       *http.Server // nil without a webhook receiver
	hookLis    net.Listener
	serving    atomic.Bool   // between the start of Serve and shutdown
	stopHealth chan struct{} // closed at shutdown: ends health Watch streams
}

// maxRequestBytes bounds one REST request body and the gRPC headers: batch
// requests are tiny (uploads have their own limit).
const maxRequestBytes = 64 << 10

// Services are the RPC implementations a Server serves.
type Services struct {
	// Batch serves batch.v1.BatchService. Required.
	Batch batchv1.BatchServiceServer
	// File serves batch.v1.FileService; nil: not served.
	File batchv1.FileServiceServer
}

// maxMessageBytes bounds one gRPC message (gRPC's own default): upload
// chunks are the largest.
const maxMessageBytes = 4 << 20

// NewServer binds both listeners and registers svcs. It returns an error when
// an address cannot be bound. Call Serve to start serving; until then the
// listeners only queue connections.
func NewServer(ctx context.Context, svcs Services, opts ServerOptions) (_ *Server, err error) {
	if opts.MaxStreamsPerConn == 0 {
		opts.MaxStreamsPerConn = 1000
	}
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = 200_000_000
	}
	s := &Server{opts: opts, log: opts.Logger, stopHealth: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Webhook != nil {
		s.hookLis = opts.WebhookListener
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

	grpcOpts := []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxHeaderListSize(maxRequestBytes),
		grpc.MaxConcurrentStreams(opts.MaxStreamsPerConn),
		// Watch streams live for hours: ping idle connections so that
		// dead peers are noticed, and refuse clients that ping too often.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(opts.UnaryInterceptors...),
		grpc.ChainStreamInterceptor(opts.StreamInterceptors...),
		// Watch events carry their batch encoded once for all watchers.
		fanout.ServerOption(),
	}
	if opts.TLS != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(opts.TLS.Clone())))
	}
	s.grpc = grpc.NewServer(append(grpcOpts, opts.GRPCOptions...)...)
	// The REST handlers call the same services as clients, in process,
	// behind the REST interceptors (the route recorder first).
	conn := inproc.New(
		append([]grpc.UnaryServerInterceptor{recordRouteUnary}, opts.RESTUnaryInterceptors...),
		append([]grpc.StreamServerInterceptor{recordRouteStream}, opts.RESTStreamInterceptors...),
	)
	for _, reg := range []grpc.ServiceRegistrar{s.grpc, conn} {
		batchv1.RegisterBatchServiceServer(reg, svcs.Batch)
		if svcs.File != nil {
			batchv1.RegisterFileServiceServer(reg, svcs.File)
		}
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, healthServer{Server: s.health, stop: s.stopHealth})
	reflection.Register(s.grpc)

	gw := rest.NewServeMux()
	batches := batchv1.NewBatchServiceClient(conn)
	if err := batchv1.RegisterBatchServiceHandlerClient(ctx, gw, batches); err != nil {
		return nil, fmt.Errorf("register REST handlers: %w", err)
	}
	// Replaces the generated GET /v1/batches/{batch_id}: ETag and
	// If-None-Match.
	if err := rest.RegisterGetBatchHandler(gw, conn); err != nil {
		return nil, fmt.Errorf("register REST get handler: %w", err)
	}
	files := batchv1.NewFileServiceClient(conn)
	if svcs.File != nil {
		if err := batchv1.RegisterFileServiceHandlerClient(ctx, gw, files); err != nil {
			return nil, fmt.Errorf("register REST file handlers: %w", err)
		}
		// Raw bytes, not JSON messages (replaces the generated handler).
		if err := rest.RegisterContentHandler(gw, files); err != nil {
			return nil, fmt.Errorf("register REST content handler: %w", err)
		}
	}
	// These replace the generated handlers (the last registered wins):
	// NDJSON or SSE, and real HTTP statuses for errors before the first
	// event or line.
	if err := rest.RegisterWatchHandler(gw, batches); err != nil {
		return nil, fmt.Errorf("register REST watch handler: %w", err)
	}
	if err := rest.RegisterWatchBatchesHandler(gw, batches); err != nil {
		return nil, fmt.Errorf("register REST multi-watch handler: %w", err)
	}
	if err := rest.RegisterResultsHandler(gw, batches); err != nil {
		return nil, fmt.Errorf("register REST results handler: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openapi.Document())
	})
	if opts.MetricsHandler != nil {
		mux.Handle("GET /metrics", opts.MetricsHandler)
	}
	if opts.UI != nil {
		mux.Handle("GET /ui/", opts.UI)
		mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	}
	mux.Handle("/", rest.LimitBody(rest.ListLimits(headAsGet(gw)), maxRequestBytes))
	if svcs.File != nil {
		// Uploads stream, with their own limit.
		mux.Handle("POST "+rest.FilesPath, rest.UploadHandler(gw, files, opts.MaxUploadBytes))
	}
	handler := recordPattern(mux)
	if opts.HTTPMiddleware != nil {
		handler = opts.HTTPMiddleware(handler)
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         opts.TLS.Clone(),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.hookLis != nil {
		s.hook = &http.Server{
			Handler:           opts.Webhook,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			TLSConfig:         opts.TLS.Clone(),
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	return s, nil
}

// WebhookAddr returns the bound webhook receiver address, nil without one.
func (s *Server) WebhookAddr() net.Addr {
	if s.hookLis == nil {
		return nil
	}
	return s.hookLis.Addr()
}

// GRPCAddr returns the bound gRPC address.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// HTTPAddr returns the bound HTTP address.
func (s *Server) HTTPAddr() net.Addr { return s.httpLis.Addr() }

// ready reports whether the server takes new work: serving, not shutting
// down, and the upstream not failing past its threshold.
func (s *Server) ready() bool {
	return s.serving.Load() && (s.opts.Ready == nil || s.opts.Ready())
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
	if s.opts.ReadyDetail != nil {
		_, _ = w.Write([]byte(s.opts.ReadyDetail() + "\n"))
	}
}

// Serve serves until ctx is done or a server fails, then shuts down: it
// reports NOT_SERVING on health and /readyz, serves on for ShutdownDelay
// (when ctx is done), runs OnShutdown, stops accepting, lets calls in
// flight finish for up to ShutdownTimeout, then closes what is left. It returns nil after a shutdown caused by ctx, or
// the first server error.
func (s *Server) Serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ignoreClosed(s.grpc.Serve(s.grpcLis)) })
	g.Go(func() error {
		if s.opts.TLS != nil {
			return ignoreClosed(s.http.ServeTLS(s.httpLis, "", ""))
		}
		return ignoreClosed(s.http.Serve(s.httpLis))
	})
	if s.hook != nil {
		g.Go(func() error {
			if s.opts.TLS != nil {
				return ignoreClosed(s.hook.ServeTLS(s.hookLis, "", ""))
			}
			return ignoreClosed(s.hook.Serve(s.hookLis))
		})
		s.log.Info("serving the webhook receiver", slog.String("webhook_addr", s.hookLis.Addr().String()), slog.Bool("tls", s.opts.TLS != nil))
	}
	s.serving.Store(true)
	s.setHealth()
	s.log.Info("serving", slog.String("grpc_addr", s.GRPCAddr().String()), slog.String("http_addr", s.HTTPAddr().String()),
		slog.Bool("tls", s.opts.TLS != nil), slog.Bool("mtls", s.opts.TLS != nil && s.opts.TLS.ClientCAs != nil))
	if s.opts.TLS == nil {
		s.log.Warn("serving plaintext gRPC and HTTP: fine on loopback or behind a TLS-terminating proxy; set -tls-cert and -tls-key otherwise")
	}
	g.Go(func() error {
		// gRPC health follows readiness: the upstream may start or stop
		// failing at any time.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.setHealth()
			case <-gctx.Done():
				// ctx done: a signal, drain first; else a server failed.
				s.shutdown(ctx.Err() != nil)
				return nil
			}
		}
	})
	return g.Wait()
}

// setHealth publishes readiness on gRPC health, for the server as a whole
// and for BatchService.
func (s *Server) setHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s.ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(batchv1.BatchService_ServiceDesc.ServiceName, st)
}

// shutdown stops the servers gracefully; with drain, after the
// ShutdownDelay, during which readiness is already NOT_SERVING but every
// listener still accepts and calls run as usual.
func (s *Server) shutdown(drain bool) {
	s.serving.Store(false)
	s.health.Shutdown() // NOT_SERVING to every Check and Watch
	if d := s.opts.ShutdownDelay; drain && d > 0 {
		s.log.Info("draining: readiness is NOT_SERVING; serving on for the shutdown delay before closing the listeners",
			slog.Duration("delay", d))
		time.Sleep(d)
	}
	close(s.stopHealth)
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
	if s.hook != nil {
		g.Go(func() error {
			if err := s.hook.Shutdown(ctx); err != nil {
				s.log.Warn("webhook receiver shutdown timed out; closing connections", slog.Any("error", err))
				_ = s.hook.Close()
			}
			return nil
		})
	}
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
	s.log.Info("stopped")
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.grpcLis, s.httpLis, s.opts.WebhookListener} {
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

// recordPattern records, once mux has served a request, the ServeMux
// pattern that served it in the request's callinfo.Record, unless that is
// the catch-all "/" (REST calls record grpc-gateway's path pattern,
// further in, first).
func recordPattern(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		// http.ServeMux has set r.Pattern on r, the request it got.
		if r.Pattern != "/" {
			callinfo.FromContext(r.Context()).SetRoute(r.Pattern)
		}
	})
}

// headAsGet serves HEAD as the GET of the same path, without the body (the
// HTTP server drops it for a HEAD request), as HTTP wants of GET routes.
// Streams (watches, results, file content) are left out: their headers
// come only with the first event or byte, and a HEAD request must not
// start one.
func headAsGet(h http.Handler) http.Handler {
	isStream := func(p string) bool {
		return strings.HasSuffix(p, "/watch") || strings.HasSuffix(p, "/results") || strings.HasSuffix(p, "/content") ||
			strings.HasSuffix(p, ":watch")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && !isStream(r.URL.Path) {
			r = r.Clone(r.Context())
			r.Method = http.MethodGet
		}
		h.ServeHTTP(w, r)
	})
}
