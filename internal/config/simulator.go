package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/webhook"
)

// SimulatorConfig is the configuration of cmd/simulator, the upstream
// simulator run as a process of its own. LoadSimulator fills it; the zero
// value is not valid (use SimulatorDefaults).
type SimulatorConfig struct {
	// Addr is the listen address (-addr, SIMULATOR_ADDR).
	Addr string
	// AnyKey accepts any non-empty bearer key instead of Sim.APIKey
	// (-any-key, SIMULATOR_ANY_KEY): for gateways in passthrough mode.
	AnyKey bool
	// Sim are the simulator's options. LoadSimulator sets:
	//   - APIKey, the bearer key every request must carry (-api-key,
	//     SIMULATOR_API_KEY). Required unless AnyKey. Never logged.
	//   - Phase, how long a progressing batch stays in each state (-phase,
	//     SIMULATOR_PHASE); 0: simulator.DefaultPhase.
	//   - MaxFileBytes, the largest upload (-max-file-bytes,
	//     SIMULATOR_MAX_FILE_BYTES); 0: simulator.DefaultMaxFileBytes.
	//   - MaxStoreBytes, the bytes of all stored files (-max-store-bytes,
	//     SIMULATOR_MAX_STORE_BYTES); 0: simulator.DefaultMaxStoreBytes.
	//   - WebhookURL, where it POSTs a signed webhook when a batch ends
	//     (-webhook-url, SIMULATOR_WEBHOOK_URL); empty: none.
	//   - WebhookSecret, the one "whsec_" secret it signs them with
	//     (-webhook-secret, SIMULATOR_WEBHOOK_SECRET). Required with
	//     WebhookURL. Never logged.
	Sim simulator.Options
	// ShutdownTimeout bounds graceful shutdown (-shutdown-timeout,
	// SIMULATOR_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// Log configures the logs (-log-level, SIMULATOR_LOG_LEVEL;
	// -log-format, SIMULATOR_LOG_FORMAT).
	Log LogConfig
}

// SimulatorDefaults returns the simulator's configuration where neither a
// flag nor an environment variable says otherwise.
func SimulatorDefaults() SimulatorConfig {
	return SimulatorConfig{
		Addr:            "127.0.0.1:8081",
		ShutdownTimeout: 10 * time.Second,
		Log:             LogConfig{Level: slog.LevelInfo, Format: "text"},
	}
}

// ErrNoSimulatorKey is the error of a simulator configured with neither
// -api-key nor -any-key.
var ErrNoSimulatorKey = errors.New("-api-key (SIMULATOR_API_KEY) is required, or -any-key (SIMULATOR_ANY_KEY) to accept any bearer key")

// LoadSimulator is Load for cmd/simulator: it parses args (without the
// program name) over SimulatorDefaults, with the environment variables
// named in the help as fallbacks (flags win). It returns flag.ErrHelp for
// -h, a parse error, or an error saying what is missing or malformed.
func LoadSimulator(args []string, lookup func(string) (string, bool), out io.Writer) (SimulatorConfig, error) {
	cfg := SimulatorDefaults()
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	fs.SetOutput(out)
	e := envFlags{fs: fs, lookup: lookup}

	e.String(&cfg.Addr, "addr", "SIMULATOR_ADDR", "listen address")
	e.Secret(&cfg.Sim.APIKey, "api-key", "SIMULATOR_API_KEY", "bearer key every request must carry (prefer the environment variable)")
	e.Bool(&cfg.AnyKey, "any-key", "SIMULATOR_ANY_KEY", "accept any non-empty bearer key (for gateways in -auth=passthrough)")
	e.Duration(&cfg.Sim.Phase, "phase", "SIMULATOR_PHASE", "how long a progressing batch stays in each state; 0: the simulator's default")
	e.String(&cfg.Sim.WebhookURL, "webhook-url", "SIMULATOR_WEBHOOK_URL", "where to POST a signed webhook when a batch ends, e.g. http://gateway:8082/v1/webhooks; empty: none")
	e.Secret(&cfg.Sim.WebhookSecret, "webhook-secret", "SIMULATOR_WEBHOOK_SECRET", "whsec_ secret the webhooks are signed with; required with -webhook-url")
	e.Int64(&cfg.Sim.MaxFileBytes, "max-file-bytes", "SIMULATOR_MAX_FILE_BYTES", "largest file upload accepted, in bytes; 0: the simulator's default")
	e.Int64(&cfg.Sim.MaxStoreBytes, "max-store-bytes", "SIMULATOR_MAX_STORE_BYTES", "bytes of all stored files; 0: the simulator's default")
	e.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", "SIMULATOR_SHUTDOWN_TIMEOUT", "how long graceful shutdown may take")
	e.Level(&cfg.Log.Level, "log-level", "SIMULATOR_LOG_LEVEL", "minimum log level: debug, info, warn or error")
	e.String(&cfg.Log.Format, "log-format", "SIMULATOR_LOG_FORMAT", "log format: text or json")

	if e.err != nil {
		return SimulatorConfig{}, e.err
	}
	if err := fs.Parse(args); err != nil {
		return SimulatorConfig{}, err
	}
	if fs.NArg() > 0 {
		return SimulatorConfig{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := cfg.validate(); err != nil {
		return SimulatorConfig{}, err
	}
	return cfg, nil
}

// validate checks a loaded SimulatorConfig. Its errors never repeat a
// secret.
func (c SimulatorConfig) validate() error {
	switch {
	case c.Sim.APIKey == "" && !c.AnyKey:
		return ErrNoSimulatorKey
	case c.Sim.APIKey != "" && c.AnyKey:
		return errors.New("-api-key and -any-key exclude each other")
	case c.Addr == "":
		return errors.New("-addr must not be empty")
	case c.Sim.Phase < 0:
		return errors.New("-phase must not be negative")
	case c.Sim.MaxFileBytes < 0 || c.Sim.MaxStoreBytes < 0:
		return errors.New("-max-file-bytes and -max-store-bytes must not be negative")
	case c.ShutdownTimeout <= 0:
		return errors.New("-shutdown-timeout must be positive")
	case c.Log.Format != "text" && c.Log.Format != "json":
		return fmt.Errorf("-log-format must be text or json, not %q", c.Log.Format)
	}
	if c.Sim.WebhookURL == "" {
		if c.Sim.WebhookSecret != "" {
			return errors.New("-webhook-secret needs -webhook-url")
		}
		return nil
	}
	if u, err := url.Parse(c.Sim.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-webhook-url must be an http or https URL, not %q", c.Sim.WebhookURL)
	}
	if c.Sim.WebhookSecret == "" {
		return errors.New("-webhook-secret (SIMULATOR_WEBHOOK_SECRET) is required with -webhook-url")
	}
	if _, err := webhook.ParseSecret(c.Sim.WebhookSecret); err != nil {
		return fmt.Errorf("-webhook-secret (SIMULATOR_WEBHOOK_SECRET): %w", err)
	}
	return nil
}
