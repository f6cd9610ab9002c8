// Package config reads the gateway's configuration (and cmd/simulator's,
// LoadSimulator) from command-line flags, with environment variables as
// fallbacks, through a lookup function so that tests can inject an
// environment.
//
// Config nests one struct per concern. Where a package has its own
// configuration struct (upstream.Config, auth.Options, watch.Options,
// service.Options, limit.Options), Config holds that type and Load fills
// the fields that have flags; the gateway fills in the run-time ones
// (loggers, HTTP clients, callbacks) and passes the struct on.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/batchgate/batchgate/internal/auth"
	"github.com/batchgate/batchgate/internal/limit"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/webhook"
)

// Config is the whole configuration of the gateway. Load fills it; the zero
// value is not valid (use Defaults).
type Config struct {
	// Demo starts the embedded upstream simulator and fronts it (-demo,
	// DEMO).
	Demo bool
	// Upstream is the upstream client's configuration. Load sets:
	//   - BaseURL, the base URL of the upstream batch API (-upstream-url,
	//     UPSTREAM_URL). Required unless Demo is set.
	//   - APIKey, the Bearer key for the upstream (-upstream-api-key,
	//     UPSTREAM_API_KEY). Required unless Demo is set or the credential
	//     mode is "passthrough". Never logged.
	//   - AttemptTimeout, which bounds one upstream attempt
	//     (-upstream-timeout, UPSTREAM_TIMEOUT).
	//   - MaxAttempts, which bounds the attempts of one upstream call,
	//     retries included (-upstream-max-attempts, UPSTREAM_MAX_ATTEMPTS).
	Upstream upstream.Config
	// Auth is the authenticator's configuration. Load sets:
	//   - Mode, the credential mode (-auth, AUTH_MODE): "key" (callers
	//     present a gateway token; the gateway calls upstream with its own
	//     key), "passthrough" (the caller's bearer credential is forwarded
	//     upstream) or "none" (no caller check). Defaults: "key" when an
	//     upstream key is set, "none" for -demo on loopback addresses.
	//   - TokensFile, the gateway tokens of key mode, one "name token" pair
	//     per line (-client-tokens-file, CLIENT_TOKENS_FILE). Reloaded on
	//     SIGHUP. Ignored outside key mode.
	Auth auth.Options
	// Watch configures the shared pollers.
	Watch WatchConfig
	// Service is the BatchService's configuration. Load sets:
	//   - Heartbeat, the silence after which a watch stream gets a
	//     heartbeat event (-watch-heartbeat, WATCH_HEARTBEAT).
	//   - MaxAge, which bounds the lifetime of a watch stream
	//     (-watch-max-age, WATCH_MAX_AGE).
	Service service.Options
	// Limits are the per-call limits. Load sets:
	//   - MaxWatchers, which caps open watch streams in total
	//     (-max-watchers, MAX_WATCHERS); 0: unlimited.
	//   - MaxWatchersPerCaller, which caps open watch streams per caller
	//     (-max-watchers-per-caller, MAX_WATCHERS_PER_CALLER); 0: unlimited.
	//   - CallerRPS, which caps each caller's calls per second, watch
	//     streams opened included (-caller-rps, CALLER_RPS); 0: unlimited.
	//     The burst is twice the rate.
	Limits limit.Options
	// Server configures the gRPC and HTTP servers.
	Server ServerConfig
	// Log configures the gateway's logs.
	Log LogConfig
	// Files configures the file uploads and downloads.
	Files FilesConfig
	// Webhook configures the upstream webhook receiver.
	Webhook WebhookConfig
	// Cluster configures the replicas' shared leases and states (off
	// without a NATS URL).
	Cluster ClusterConfig
}

// ClusterConfig configures the cluster of replicas that share one poller
// per batch and credential through NATS JetStream. Without NATSURL each
// replica polls on its own.
type ClusterConfig struct {
	// NATSURL is the NATS server URL, or several comma-separated
	// (-cluster-nats-url, CLUSTER_NATS_URL); tls:// for TLS. Empty: off.
	NATSURL string
	// NATSCreds is a NATS credentials file (-cluster-nats-creds,
	// CLUSTER_NATS_CREDS); empty: none.
	NATSCreds string
	// NATSCA is a PEM CA bundle that verifies the NATS server
	// (-cluster-nats-ca, CLUSTER_NATS_CA); empty: the system's roots.
	// Setting it, or NATSCert, turns TLS on even for a nats:// URL.
	NATSCA string
	// NATSCert and NATSKey are a PEM client certificate and its key for
	// mutual TLS to NATS (-cluster-nats-cert, CLUSTER_NATS_CERT,
	// -cluster-nats-key, CLUSTER_NATS_KEY); both or neither.
	//
	// Like NATSCreds and Bucket, the three are unused, and unchecked,
	// without NATSURL. Load does not read the files: the gateway does, at
	// start, and fails for one that is missing or not PEM.
	NATSCert, NATSKey string
	// Bucket names the JetStream key-value bucket of leases and states and
	// prefixes the poke subjects (-cluster-bucket, CLUSTER_BUCKET).
	Bucket string
}

// WebhookConfig configures the receiver of the upstream's webhooks, on a
// listener of its own.
type WebhookConfig struct {
	// Addr is the webhook listen address (-webhook-addr, WEBHOOK_ADDR);
	// empty: no receiver (with -demo: one on a loopback ephemeral port).
	Addr string
	// Secret is one or more comma-separated "whsec_" signing secrets
	// (-webhook-secret, WEBHOOK_SECRET), any of which may have signed a
	// delivery (rotation). Required with Addr. Never logged.
	Secret string
}

// WatchConfig configures the shared pollers: watch.Options, of which Load
// sets the fields below, and the upstream rate the gateway makes its
// Limiter from.
type WatchConfig struct {
	// Options are the hub's options. Load sets:
	//   - PollInterval, how often a watched batch is polled upstream
	//     (-poll-interval, POLL_INTERVAL); 1s in demo mode unless set.
	//   - FreshFor, how long a fetched batch answers GetBatch without a new
	//     upstream call (-cache-ttl, CACHE_TTL). Zero means PollInterval; a
	//     negative value disables the cache (concurrent calls are still
	//     shared).
	//   - FailureBudget, how long a batch's poller may fail without a
	//     success before its watch streams end with UNAVAILABLE
	//     (-watch-failure-budget, WATCH_FAILURE_BUDGET).
	watch.Options
	// UpstreamRPS caps the gateway's upstream calls per second, across
	// all batches (-upstream-rps, UPSTREAM_RPS); it halves on each 429 and
	// recovers on success. Zero means unlimited.
	UpstreamRPS float64
}

// ServerConfig configures the gRPC and HTTP servers.
type ServerConfig struct {
	// GRPCAddr is the gRPC listen address (-grpc-addr, GRPC_ADDR).
	GRPCAddr string
	// HTTPAddr is the HTTP/JSON listen address (-http-addr, HTTP_ADDR).
	HTTPAddr string
	// ShutdownTimeout bounds graceful shutdown (-shutdown-timeout,
	// SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long, once shutdown starts (SIGTERM), the
	// gateway goes on serving with readiness already NOT_SERVING before it
	// closes its listeners, so that load balancers stop sending new calls
	// first (-shutdown-delay, SHUTDOWN_DELAY); 0: no delay.
	ShutdownDelay time.Duration
	// TLSCert and TLSKey turn on TLS on both ports (-tls-cert, TLS_CERT,
	// -tls-key, TLS_KEY).
	TLSCert, TLSKey string
	// TLSClientCA, when set, requires client certificates signed by it
	// (mTLS) on both ports (-tls-client-ca, TLS_CLIENT_CA).
	TLSClientCA string
	// MaxStreamsPerConn caps concurrent gRPC streams per client connection
	// (-grpc-max-streams-per-conn, GRPC_MAX_STREAMS_PER_CONN).
	MaxStreamsPerConn int
	// CORSOrigins lists the browser origins allowed to call the HTTP port
	// (-cors-origins, CORS_ORIGINS, comma-separated); empty: CORS off.
	CORSOrigins string
	// UI serves the status page at /ui/ on the HTTP port (-ui, UI).
	UI bool
	// UpstreamUnhealthyAfter is how long the upstream may fail without a
	// success before /readyz and gRPC health report NOT_SERVING
	// (-upstream-unhealthy-after, UPSTREAM_UNHEALTHY_AFTER); 0: never.
	UpstreamUnhealthyAfter time.Duration
}

// LogConfig configures the gateway's logs.
type LogConfig struct {
	// Level is the minimum log level (-log-level, LOG_LEVEL).
	Level slog.Level
	// Format is "text" or "json" (-log-format, LOG_FORMAT).
	Format string
}

// Logger returns a logger writing to w at c's level, as JSON when Format
// is "json" and as text otherwise.
func (c LogConfig) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// FilesConfig configures the file uploads and downloads.
type FilesConfig struct {
	// MaxUploadBytes caps the size of one uploaded file
	// (-max-upload-bytes, MAX_UPLOAD_BYTES); the default is the upstream's
	// own limit.
	MaxUploadBytes int64
}

// Defaults returns the configuration used where neither a flag nor an
// environment variable says otherwise.
func Defaults() Config {
	return Config{
		Upstream: upstream.Config{
			AttemptTimeout: 10 * time.Second,
			MaxAttempts:    3,
		},
		Watch: WatchConfig{Options: watch.Options{
			PollInterval:  30 * time.Second,
			FailureBudget: 5 * time.Minute,
		}},
		Service: service.Options{
			Heartbeat: 15 * time.Second,
			MaxAge:    time.Hour,
		},
		Limits: limit.Options{
			MaxWatchers:          100_000,
			MaxWatchersPerCaller: 25_000,
		},
		Server: ServerConfig{
			GRPCAddr:               ":9090",
			HTTPAddr:               ":8080",
			ShutdownTimeout:        20 * time.Second,
			MaxStreamsPerConn:      1000,
			UpstreamUnhealthyAfter: time.Minute,
			UI:                     true,
		},
		Log: LogConfig{
			Level:  slog.LevelInfo,
			Format: "text",
		},
		Files: FilesConfig{
			MaxUploadBytes: 200_000_000,
		},
		Cluster: ClusterConfig{Bucket: "batchgate"},
	}
}

// Errors of Load for an upstream that is not, or only partly, configured
// (without -demo). Each says what to set.
var (
	// ErrNoUpstream: neither an upstream URL nor an upstream key is set.
	ErrNoUpstream = errors.New("no upstream configured: set -upstream-url (UPSTREAM_URL) and -upstream-api-key (UPSTREAM_API_KEY) (or -auth=passthrough to forward callers' keys), or run with -demo")
	// ErrNoUpstreamKey: an upstream URL without the key the gateway calls
	// it with, outside passthrough mode.
	ErrNoUpstreamKey = errors.New("-upstream-api-key (UPSTREAM_API_KEY) is required with -upstream-url unless -auth=passthrough")
	// ErrNoUpstreamURL: an upstream key, or passthrough mode, without the
	// upstream's URL. The error Load returns wraps it and says which.
	ErrNoUpstreamURL = errors.New("-upstream-url (UPSTREAM_URL) is required")
)

// Load parses args (without the program name) over Defaults, taking each
// flag's default from the environment variable named in its help when lookup
// finds it. Flags win over the environment. Output for -h and parse errors
// goes to out. It returns flag.ErrHelp for -h, a parse error for a bad flag
// or environment value, and ErrNoUpstream when there is nothing to front.
func Load(args []string, lookup func(string) (string, bool), out io.Writer) (Config, error) {
	cfg := Defaults()
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(out)
	e := envFlags{fs: fs, lookup: lookup}

	e.String(&cfg.Upstream.BaseURL, "upstream-url", "UPSTREAM_URL", "base URL of the upstream batch API, e.g. https://api.token360.ai")
	e.Secret(&cfg.Upstream.APIKey, "upstream-api-key", "UPSTREAM_API_KEY", "Bearer key the gateway uses upstream (prefer the environment variable)")
	e.Duration(&cfg.Upstream.AttemptTimeout, "upstream-timeout", "UPSTREAM_TIMEOUT", "timeout of one upstream attempt")
	e.Int(&cfg.Upstream.MaxAttempts, "upstream-max-attempts", "UPSTREAM_MAX_ATTEMPTS", "attempts per upstream call, retries included")
	e.String(&cfg.Server.GRPCAddr, "grpc-addr", "GRPC_ADDR", "gRPC listen address")
	e.String(&cfg.Server.HTTPAddr, "http-addr", "HTTP_ADDR", "HTTP/JSON listen address")
	e.Bool(&cfg.Demo, "demo", "DEMO", "start the embedded upstream simulator and front it")
	e.Duration(&cfg.Server.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", "how long graceful shutdown may take")
	e.Duration(&cfg.Server.ShutdownDelay, "shutdown-delay", "SHUTDOWN_DELAY", "after SIGTERM, how long to keep serving with readiness NOT_SERVING before closing the listeners")
	e.Level(&cfg.Log.Level, "log-level", "LOG_LEVEL", "minimum log level: debug, info, warn or error")
	e.Duration(&cfg.Watch.PollInterval, "poll-interval", "POLL_INTERVAL", "how often a watched batch is polled upstream (1s with -demo unless set)")
	e.Duration(&cfg.Watch.FreshFor, "cache-ttl", "CACHE_TTL", "how long a fetched batch answers GetBatch; 0: the poll interval, negative: no cache")
	e.Duration(&cfg.Service.Heartbeat, "watch-heartbeat", "WATCH_HEARTBEAT", "silence after which a watch stream gets a heartbeat event")
	e.Duration(&cfg.Watch.FailureBudget, "watch-failure-budget", "WATCH_FAILURE_BUDGET", "continuous upstream failure after which watch streams end with UNAVAILABLE")
	e.Duration(&cfg.Service.MaxAge, "watch-max-age", "WATCH_MAX_AGE", "maximum lifetime of a watch stream")
	e.Float(&cfg.Watch.UpstreamRPS, "upstream-rps", "UPSTREAM_RPS", "upstream calls per second across all batches, slowed on 429; 0: unlimited")
	e.String((*string)(&cfg.Auth.Mode), "auth", "AUTH_MODE", "credential mode: key, passthrough or none (default: key with an upstream key, none for -demo on loopback)")
	e.String(&cfg.Auth.TokensFile, "client-tokens-file", "CLIENT_TOKENS_FILE", `gateway tokens for -auth=key, one "name token" per line; reloaded on SIGHUP`)
	e.String(&cfg.Server.TLSCert, "tls-cert", "TLS_CERT", "TLS certificate (PEM) for both ports; plaintext without it")
	e.String(&cfg.Server.TLSKey, "tls-key", "TLS_KEY", "TLS private key (PEM) for -tls-cert")
	e.String(&cfg.Server.TLSClientCA, "tls-client-ca", "TLS_CLIENT_CA", "CA bundle (PEM): require client certificates it signed (mTLS)")
	e.Int(&cfg.Limits.MaxWatchers, "max-watchers", "MAX_WATCHERS", "open watch streams in total; 0: unlimited")
	e.Int(&cfg.Limits.MaxWatchersPerCaller, "max-watchers-per-caller", "MAX_WATCHERS_PER_CALLER", "open watch streams per caller; 0: unlimited")
	e.Float(&cfg.Limits.CallerRPS, "caller-rps", "CALLER_RPS", "calls per second per caller (burst: twice that); 0: unlimited")
	e.Int(&cfg.Server.MaxStreamsPerConn, "grpc-max-streams-per-conn", "GRPC_MAX_STREAMS_PER_CONN", "concurrent gRPC streams per client connection")
	e.String(&cfg.Server.CORSOrigins, "cors-origins", "CORS_ORIGINS", "comma-separated browser origins allowed on the HTTP port; empty: CORS off")
	e.Bool(&cfg.Server.UI, "ui", "UI", "serve the status page at /ui/ on the HTTP port")
	e.String(&cfg.Log.Format, "log-format", "LOG_FORMAT", "log format: text or json")
	e.Duration(&cfg.Server.UpstreamUnhealthyAfter, "upstream-unhealthy-after", "UPSTREAM_UNHEALTHY_AFTER", "upstream failure without a success after which readiness is NOT_SERVING; 0: never")
	e.Int64(&cfg.Files.MaxUploadBytes, "max-upload-bytes", "MAX_UPLOAD_BYTES", "largest file upload accepted, in bytes (the upstream's own limit)")
	e.String(&cfg.Webhook.Addr, "webhook-addr", "WEBHOOK_ADDR", "listen address of the upstream webhook receiver (POST /v1/webhooks); empty: off")
	e.Secret(&cfg.Webhook.Secret, "webhook-secret", "WEBHOOK_SECRET", "comma-separated whsec_ secrets that sign the upstream's webhooks (rotation); required with -webhook-addr")

	e.String(&cfg.Cluster.NATSURL, "cluster-nats-url", "CLUSTER_NATS_URL", "NATS URL(s), comma-separated, shared by the replicas for one poll per batch cluster-wide; empty: each replica polls on its own")
	e.String(&cfg.Cluster.NATSCreds, "cluster-nats-creds", "CLUSTER_NATS_CREDS", "NATS credentials file for -cluster-nats-url")
	e.String(&cfg.Cluster.NATSCA, "cluster-nats-ca", "CLUSTER_NATS_CA", "CA bundle (PEM) that verifies the NATS server; turns TLS on; default: the system's roots for tls:// URLs")
	e.String(&cfg.Cluster.NATSCert, "cluster-nats-cert", "CLUSTER_NATS_CERT", "client certificate (PEM) for mutual TLS to NATS; turns TLS on")
	e.String(&cfg.Cluster.NATSKey, "cluster-nats-key", "CLUSTER_NATS_KEY", "private key (PEM) for -cluster-nats-cert")
	e.String(&cfg.Cluster.Bucket, "cluster-bucket", "CLUSTER_BUCKET", "JetStream key-value bucket of the replicas' leases and states")

	if e.err != nil {
		return Config{}, e.err
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if cfg.Demo {
		if !e.isSet(fs, "poll-interval") {
			cfg.Watch.PollInterval = time.Second
		}
		// The demo listens on loopback unless told otherwise, where it may
		// run without caller checks.
		if !e.isSet(fs, "grpc-addr") {
			cfg.Server.GRPCAddr = "127.0.0.1:9090"
		}
		if !e.isSet(fs, "http-addr") {
			cfg.Server.HTTPAddr = "127.0.0.1:8080"
		}
	}
	if cfg.Auth.Mode == "" {
		cfg.Auth.Mode = cfg.defaultAuth()
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// defaultAuth picks the credential mode when -auth is not given.
func (c Config) defaultAuth() auth.Mode {
	switch {
	case c.Demo && IsLoopback(c.Server.GRPCAddr) && IsLoopback(c.Server.HTTPAddr) && c.Auth.TokensFile == "":
		return auth.ModeNone
	default:
		// Without an upstream key this fails validation with
		// ErrNoUpstream or ErrNoUpstreamKey: passthrough must be asked
		// for.
		return auth.ModeKey
	}
}

// IsLoopback reports whether a listen address binds only a loopback
// interface ("127.0.0.1:80", "[::1]:80", "localhost:80"; not ":80").
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateUpstream checks that, without -demo, there is an upstream URL
// and, unless callers' keys are passed through, a key, and says what is
// missing.
func (c Config) validateUpstream() error {
	if c.Demo {
		return nil
	}
	passthrough := c.Auth.Mode == auth.ModePassthrough
	switch {
	case c.Upstream.BaseURL == "" && c.Upstream.APIKey != "":
		return fmt.Errorf("%w with -upstream-api-key, or run with -demo", ErrNoUpstreamURL)
	case c.Upstream.BaseURL == "" && passthrough:
		return fmt.Errorf("%w with -auth=passthrough, or run with -demo", ErrNoUpstreamURL)
	case c.Upstream.BaseURL == "":
		return ErrNoUpstream
	case c.Upstream.APIKey == "" && !passthrough:
		return ErrNoUpstreamKey
	}
	return nil
}

func (c Config) validate() error {
	if err := c.validateUpstream(); err != nil {
		return err
	}
	switch c.Auth.Mode {
	case auth.ModeKey:
		if c.Auth.TokensFile == "" {
			return errors.New("-auth=key needs -client-tokens-file (CLIENT_TOKENS_FILE) with the callers' tokens; use -auth=none to let anyone in")
		}
	case auth.ModePassthrough, auth.ModeNone:
	default:
		return fmt.Errorf("-auth must be key, passthrough or none, not %q", c.Auth.Mode)
	}
	if (c.Server.TLSCert == "") != (c.Server.TLSKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if c.Server.TLSClientCA != "" && c.Server.TLSCert == "" {
		return errors.New("-tls-client-ca needs -tls-cert and -tls-key")
	}
	if c.Limits.MaxWatchers < 0 || c.Limits.MaxWatchersPerCaller < 0 || c.Limits.CallerRPS < 0 || c.Server.MaxStreamsPerConn < 1 {
		return errors.New("-max-watchers, -max-watchers-per-caller and -caller-rps must not be negative, -grpc-max-streams-per-conn must be positive")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("-log-format must be text or json, not %q", c.Log.Format)
	}
	if c.Upstream.AttemptTimeout <= 0 {
		return errors.New("-upstream-timeout must be positive")
	}
	if c.Upstream.MaxAttempts < 1 || c.Upstream.MaxAttempts > 10 {
		return errors.New("-upstream-max-attempts must be between 1 and 10")
	}
	if c.Server.ShutdownTimeout <= 0 {
		return errors.New("-shutdown-timeout must be positive")
	}
	if c.Server.ShutdownDelay < 0 {
		return errors.New("-shutdown-delay must not be negative")
	}
	if c.Watch.PollInterval < 100*time.Millisecond {
		return errors.New("-poll-interval must be at least 100ms")
	}
	if c.Service.Heartbeat <= 0 || c.Watch.FailureBudget <= 0 || c.Service.MaxAge <= 0 {
		return errors.New("-watch-heartbeat, -watch-failure-budget and -watch-max-age must be positive")
	}
	if c.Watch.UpstreamRPS < 0 {
		return errors.New("-upstream-rps must not be negative")
	}
	if c.Files.MaxUploadBytes <= 0 {
		return errors.New("-max-upload-bytes must be positive")
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	return c.validateWebhook()
}

// validateCluster checks, when the cluster is on, the bucket name, which
// NATS restricts, and that a client certificate comes with its key.
func (c Config) validateCluster() error {
	if c.Cluster.NATSURL == "" {
		return nil
	}
	if (c.Cluster.NATSCert == "") != (c.Cluster.NATSKey == "") {
		return errors.New("-cluster-nats-cert (CLUSTER_NATS_CERT) and -cluster-nats-key (CLUSTER_NATS_KEY) go together")
	}
	b := c.Cluster.Bucket
	ok := b != ""
	for _, r := range b {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}
	if !ok {
		return fmt.Errorf("-cluster-bucket must be letters, digits, _ and -, not %q", b)
	}
	return nil
}

// validateWebhook checks that a webhook listener has well-formed secrets.
// Its errors never repeat a secret.
func (c Config) validateWebhook() error {
	if c.Webhook.Addr != "" && strings.TrimSpace(c.Webhook.Secret) == "" {
		return errors.New("-webhook-secret (WEBHOOK_SECRET) is required with -webhook-addr")
	}
	if strings.TrimSpace(c.Webhook.Secret) == "" {
		return nil
	}
	if _, err := webhook.NewVerifier(c.Webhook.Secret); err != nil {
		return fmt.Errorf("-webhook-secret (WEBHOOK_SECRET): %w", err)
	}
	return nil
}

// envFlags registers flags whose defaults come from the environment. The
// first bad environment value is kept in err.
type envFlags struct {
	fs      *flag.FlagSet
	lookup  func(string) (string, bool)
	err     error
	fromEnv map[string]bool   // environment variables found
	envOf   map[string]string // flag name to environment variable
}

// usage records the flag's environment variable and returns its help text.
func (e *envFlags) usage(name, env, text string) string {
	if e.envOf == nil {
		e.envOf = make(map[string]string)
	}
	e.envOf[name] = env
	return text + " ($" + env + ")"
}

func (e *envFlags) env(name string) (string, bool) {
	if e.lookup == nil {
		return "", false
	}
	v, ok := e.lookup(name)
	if ok {
		if e.fromEnv == nil {
			e.fromEnv = make(map[string]bool)
		}
		e.fromEnv[name] = true
	}
	return v, ok
}

// isSet reports whether the flag was given on the command line or through
// its environment variable.
func (e *envFlags) isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set || e.fromEnv[e.envOf[name]]
}

func (e *envFlags) Float(p *float64, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			e.fail(env, err)
		}
		*p = f
	}
	e.fs.Float64Var(p, name, *p, e.usage(name, env, usage))
}

func (e *envFlags) fail(env string, err error) {
	if e.err == nil {
		e.err = fmt.Errorf("environment variable %s: %w", env, err)
	}
}

func (e *envFlags) String(p *string, name, env, usage string) {
	if v, ok := e.env(env); ok {
		*p = v
	}
	e.fs.StringVar(p, name, *p, e.usage(name, env, usage))
}

func (e *envFlags) Bool(p *bool, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.fail(env, err)
		}
		*p = b
	}
	e.fs.BoolVar(p, name, *p, e.usage(name, env, usage))
}

func (e *envFlags) Int(p *int, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.fail(env, err)
		}
		*p = n
	}
	e.fs.IntVar(p, name, *p, e.usage(name, env, usage))
}

func (e *envFlags) Int64(p *int64, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			e.fail(env, err)
		}
		*p = n
	}
	e.fs.Int64Var(p, name, *p, e.usage(name, env, usage))
}

func (e *envFlags) Duration(p *time.Duration, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.fail(env, err)
		}
		*p = d
	}
	e.fs.DurationVar(p, name, *p, e.usage(name, env, usage))
}

func (e *envFlags) Level(p *slog.Level, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		if err := p.UnmarshalText([]byte(v)); err != nil {
			e.fail(env, err)
		}
	}
	e.fs.TextVar(p, name, *p, e.usage(name, env, usage))
}

// Secret registers a string flag whose value is never printed, not even as
// the default in -h output.
func (e *envFlags) Secret(p *string, name, env, usage string) {
	if v, ok := e.env(env); ok {
		*p = v
	}
	e.fs.Var(secretValue{p}, name, e.usage(name, env, usage))
}

// secretValue is a flag.Value that hides its value.
type secretValue struct{ p *string }

func (s secretValue) String() string { return "" }

func (s secretValue) Set(v string) error {
	*s.p = v
	return nil
}
