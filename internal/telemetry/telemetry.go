package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
)

// Options configures New. The zero value is usable: metrics on, tracing
// decided by the process environment.
type Options struct {
	// ServiceName is the OpenTelemetry service.name of exported spans,
	// normally "batchgate". OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES in
	// the process environment override it. Default "batchgate".
	ServiceName string
	// Logger receives a line saying whether tracing is on, and errors met
	// while serving /metrics. Default: discards everything.
	Logger *slog.Logger
	// Getenv reads the environment variables that turn tracing on. Tracing
	// is on when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT is set (the first wins), unless
	// OTEL_SDK_DISABLED is "true" or OTEL_TRACES_EXPORTER is "none"; spans
	// are then exported over OTLP/gRPC to that endpoint. When tracing is off
	// nothing is traced, extracted or propagated, and no exporter exists.
	// Other OTLP settings (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
	// _CERTIFICATE, OTEL_TRACES_SAMPLER...) are read by the OpenTelemetry
	// SDK from the process environment. Default os.Getenv.
	Getenv func(string) string
	// CapCaller sorts caller names for the cap on caller label values. It
	// returns capped false for the name of a known caller (one the
	// operator configured, such as a token's name from a tokens file),
	// which always gets a label of its own. For a name anyone can invent
	// (such as a passthrough credential's hash) it returns capped true and
	// the overflow label of the name's group: the first 100 distinct names
	// of a group get labels of their own, later ones the overflow label,
	// so that invented names never crowd out known ones nor another
	// group's. Default: every name is capped, in one group whose overflow
	// label is "other".
	CapCaller func(name string) (overflow string, capped bool)

	// maxCallers caps the distinct caller label values of one group; 0
	// means defaultMaxCallers. For tests.
	maxCallers int
	// spanExporter, when set, turns tracing on whatever the environment
	// says and receives every span synchronously. For tests.
	spanExporter sdktrace.SpanExporter
}

// Telemetry holds batchgate's Prometheus metrics and, when tracing is on,
// its OpenTelemetry tracer provider. Create it with New; its methods are
// safe for concurrent use. Call Shutdown when the servers have stopped.
type Telemetry struct {
	// Registry holds every metric of this Telemetry, with the Go runtime and
	// process collectors. MetricsHandler serves it; other metrics may be
	// registered on it.
	Registry *prometheus.Registry

	log     *slog.Logger
	callers *callerSet

	// tp is nil when tracing is off.
	tp         *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator

	metricsHandler http.Handler
	grpc           *grpcprom.ServerMetrics
	byCaller       *prometheus.CounterVec
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	upRequests     *prometheus.CounterVec
	upDuration     *prometheus.HistogramVec
	hub            *hubCollector
	upstream       *upstreamCollector
}

// defaultServiceName is the service.name used when Options.ServiceName is
// empty.
const defaultServiceName = "batchgate"

// New registers batchgate's metrics on a new registry and, when the
// environment asks for it (see Options.Getenv), creates a tracer provider
// exporting over OTLP/gRPC. It fails when the OTLP endpoint is not an
// absolute http(s) URL or asks for a protocol other than gRPC. ctx bounds
// the set-up only; the exporter connects lazily.
func New(ctx context.Context, opts Options) (*Telemetry, error) {
	if opts.ServiceName == "" {
		opts.ServiceName = defaultServiceName
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.maxCallers <= 0 {
		opts.maxCallers = defaultMaxCallers
	}
	t := &Telemetry{
		Registry:   prometheus.NewRegistry(),
		log:        opts.Logger,
		callers:    newCallerSet(opts.maxCallers, opts.CapCaller),
		propagator: propagation.TraceContext{},
	}
	if err := t.registerMetrics(); err != nil {
		return nil, err
	}
	if err := t.startTracing(ctx, opts); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Telemetry) registerMetrics() error {
	t.grpc = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	t.byCaller = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "batchgate_requests_by_caller_total",
		Help: "Requests (gRPC calls and HTTP requests) completed, by caller name, transport (grpc or http) and code (gRPC code name or HTTP status).",
	}, []string{"caller", "transport", "code"})
	t.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "batchgate_http_requests_total",
		Help: "HTTP requests completed, by method, route pattern and status code.",
	}, []string{"method", "route", "code"})
	t.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "batchgate_http_request_duration_seconds",
		Help:    "Time to serve an HTTP request until its handler returned (whole stream for watches), by method and route pattern.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route"})
	t.upRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "batchgate_upstream_requests_total",
		Help: "HTTP requests (attempts, retries included) sent upstream, by status code, or \"error\" when no response came back.",
	}, []string{"code"})
	t.upDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "batchgate_upstream_request_duration_seconds",
		Help:    "Duration of one upstream attempt until its response body was read or closed, by status code or \"error\".",
		Buckets: prometheus.DefBuckets,
	}, []string{"code"})
	t.hub = newHubCollector()
	t.upstream = newUpstreamCollector()

	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		t.grpc, t.byCaller, t.httpRequests, t.httpDuration, t.upRequests, t.upDuration, t.hub, t.upstream,
	} {
		if err := t.Registry.Register(c); err != nil {
			return fmt.Errorf("telemetry: registering metrics: %w", err)
		}
	}
	t.metricsHandler = promhttp.InstrumentMetricHandler(t.Registry, promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(t.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      t.Registry,
	}))
	return nil
}

// tracingConfig is what the environment says about tracing.
type tracingConfig struct {
	on       bool
	endpoint string // OTLP endpoint URL, when on
	reason   string // why tracing is off, for the log
}

// tracingFromEnv reads the environment variables that turn tracing on.
func tracingFromEnv(getenv func(string) string) (tracingConfig, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return tracingConfig{reason: "OTEL_SDK_DISABLED is true"}, nil
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none") {
		return tracingConfig{reason: "OTEL_TRACES_EXPORTER is none"}, nil
	}
	name, endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	if endpoint == "" {
		name, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	}
	if endpoint == "" {
		return tracingConfig{reason: "OTEL_EXPORTER_OTLP_ENDPOINT is not set"}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The value is not logged or echoed: it could carry credentials.
		return tracingConfig{}, fmt.Errorf("telemetry: %s must be an absolute http or https URL such as http://otel-collector:4317", name)
	}
	for _, p := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(getenv(p)); v != "" {
			if v != "grpc" {
				return tracingConfig{}, fmt.Errorf("telemetry: %s is %q; only grpc is supported", p, v)
			}
			break // the signal-specific variable wins
		}
	}
	return tracingConfig{on: true, endpoint: endpoint}, nil
}

func (t *Telemetry) startTracing(ctx context.Context, opts Options) error {
	var exporter sdktrace.TracerProviderOption
	if opts.spanExporter != nil {
		exporter = sdktrace.WithSyncer(opts.spanExporter)
	} else {
		cfg, err := tracingFromEnv(opts.Getenv)
		if err != nil {
			return err
		}
		if !cfg.on {
			t.log.Info("tracing off", slog.String("reason", cfg.reason))
			return nil
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.endpoint))
		if err != nil {
			return fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		exporter = sdktrace.WithBatcher(exp)
		u, _ := url.Parse(cfg.endpoint) // checked by tracingFromEnv
		t.log.Info("tracing on: exporting spans over OTLP/gRPC", slog.String("endpoint", u.Scheme+"://"+u.Host))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", opts.ServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && res == nil {
		return fmt.Errorf("telemetry: resource: %w", err)
	}
	if err != nil {
		// A partial resource (an unparsable OTEL_RESOURCE_ATTRIBUTES) is
		// still usable.
		t.log.Warn("tracing: resource attributes partly ignored", slog.Any("error", err))
	}
	t.tp = sdktrace.NewTracerProvider(exporter, sdktrace.WithResource(res))
	return nil
}

// Shutdown flushes the spans not yet exported and stops the tracer
// provider, within ctx. Call it once the servers have stopped; spans ended
// afterwards are dropped. It does nothing when tracing is off.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shutting down tracing: %w", err)
	}
	return nil
}

// MetricsHandler serves t.Registry in the Prometheus text format, for
// GET /metrics. It also counts its own
// scrapes (promhttp_metric_handler_requests_total). A collector failing
// does not fail the scrape: its error is logged and the rest is served.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metricsHandler }

// noopMeters keeps the OpenTelemetry instrumentations from recording
// metrics of their own: Prometheus has them.
var noopMeters = metricnoop.NewMeterProvider()
