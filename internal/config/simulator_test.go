package config_test

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/config"
)

func TestLoadSimulator(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(c config.SimulatorConfig) bool
		wantErr error
		errText string
	}{
		{name: "no key", wantErr: config.ErrNoSimulatorKey},
		{name: "defaults", args: []string{"-api-key", "k"}, want: func(c config.SimulatorConfig) bool {
			return c.Addr == "127.0.0.1:8081" && c.Sim.APIKey == "k" && !c.AnyKey && c.Sim.Phase == 0 && c.Sim.WebhookURL == "" &&
				c.ShutdownTimeout == 10*time.Second && c.Log.Level == slog.LevelInfo && c.Log.Format == "text"
		}},
		{name: "environment", env: map[string]string{
			"SIMULATOR_ADDR": ":8081", "SIMULATOR_ANY_KEY": "true", "SIMULATOR_PHASE": "2s", "SIMULATOR_MAX_FILE_BYTES": "1000",
			"SIMULATOR_WEBHOOK_URL": "http://gateway1:8082/v1/webhooks", "SIMULATOR_WEBHOOK_SECRET": secret, "SIMULATOR_LOG_LEVEL": "debug",
		}, want: func(c config.SimulatorConfig) bool {
			return c.Addr == ":8081" && c.AnyKey && c.Sim.Phase == 2*time.Second && c.Sim.MaxFileBytes == 1000 &&
				c.Sim.WebhookURL == "http://gateway1:8082/v1/webhooks" && c.Sim.WebhookSecret == secret && c.Log.Level == slog.LevelDebug
		}},
		{name: "flags win over environment", args: []string{"-addr", ":1", "-api-key", "flag"},
			env:  map[string]string{"SIMULATOR_ADDR": ":2", "SIMULATOR_API_KEY": "env"},
			want: func(c config.SimulatorConfig) bool { return c.Addr == ":1" && c.Sim.APIKey == "flag" }},
		{name: "key and any key", args: []string{"-api-key", "k", "-any-key"}, errText: "exclude"},
		{name: "webhook without secret", args: []string{"-any-key", "-webhook-url", "http://g/v1/webhooks"}, errText: "-webhook-secret"},
		{name: "secret without webhook", args: []string{"-any-key", "-webhook-secret", secret}, errText: "-webhook-url"},
		{name: "bad webhook url", args: []string{"-any-key", "-webhook-url", "gateway:8082", "-webhook-secret", secret}, errText: "-webhook-url"},
		{name: "negative phase", args: []string{"-any-key", "-phase", "-1s"}, errText: "-phase"},
		{name: "bad env", env: map[string]string{"SIMULATOR_ANY_KEY": "perhaps"}, errText: "SIMULATOR_ANY_KEY"},
		{name: "help", args: []string{"-h"}, wantErr: flag.ErrHelp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.LoadSimulator(tt.args, env(tt.env), io.Discard)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.errText)
				}
			default:
				if err != nil {
					t.Fatalf("LoadSimulator: %v", err)
				}
				if !tt.want(c) {
					t.Fatalf("unexpected config %+v", c)
				}
			}
		})
	}
}

// TestLoadSimulatorSecretsStayOut: neither -h nor an error repeats a key
// or a webhook secret.
func TestLoadSimulatorSecretsStayOut(t *testing.T) {
	t.Parallel()
	var help strings.Builder
	lookup := env(map[string]string{"SIMULATOR_API_KEY": "sk-hidden", "SIMULATOR_WEBHOOK_SECRET": "whsec_hidden"})
	if _, err := config.LoadSimulator([]string{"-h"}, lookup, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	_, err := config.LoadSimulator([]string{"-webhook-url", "http://g/v1/webhooks"}, lookup, io.Discard)
	for _, s := range []string{help.String(), err.Error()} {
		if strings.Contains(s, "hidden") {
			t.Errorf("a secret shows: %s", s)
		}
	}
}
