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

	if e.err != nil {
		return Config{}, e.err
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
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
	return nil
}

// envFlags registers flags whose defaults come from the environment. The
// first bad environment value is kept in err.
type envFlags struct {
	fs     *flag.FlagSet
	lookup func(string) (string, bool)
	err    error
}

func (e *envFlags) env(name string) (string, bool) {
	if e.lookup == nil {
		return "", false
	}
	return e.lookup(name)
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
	e.fs.StringVar(p, name, *p, usage+" ($"+env+")")
}

func (e *envFlags) Bool(p *bool, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.fail(env, err)
		}
		*p = b
	}
	e.fs.BoolVar(p, name, *p, usage+" ($"+env+")")
}

func (e *envFlags) Int(p *int, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.fail(env, err)
		}
		*p = n
	}
	e.fs.IntVar(p, name, *p, usage+" ($"+env+")")
}

func (e *envFlags) Duration(p *time.Duration, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.fail(env, err)
		}
		*p = d
	}
	e.fs.DurationVar(p, name, *p, usage+" ($"+env+")")
}

func (e *envFlags) Level(p *slog.Level, name, env, usage string) {
	if v, ok := e.env(env); ok && v != "" {
		if err := p.UnmarshalText([]byte(v)); err != nil {
			e.fail(env, err)
		}
	}
	e.fs.TextVar(p, name, *p, usage+" ($"+env+")")
}

// Secret registers a string flag whose value is never printed, not even as
// the default in -h output.
func (e *envFlags) Secret(p *string, name, env, usage string) {
	if v, ok := e.env(env); ok {
		*p = v
	}
	e.fs.Var(secretValue{p}, name, usage+" ($"+env+")")
}

// secretValue is a flag.Value that hides its value.
type secretValue struct{ p *string }

func (s secretValue) String() string { return "" }

func (s secretValue) Set(v string) error {
	*s.p = v
	return nil
}
