package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/auth"
	"github.com/batchgate/batchgate/internal/cluster"
	"github.com/batchgate/batchgate/internal/limit"
	"github.com/batchgate/batchgate/internal/telemetry"
	"github.com/batchgate/batchgate/internal/ui"

	"golang.org/x/time/rate"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/webhook"
)

// Gateway is a configured batchgate: its servers and, in demo mode, the
// embedded upstream simulator. Create it with New; run it with Serve.
type Gateway struct {
	server *Server
	hub    *watch.Hub
	// cluster shares the hub's pollers with the other replicas; nil
	// without -cluster-nats-url.
	cluster *cluster.Cluster
	authn   *auth.Authenticator
	tel     *telemetry.Telemetry
	demo    *demoUpstream
	log     *slog.Logger

	// The webhook receiver, when on: its listener (bound before the demo
	// starts, so that the simulator knows where to send), metrics and
	// handler.
	hookLis     net.Listener
	hookMetrics *webhook.Metrics
	hook        *webhook.Receiver
}

// New builds a Gateway from cfg: it starts the demo simulator when cfg.Demo
// is set, creates the authenticator, the upstream client, the shared
// pollers and the service, and binds both listeners. It returns an error
// for a bad tokens file or TLS material, an invalid upstream URL or an
// address that cannot be bound.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Gateway, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{log: log}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if err = g.newAuth(cfg.Auth); err != nil {
		return nil, err
	}
	tlsCfg, err := LoadTLS(cfg.Server.TLSCert, cfg.Server.TLSKey, cfg.Server.TLSClientCA)
	if err != nil {
		return nil, err
	}
	if g.tel, err = telemetry.New(ctx, telemetry.Options{ServiceName: "batchgate", Logger: log, CapCaller: capCaller}); err != nil {
		return nil, err
	}
	secrets, demoHook, err := g.listenWebhook(ctx, cfg, tlsCfg)
	if err != nil {
		return nil, err
	}
	if cfg.Demo {
		if g.demo, err = startDemo(ctx, log, g.authn.Mode() == auth.ModePassthrough, demoHook); err != nil {
			return nil, err
		}
		cfg.Upstream.BaseURL, cfg.Upstream.APIKey = g.demo.url, g.demo.key
	}
	client, health, err := g.newUpstream(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	if err = g.newCluster(cfg.Cluster, cfg.Watch.PollInterval); err != nil {
		return nil, err
	}
	g.newHub(health, cfg.Watch)
	if err = g.newReceiver(secrets); err != nil {
		return nil, err
	}
	svc := g.newService(cfg.Service, client, cfg.Files)
	chains := g.newChains(cfg.Limits, cfg.Server.CORSOrigins)
	if g.server, err = g.newServer(ctx, cfg.Server, cfg.Files, tlsCfg, svc, chains, health); err != nil {
		return nil, err
	}
	log.Info("credential mode", slog.String("auth", string(g.authn.Mode())))
	return g, nil
}

// newAuth creates the authenticator of o's credential mode.
func (g *Gateway) newAuth(o auth.Options) error {
	if o.Mode != auth.ModeKey {
		o.TokensFile = "" // only key mode has tokens
	}
	o.Logger = g.log.With(slog.String("component", "auth"))
	var err error
	if g.authn, err = auth.New(o); err != nil {
		return err
	}
	if o.Mode == auth.ModeNone {
		g.log.Warn("no caller check (-auth=none): anyone who reaches the ports can use the gateway's upstream key")
	}
	return nil
}

// newUpstream creates the instrumented upstream client of c and returns
// it, and it wrapped in the upstream's health, which readiness follows. In
// passthrough mode the client has no key of its own.
func (g *Gateway) newUpstream(c upstream.Config) (*upstream.Client, *upstreamHealth, error) {
	if g.authn.Mode() == auth.ModePassthrough {
		c.APIKey = "" // only callers' keys go upstream
	}
	c.HTTPClient = upstream.DefaultHTTPClient()
	c.HTTPClient.Transport = g.tel.UpstreamTransport(c.HTTPClient.Transport)
	c.Logger = g.log.With(slog.String("component", "upstream"))
	client, err := upstream.New(c)
	if err != nil {
		return nil, nil, fmt.Errorf("upstream: %w", err)
	}
	g.tel.RegisterUpstream(client.Stats)
	return client, newUpstreamHealth(client), nil
}

// newHub creates the shared pollers on the upstream. With a webhook
// receiver, their publications end its delivery measurements.
func (g *Gateway) newHub(up watch.Fetcher, c config.WatchConfig) {
	o := hubOptions(c, g.log)
	if m := g.hookMetrics; m != nil {
		o.OnPublish = func(k watch.Key, _ *batchv1.Batch, at time.Time) { m.Delivered(k.BatchID, at) }
	}
	if g.cluster != nil {
		o.Coordinator = g.cluster
	}
	g.hub = watch.New(up, o)
	g.tel.RegisterHub(g.hub.Stats)
	if g.cluster != nil {
		g.cluster.OnPoke(func(id string) { g.hub.PokeLocal(id) })
	}
}

// newCluster connects to NATS when c has a URL, so that the replicas poll
// each batch once between them (see internal/cluster), and registers its
// metrics. An unreachable NATS is no error: the hub polls alone until it
// is reachable. TLS files that are missing or not PEM are, naming their
// flag.
func (g *Gateway) newCluster(c config.ClusterConfig, interval time.Duration) error {
	if c.NATSURL == "" {
		return nil
	}
	cl, err := cluster.New(cluster.Options{
		URL:          c.NATSURL,
		CredsFile:    c.NATSCreds,
		CAFile:       c.NATSCA,
		CertFile:     c.NATSCert,
		KeyFile:      c.NATSKey,
		Bucket:       c.Bucket,
		PollInterval: interval,
		Logger:       g.log.With(slog.String("component", "cluster")),
	})
	var fe *cluster.FileError
	if errors.As(err, &fe) {
		flag := map[string]string{
			"CAFile":   "-cluster-nats-ca (CLUSTER_NATS_CA)",
			"CertFile": "-cluster-nats-cert (CLUSTER_NATS_CERT)",
			"KeyFile":  "-cluster-nats-key (CLUSTER_NATS_KEY)",
		}[fe.Option]
		return fmt.Errorf("%s: %w", flag, fe.Err)
	}
	if err != nil {
		return err
	}
	g.cluster = cl
	for _, m := range clusterMetrics(cl, func() watch.Stats {
		if g.hub == nil { // the hub is built after the cluster, before serving
			return watch.Stats{}
		}
		return g.hub.Stats()
	}) {
		if err := g.tel.Registry.Register(m); err != nil {
			return fmt.Errorf("cluster metrics: %w", err)
		}
	}
	g.log.Info("cluster on", slog.String("bucket", c.Bucket), slog.String("replica", cl.ReplicaID()))
	return nil
}

// clusterMetrics are the cluster's gauges and counters, and the hub's
// counts of shared states, read at scrape time.
func clusterMetrics(cl *cluster.Cluster, hub func() watch.Stats) []prometheus.Collector {
	gauge := func(name, help string, v func(cluster.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "batchgate_cluster_" + name, Help: help}, func() float64 { return v(cl.Stats()) })
	}
	counter := func(name, help string, v func(cluster.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "batchgate_cluster_" + name, Help: help}, func() float64 { return float64(v(cl.Stats())) })
	}
	return []prometheus.Collector{
		gauge("shared", "1 while the replica shares leases through NATS, 0 while it polls alone (NATS unavailable).", func(s cluster.Stats) float64 {
			if s.Shared {
				return 1
			}
			return 0
		}),
		gauge("leases", "Leases this replica holds: batches it polls for the cluster.", func(s cluster.Stats) float64 { return float64(s.Leases) }),
		counter("leases_acquired_total", "Leases taken.", func(s cluster.Stats) uint64 { return s.Acquired }),
		counter("get_leases_total", "Leases taken for one GetBatch upstream call shared with the other replicas.", func(s cluster.Stats) uint64 { return s.GetLeases }),
		counter("leases_lost_total", "Leases found taken by another replica at renewal.", func(s cluster.Stats) uint64 { return s.Lost }),
		counter("leases_reclaimed_total", "Leases of silent replicas (no heartbeat for three heartbeats) deleted by this replica so that a follower takes them over.", func(s cluster.Stats) uint64 { return s.Reclaimed }),
		counter("unavailable_total", "Lease requests refused because NATS was unavailable (polls made alone).", func(s cluster.Stats) uint64 { return s.Unavailable }),
		counter("states_written_total", "Shared batch states written.", func(s cluster.Stats) uint64 { return s.StatesWritten }),
		counter("states_received_total", "Shared batch states received for local watchers.", func(s cluster.Stats) uint64 { return s.StatesReceived }),
		counter("pokes_sent_total", "Pokes published to the other replicas.", func(s cluster.Stats) uint64 { return s.PokesSent }),
		counter("pokes_received_total", "Pokes received from the other replicas.", func(s cluster.Stats) uint64 { return s.PokesReceived }),
		counter("errors_total", "Failed NATS operations.", func(s cluster.Stats) uint64 { return s.Errors }),
		counter("states_fenced_total", "Shared states ignored because a later lease holder had written a newer one.", func(s cluster.Stats) uint64 { return s.StatesFenced }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "batchgate_cluster_shared_gets_total", Help: "GetBatch calls answered from a fresh shared state, found or waited for."},
			func() float64 { return float64(hub().SharedHits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "batchgate_cluster_states_followed_total", Help: "Shared states, polled by another replica, published to this replica's watchers."},
			func() float64 { return float64(hub().Followed) }),
	}
}

// closeCluster releases the cluster's leases and connection, after the hub.
func (g *Gateway) closeCluster() {
	if g.cluster != nil {
		g.cluster.Close()
	}
}

// demoWebhook is where the demo simulator sends its webhooks.
type demoWebhook struct {
	url, secret string
	tls         bool
}

// listenWebhook binds the webhook receiver's listener: at
// cfg.Webhook.Addr, or with -demo and no address on a loopback ephemeral
// port. It returns the receiver's secrets and, with -demo, where and with
// which (random) secret the simulator signs. Without a receiver it does
// nothing.
func (g *Gateway) listenWebhook(ctx context.Context, cfg config.Config, tlsCfg *tls.Config) (string, *demoWebhook, error) {
	addr, secrets := cfg.Webhook.Addr, cfg.Webhook.Secret
	if addr == "" && !cfg.Demo {
		return "", nil, nil
	}
	var demo *demoWebhook
	if cfg.Demo {
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		demo = &demoWebhook{secret: webhook.SecretPrefix + base64.StdEncoding.EncodeToString(raw[:]), tls: tlsCfg != nil}
		if strings.TrimSpace(secrets) != "" {
			secrets += ","
		}
		secrets += demo.secret
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("webhook listener: %w", err)
	}
	g.hookLis = lis
	g.hookMetrics = webhook.NewMetrics()
	for _, c := range g.hookMetrics.Collectors() {
		if err := g.tel.Registry.Register(c); err != nil {
			return "", nil, fmt.Errorf("webhook metrics: %w", err)
		}
	}
	if demo != nil {
		scheme := "http"
		if demo.tls {
			scheme = "https"
		}
		port := lis.Addr().(*net.TCPAddr).Port
		demo.url = fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, port, webhook.Path)
	}
	return secrets, demo, nil
}

// newReceiver creates the webhook receiver on the shared pollers, when its
// listener is bound.
func (g *Gateway) newReceiver(secrets string) error {
	if g.hookLis == nil {
		return nil
	}
	v, err := webhook.NewVerifier(secrets)
	if err != nil {
		return fmt.Errorf("-webhook-secret: %w", err)
	}
	g.hook = webhook.NewReceiver(webhook.Options{
		Verifier: v,
		Poker:    g.hub,
		Metrics:  g.hookMetrics,
		Logger:   g.log.With(slog.String("component", "webhook")),
	})
	return nil
}

// newService creates the BatchService and FileService on the shared
// pollers and the upstream client. The caller of a call is the one
// authentication recorded (every call has one: the chains authenticate
// before the service runs).
func (g *Gateway) newService(o service.Options, up service.Upstream, files config.FilesConfig) *service.Service {
	o.Logger = g.log.With(slog.String("component", "service"))
	o.Credential = func(ctx context.Context) string { c, _ := auth.FromContext(ctx); return c.CredentialHash }
	o.Caller = func(ctx context.Context) auth.Caller { c, _ := auth.FromContext(ctx); return c }
	o.Upstream = up
	o.Poker = g.hub
	o.MaxUploadBytes = files.MaxUploadBytes
	return service.New(g.hub, o)
}

// newChains builds the call chains (NewChains) with the limits of o.
func (g *Gateway) newChains(o limit.Options, corsOrigins string) Chains {
	o.CallerName = callerKey
	return NewChains(ChainDeps{Auth: g.authn, Limits: limit.New(o), Telemetry: g.tel, Logger: g.log, CORSOrigins: corsOrigins})
}

// newServer binds the servers of svc, behind the call chains.
func (g *Gateway) newServer(ctx context.Context, c config.ServerConfig, files config.FilesConfig, tlsCfg *tls.Config, svc *service.Service, chains Chains, health *upstreamHealth) (*Server, error) {
	return NewServer(ctx, Services{Batch: svc, File: svc.Files()}, ServerOptions{
		MaxUploadBytes:         files.MaxUploadBytes,
		GRPCAddr:               c.GRPCAddr,
		HTTPAddr:               c.HTTPAddr,
		ShutdownTimeout:        c.ShutdownTimeout,
		ShutdownDelay:          c.ShutdownDelay,
		Logger:                 g.log,
		TLS:                    tlsCfg,
		MaxStreamsPerConn:      uint32(c.MaxStreamsPerConn),
		GRPCOptions:            g.tel.GRPCTracingOptions(),
		UnaryInterceptors:      chains.Unary,
		StreamInterceptors:     chains.Stream,
		RESTUnaryInterceptors:  chains.RESTUnary,
		RESTStreamInterceptors: chains.RESTStream,
		HTTPMiddleware:         chains.HTTP,
		MetricsHandler:         g.tel.MetricsHandler(),
		UI:                     uiHandler(c.UI),
		Ready:                  func() bool { return health.healthy(c.UpstreamUnhealthyAfter) },
		ReadyDetail:            g.readyDetail(),
		// Watch streams end (UNAVAILABLE, reconnect) as soon as shutdown
		// starts, so that graceful stop only waits for unary calls; those
		// keep their upstream calls until the servers have drained (Serve
		// closes the hub then, within the shutdown timeout).
		OnShutdown:      g.hub.CloseWatches,
		WebhookListener: g.hookLis,
		Webhook:         g.webhookHandler(),
	})
}

// readyDetail is the cluster's state for /readyz, nil without a cluster.
// It never makes the gateway unready: without NATS it polls alone.
func (g *Gateway) readyDetail() func() string {
	if g.cluster == nil {
		return nil
	}
	return g.cluster.Status
}

// webhookHandler is the receiver as a handler, nil without one.
func (g *Gateway) webhookHandler() http.Handler {
	if g.hook == nil {
		return nil
	}
	return g.hook
}

// capCaller caps the caller metric label of passthrough callers, whose
// names anyone can invent, apart from token names, which the operator
// chose and which always get their own label.
func capCaller(name string) (string, bool) {
	if auth.IsPassthroughName(name) {
		return auth.PassthroughOther, true
	}
	return "", false
}

// callerKey identifies the caller of a call for its limits: the full
// credential hash in passthrough mode (names there are short hashes that
// may collide), the name otherwise.
func callerKey(ctx context.Context) string {
	c, _ := auth.FromContext(ctx)
	if c.CredentialHash != "" {
		return c.CredentialHash
	}
	return c.Name
}

// corsMiddleware allows the listed browser origins (comma-separated) to
// call the HTTP port; with none listed it returns h unchanged and browsers
// enforce the same-origin policy.
func corsMiddleware(origins string, h http.Handler) http.Handler {
	var list []string
	for o := range strings.SplitSeq(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			list = append(list, o)
		}
	}
	if len(list) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: list,
		AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodDelete},
		AllowedHeaders: []string{"*"},
		ExposedHeaders: []string{"X-Request-Id", "Retry-After"},
		MaxAge:         600,
	}).Handler(h)
}

// hubOptions completes the shared pollers' options of c: their poll
// context, their logger and, with an upstream rate, their limiter.
func hubOptions(c config.WatchConfig, log *slog.Logger) watch.Options {
	o := c.Options
	o.PollContext = pollContext
	o.Logger = log.With(slog.String("component", "watch"))
	if c.UpstreamRPS > 0 {
		burst := max(1, int(c.UpstreamRPS))
		o.Limiter = rate.NewLimiter(rate.Limit(c.UpstreamRPS), burst)
	}
	return o
}

// pollContext is the context a shared poller polls under: a fresh one
// with only the upstream credential of the watch that started it (in
// passthrough mode the caller's own, put there by auth; otherwise none, so
// the gateway's key), none of that call's metadata, span or log fields.
func pollContext(ctx context.Context, _ watch.Key) context.Context {
	return upstream.WithAPIKeyFrom(context.Background(), ctx)
}

// close releases what New started, for a New that failed.
func (g *Gateway) close() {
	if g.server == nil && g.hookLis != nil {
		_ = g.hookLis.Close()
	}
	g.closeReceiver()
	if g.hub != nil {
		g.hub.Close()
	}
	g.closeCluster()
	g.shutdownTelemetry()
	g.closeDemo()
}

// shutdownTelemetry flushes traces, if any, within a few seconds.
func (g *Gateway) shutdownTelemetry() {
	if g.tel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.tel.Shutdown(ctx); err != nil {
		g.log.Warn("flushing traces failed", slog.Any("error", err))
	}
}

// GRPCAddr returns the bound gRPC address.
func (g *Gateway) GRPCAddr() net.Addr { return g.server.GRPCAddr() }

// HTTPAddr returns the bound HTTP address.
func (g *Gateway) HTTPAddr() net.Addr { return g.server.HTTPAddr() }

// WebhookAddr returns the bound webhook receiver address, nil without one.
func (g *Gateway) WebhookAddr() net.Addr { return g.server.WebhookAddr() }

// closeReceiver stops the webhook receiver's worker.
func (g *Gateway) closeReceiver() {
	if g.hook != nil {
		g.hook.Close()
	}
}

// Serve serves until ctx is done, then shuts down gracefully (see
// Server.Serve): readiness reports NOT_SERVING at once; after the shutdown
// delay (-shutdown-delay) it ends every watch stream, lets unary calls in
// flight finish within the shutdown timeout, then closes the hub
// (cancelling what is left) and stops the demo simulator.
// While it serves, SIGHUP reloads the client tokens file.
func (g *Gateway) Serve(ctx context.Context) error {
	defer g.closeDemo()
	defer g.shutdownTelemetry()
	defer g.closeCluster()
	defer g.hub.Close()
	defer g.closeReceiver()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				g.ReloadTokens()
			case <-ctx.Done():
				return
			}
		}
	}()
	return g.server.Serve(ctx)
}

// ReloadTokens re-reads the client tokens file (key mode); on error the
// old tokens stay in force and the error is logged.
func (g *Gateway) ReloadTokens() {
	if err := g.authn.Reload(); err != nil {
		g.log.Error("reloading the client tokens file failed; the old tokens stay in force", slog.Any("error", err))
	}
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

// startDemo serves the simulator on a loopback port. With anyKey it
// accepts any bearer key (for passthrough mode), else only its own.
func startDemo(ctx context.Context, log *slog.Logger, anyKey bool, hook *demoWebhook) (*demoUpstream, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo upstream listener: %w", err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	key := "sk-demo-" + hex.EncodeToString(raw[:])
	simKey := key
	if anyKey {
		simKey = ""
	}
	opts := simulator.Options{APIKey: simKey}
	if hook != nil {
		opts.WebhookURL, opts.WebhookSecret = hook.url, hook.secret
		if hook.tls {
			// The gateway's own certificate, on loopback: the demo does
			// not know which CA signed it.
			opts.WebhookClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // demo only, to our own loopback listener
			}}
		}
		log.Info("demo mode: the simulator sends signed webhooks for its batches' ends to the gateway", slog.String("webhook_url", hook.url))
	}
	sim := simulator.New(opts)
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

func (d *demoUpstream) close() {
	_ = d.srv.Close()
	d.sim.Close()
}

// uiHandler is the status page when on, nil when off.
func uiHandler(on bool) http.Handler {
	if !on {
		return nil
	}
	return ui.Handler()
}
