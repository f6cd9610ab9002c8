// Package config reads the gateway's configuration from command-line flags,
// with environment variables as fallbacks, through a lookup function so that
// tests can inject an environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"
)

// Config is the whole configuration of the gateway. Load fills it; the zero
// value is not valid (use Defaults).
type Config struct {
	// UpstreamURL is the base URL of the upstream batch API (-upstream-url,
	// UPSTREAM_URL). Required unless Demo is set.
	UpstreamURL string
	// UpstreamAPIKey is the Bearer key for the upstream (-upstream-api-key,
	// UPSTREAM_API_KEY). Required unless Demo is set. Never logged.
	UpstreamAPIKey string
	// UpstreamTimeout bounds one upstream attempt (-upstream-timeout).
	UpstreamTimeout time.Duration
	// UpstreamMaxAttempts bounds the attempts of one upstream call,
	// retries included (-upstream-max-attempts).
	UpstreamMaxAttempts int
	// GRPCAddr is the gRPC listen address (-grpc-addr, GRPC_ADDR).
	GRPCAddr string
	// HTTPAddr is the HTTP/JSON listen address (-http-addr, HTTP_ADDR).
	HTTPAddr string
	// Demo starts the embedded upstream simulator and fronts it (-demo,
	// DEMO).
	Demo bool
	// ShutdownTimeout bounds graceful shutdown (-shutdown-timeout,
	// SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// LogLevel is the minimum log level (-log-level, LOG_LEVEL).
	LogLevel slog.Level

	// PollInterval is how often a watched batch is polled upstream
	// (-poll-interval, POLL_INTERVAL); 1s in demo mode unless set.
	PollInterval time.Duration
	// CacheTTL is how long a fetched batch answers GetBatch without a new
	// upstream call (-cache-ttl, CACHE_TTL). Zero means PollInterval; a
	// negative value disables the cache (concurrent calls are still
	// shared).
	CacheTTL time.Duration
	// WatchHeartbeat is the silence after which a watch stream gets a
	// heartbeat event (-watch-heartbeat, WATCH_HEARTBEAT).
	WatchHeartbeat time.Duration
	// WatchFailureBudget is how long a batch's poller may fail without a
	// success before its watch streams end with UNAVAILABLE
	// (-watch-failure-budget, WATCH_FAILURE_BUDGET).
	WatchFailureBudget time.Duration
	// WatchMaxAge bounds the lifetime of a watch stream (-watch-max-age,
	// WATCH_MAX_AGE).
	WatchMaxAge time.Duration
	// UpstreamRPS caps the gateway's upstream calls per second, across
	// all batches (-upstream-rps, UPSTREAM_RPS); it halves on each 429 and
	// recovers on success. Zero means unlimited.
	UpstreamRPS float64
}

// Defaults returns the configuration used where neither a flag nor an
// environment variable says otherwise.
func Defaults() Config {
	return Config{
		UpstreamTimeout:     10 * time.Second,
		UpstreamMaxAttempts: 3,
		GRPCAddr:            ":9090",
		HTTPAddr:            ":8080",
		ShutdownTimeout:     20 * time.Second,
		LogLevel:            slog.LevelInfo,
		PollInterval:        30 * time.Second,
		WatchHeartbeat:      15 * time.Second,
		WatchFailureBudget:  5 * time.Minute,
		WatchMaxAge:         time.Hour,
	}
}

// ErrNoUpstream is returned by Load when neither -demo nor an upstream URL
// and key are configured.
var ErrNoUpstream = errors.New("no upstream configured: set -upstream-url (UPSTREAM_URL) and -upstream-api-key (UPSTREAM_API_KEY), or run with -demo")

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

	e.String(&cfg.UpstreamURL, "upstream-url", "UPSTREAM_URL", "base URL of the upstream batch API, e.g. https://api.token360.ai")
	e.Secret(&cfg.UpstreamAPIKey, "upstream-api-key", "UPSTREAM_API_KEY", "Bearer key the gateway uses upstream (prefer the environment variable)")
	e.Duration(&cfg.UpstreamTimeout, "upstream-timeout", "UPSTREAM_TIMEOUT", "timeout of one upstream attempt")
	e.Int(&cfg.UpstreamMaxAttempts, "upstream-max-attempts", "UPSTREAM_MAX_ATTEMPTS", "attempts per upstream call, retries included")
	e.String(&cfg.GRPCAddr, "grpc-addr", "GRPC_ADDR", "gRPC listen address")
	e.String(&cfg.HTTPAddr, "http-addr", "HTTP_ADDR", "HTTP/JSON listen address")
	e.Bool(&cfg.Demo, "demo", "DEMO", "start the embedded upstream simulator and front it")
	e.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", "how long graceful shutdown may take")
	e.Level(&cfg.LogLevel, "log-level", "LOG_LEVEL", "minimum log level: debug, info, warn or error")
	e.Duration(&cfg.PollInterval, "poll-interval", "POLL_INTERVAL", "how often a watched batch is polled upstream (1s with -demo unless set)")
	e.Duration(&cfg.CacheTTL, "cache-ttl", "CACHE_TTL", "how long a fetched batch answers GetBatch; 0: the poll interval, negative: no cache")
	e.Duration(&cfg.WatchHeartbeat, "watch-heartbeat", "WATCH_HEARTBEAT", "silence after which a watch stream gets a heartbeat event")
	e.Duration(&cfg.WatchFailureBudget, "watch-failure-budget", "WATCH_FAILURE_BUDGET", "continuous upstream failure after which watch streams end with UNAVAILABLE")
	e.Duration(&cfg.WatchMaxAge, "watch-max-age", "WATCH_MAX_AGE", "maximum lifetime of a watch stream")
	e.Float(&cfg.UpstreamRPS, "upstream-rps", "UPSTREAM_RPS", "upstream calls per second across all batches, slowed on 429; 0: unlimited")

	if e.err != nil {
		return Config{}, e.err
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if cfg.Demo && !e.isSet(fs, "poll-interval") {
		cfg.PollInterval = time.Second
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c Config) validate() error {
	if !c.Demo && (c.UpstreamURL == "" || c.UpstreamAPIKey == "") {
		return ErrNoUpstream
	}
	if c.UpstreamTimeout <= 0 {
		return errors.New("-upstream-timeout must be positive")
	}
	if c.UpstreamMaxAttempts < 1 || c.UpstreamMaxAttempts > 10 {
		return errors.New("-upstream-max-attempts must be between 1 and 10")
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("-shutdown-timeout must be positive")
	}
	if c.PollInterval < 100*time.Millisecond {
		return errors.New("-poll-interval must be at least 100ms")
	}
	if c.WatchHeartbeat <= 0 || c.WatchFailureBudget <= 0 || c.WatchMaxAge <= 0 {
		return errors.New("-watch-heartbeat, -watch-failure-budget and -watch-max-age must be positive")
	}
	if c.UpstreamRPS < 0 {
		return errors.New("-upstream-rps must not be negative")
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
