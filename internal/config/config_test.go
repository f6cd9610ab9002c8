package config_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(c config.Config) bool
		wantErr error
		errText string
	}{
		{name: "nothing configured", wantErr: config.ErrNoUpstream},
		{name: "url without key", args: []string{"-upstream-url", "http://x"}, wantErr: config.ErrNoUpstreamKey},
		{name: "key without url", args: []string{"-upstream-api-key", "k"}, wantErr: config.ErrNoUpstreamURL},
		{name: "passthrough without url", args: []string{"-auth", "passthrough"}, wantErr: config.ErrNoUpstreamURL},
		{name: "demo defaults: loopback, no caller check, fast polls", args: []string{"-demo"}, want: func(c config.Config) bool {
			return c.Demo && c.Server.GRPCAddr == "127.0.0.1:9090" && c.Server.HTTPAddr == "127.0.0.1:8080" && c.Auth.Mode == "none" &&
				c.Watch.PollInterval == time.Second && c.Server.ShutdownTimeout == 20*time.Second
		}},
		{name: "demo on all interfaces needs tokens", args: []string{"-demo", "-http-addr", ":8080"}, errText: "-client-tokens-file"},
		{name: "demo on all interfaces with explicit none", args: []string{"-demo", "-http-addr", ":8080", "-auth", "none"},
			want: func(c config.Config) bool { return c.Auth.Mode == "none" && c.Server.GRPCAddr == "127.0.0.1:9090" }},
		{name: "demo poll interval can be set", args: []string{"-demo"}, env: map[string]string{"POLL_INTERVAL": "5s"},
			want: func(c config.Config) bool { return c.Watch.PollInterval == 5*time.Second }},
		{name: "environment", env: map[string]string{
			"UPSTREAM_URL": "https://api.example", "UPSTREAM_API_KEY": "sk-env", "GRPC_ADDR": ":1", "HTTP_ADDR": ":2", "LOG_LEVEL": "debug",
			"CLIENT_TOKENS_FILE": "/etc/tokens", "LOG_FORMAT": "json",
		}, want: func(c config.Config) bool {
			return c.Upstream.BaseURL == "https://api.example" && c.Upstream.APIKey == "sk-env" && c.Server.GRPCAddr == ":1" && c.Server.HTTPAddr == ":2" &&
				c.Log.Level == slog.LevelDebug && c.Auth.Mode == "key" && c.Auth.TokensFile == "/etc/tokens" && c.Log.Format == "json"
		}},
		{name: "flags win over environment", args: []string{"-grpc-addr", ":3", "-upstream-api-key", "sk-flag", "-auth", "none"},
			env: map[string]string{"UPSTREAM_URL": "http://u", "UPSTREAM_API_KEY": "sk-env", "GRPC_ADDR": ":1", "AUTH_MODE": "key"},
			want: func(c config.Config) bool {
				return c.Server.GRPCAddr == ":3" && c.Upstream.APIKey == "sk-flag" && c.Auth.Mode == "none"
			}},
		{name: "key mode needs tokens", args: []string{"-upstream-url", "http://u", "-upstream-api-key", "k"}, errText: "-client-tokens-file"},
		{name: "passthrough needs no upstream key", args: []string{"-upstream-url", "http://u", "-auth", "passthrough"},
			want: func(c config.Config) bool { return c.Auth.Mode == "passthrough" && c.Upstream.APIKey == "" }},
		{name: "unknown auth mode", args: []string{"-demo", "-auth", "maybe"}, errText: "-auth must be"},
		{name: "tls cert without key", args: []string{"-demo", "-tls-cert", "c.pem"}, errText: "-tls-key"},
		{name: "client CA without cert", args: []string{"-demo", "-tls-client-ca", "ca.pem"}, errText: "-tls-client-ca"},
		{name: "bad log format", args: []string{"-demo", "-log-format", "xml"}, errText: "-log-format"},
		{name: "negative watcher cap", args: []string{"-demo", "-max-watchers", "-1"}, errText: "-max-watchers"},
		{name: "bad duration in env", env: map[string]string{"DEMO": "1", "SHUTDOWN_TIMEOUT": "soon"}, errText: "SHUTDOWN_TIMEOUT"},
		{name: "bad bool in env", env: map[string]string{"DEMO": "maybe"}, errText: "DEMO"},
		{name: "bad flag", args: []string{"-nope"}, errText: "flag provided but not defined"},
		{name: "stray argument", args: []string{"-demo", "extra"}, errText: "unexpected arguments"},
		{name: "zero attempts", args: []string{"-demo", "-upstream-max-attempts", "0"}, errText: "upstream-max-attempts"},
		{name: "upload limit default", args: []string{"-demo"},
			want: func(c config.Config) bool { return c.Files.MaxUploadBytes == 200_000_000 }},
		{name: "upload limit from the environment", args: []string{"-demo"}, env: map[string]string{"MAX_UPLOAD_BYTES": "1048576"},
			want: func(c config.Config) bool { return c.Files.MaxUploadBytes == 1<<20 }},
		{name: "upload limit flag", args: []string{"-demo", "-max-upload-bytes", "5000000000"},
			want: func(c config.Config) bool { return c.Files.MaxUploadBytes == 5_000_000_000 }},
		{name: "zero upload limit", args: []string{"-demo", "-max-upload-bytes", "0"}, errText: "-max-upload-bytes must be positive"},
		{name: "negative upload limit", args: []string{"-demo", "-max-upload-bytes", "-1"}, errText: "-max-upload-bytes must be positive"},
		{name: "bad upload limit in env", env: map[string]string{"DEMO": "1", "MAX_UPLOAD_BYTES": "200MB"}, errText: "MAX_UPLOAD_BYTES"},
		{name: "shutdown delay default", args: []string{"-demo"},
			want: func(c config.Config) bool { return c.Server.ShutdownDelay == 0 }},
		{name: "shutdown delay from the environment", args: []string{"-demo"}, env: map[string]string{"SHUTDOWN_DELAY": "5s"},
			want: func(c config.Config) bool { return c.Server.ShutdownDelay == 5*time.Second }},
		{name: "shutdown delay flag wins", args: []string{"-demo", "-shutdown-delay", "250ms"}, env: map[string]string{"SHUTDOWN_DELAY": "5s"},
			want: func(c config.Config) bool { return c.Server.ShutdownDelay == 250*time.Millisecond }},
		{name: "negative shutdown delay", args: []string{"-demo", "-shutdown-delay", "-1s"}, errText: "-shutdown-delay must not be negative"},
		{name: "bad shutdown delay in env", env: map[string]string{"DEMO": "1", "SHUTDOWN_DELAY": "soon"}, errText: "SHUTDOWN_DELAY"},
		{name: "status page on by default", args: []string{"-demo"},
			want: func(c config.Config) bool { return c.Server.UI }},
		{name: "status page off by flag", args: []string{"-demo", "-ui=false"},
			want: func(c config.Config) bool { return !c.Server.UI }},
		{name: "status page off from the environment", args: []string{"-demo"}, env: map[string]string{"UI": "false"},
			want: func(c config.Config) bool { return !c.Server.UI }},
		{name: "bad status page bool in env", env: map[string]string{"DEMO": "1", "UI": "perhaps"}, errText: "UI"},
		{name: "help", args: []string{"-h"}, wantErr: flag.ErrHelp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(tt.args, env(tt.env), io.Discard)
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
					t.Fatalf("Load: %v", err)
				}
				if !tt.want(c) {
					t.Fatalf("unexpected config %+v", c)
				}
			}
		})
	}
}

func TestHelpHidesAPIKey(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	_, err := config.Load([]string{"-h"}, env(map[string]string{"UPSTREAM_API_KEY": "sk-very-secret"}), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "-upstream-api-key") {
		t.Fatalf("help lacks the flag:\n%s", out.String())
	}
	if strings.Contains(out.String(), "sk-very-secret") {
		t.Fatalf("help prints the API key:\n%s", out.String())
	}
}

// TestLoadUpstreamMessages: a partial upstream configuration is told what
// is missing, not that no upstream is configured.
func TestLoadUpstreamMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // in the message
		notWant []string // not in the message
	}{
		{name: "nothing configured", want: []string{"no upstream configured", "-upstream-url", "UPSTREAM_URL", "-upstream-api-key", "-demo"}},
		{name: "url without key", args: []string{"-upstream-url", "http://u"},
			want:    []string{"-upstream-api-key (UPSTREAM_API_KEY) is required with -upstream-url unless -auth=passthrough"},
			notWant: []string{"no upstream configured"}},
		{name: "url without key, from the environment", env: map[string]string{"UPSTREAM_URL": "http://u"},
			want:    []string{"-upstream-api-key (UPSTREAM_API_KEY) is required with -upstream-url unless -auth=passthrough"},
			notWant: []string{"no upstream configured"}},
		{name: "url without key, explicit key mode", args: []string{"-upstream-url", "http://u", "-auth", "key", "-client-tokens-file", "t"},
			want:    []string{"-upstream-api-key (UPSTREAM_API_KEY) is required with -upstream-url unless -auth=passthrough"},
			notWant: []string{"no upstream configured"}},
		{name: "url without key, mode none", args: []string{"-upstream-url", "http://u", "-auth", "none"},
			want:    []string{"-upstream-api-key (UPSTREAM_API_KEY) is required with -upstream-url unless -auth=passthrough"},
			notWant: []string{"no upstream configured"}},
		{name: "key without url", args: []string{"-upstream-api-key", "sk-k"},
			want:    []string{"-upstream-url (UPSTREAM_URL) is required with -upstream-api-key", "-demo"},
			notWant: []string{"no upstream configured", "sk-k"}},
		{name: "key without url, from the environment", env: map[string]string{"UPSTREAM_API_KEY": "sk-env"},
			want:    []string{"-upstream-url (UPSTREAM_URL) is required with -upstream-api-key"},
			notWant: []string{"no upstream configured", "sk-env"}},
		{name: "passthrough without url", args: []string{"-auth", "passthrough"},
			want:    []string{"-upstream-url (UPSTREAM_URL) is required with -auth=passthrough"},
			notWant: []string{"no upstream configured"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(tt.args, env(tt.env), io.Discard)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			for _, s := range tt.notWant {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q says %q", err, s)
				}
			}
		})
	}
}

func TestWebhookConfig(t *testing.T) {
	t.Parallel()
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	base := []string{"-demo"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		errText string
	}{
		{name: "off by default", args: base},
		{name: "address and secret", args: append(base, "-webhook-addr", ":8443", "-webhook-secret", secret)},
		{name: "from the environment, rotated", args: base, env: map[string]string{"WEBHOOK_ADDR": ":8443", "WEBHOOK_SECRET": secret + "," + other}},
		{name: "address without secret", args: append(base, "-webhook-addr", ":8443"), errText: "-webhook-secret (WEBHOOK_SECRET) is required with -webhook-addr"},
		{name: "malformed secret", args: append(base, "-webhook-addr", ":8443", "-webhook-secret", "whsec_not!base64-sekrit"), errText: "canonical standard base64"},
		{name: "no prefix", args: append(base, "-webhook-addr", ":8443", "-webhook-secret", secret+",sekrit-value"), errText: "secret 2 of the list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(tt.args, env(tt.env), io.Discard)
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want %q", err, tt.errText)
				}
				if strings.Contains(err.Error(), "sekrit") {
					t.Fatalf("the error repeats the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(fmt.Sprint(tt.args), "8443") || tt.env != nil {
				if c.Webhook.Addr != ":8443" || c.Webhook.Secret == "" {
					t.Fatalf("Webhook = %+v", c.Webhook)
				}
			}
		})
	}
	var out strings.Builder
	_, err := config.Load([]string{"-h"}, env(map[string]string{"WEBHOOK_SECRET": secret}), &out)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-webhook-secret") || strings.Contains(out.String(), secret[6:]) {
		t.Fatalf("help: %v\n%s", err, out.String())
	}
}

func TestClusterConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config.ClusterConfig
		errText string
	}{
		{name: "off by default", args: []string{"-demo"}, want: config.ClusterConfig{Bucket: "batchgate"}},
		{name: "flags", args: []string{"-demo", "-cluster-nats-url", "nats://n:4222", "-cluster-nats-creds", "/etc/nats.creds", "-cluster-bucket", "bg-1"},
			want: config.ClusterConfig{NATSURL: "nats://n:4222", NATSCreds: "/etc/nats.creds", Bucket: "bg-1"}},
		{name: "environment", args: []string{"-demo"}, env: map[string]string{"CLUSTER_NATS_URL": "tls://n:4222", "CLUSTER_NATS_CREDS": "c", "CLUSTER_BUCKET": "b"},
			want: config.ClusterConfig{NATSURL: "tls://n:4222", NATSCreds: "c", Bucket: "b"}},
		{name: "bad bucket", args: []string{"-demo", "-cluster-nats-url", "nats://n", "-cluster-bucket", "a.b"}, errText: "-cluster-bucket"},
		{name: "bad bucket unused without url", args: []string{"-demo", "-cluster-bucket", "a.b"}, want: config.ClusterConfig{Bucket: "a.b"}},
		{name: "TLS flags", args: []string{"-demo", "-cluster-nats-url", "tls://n:4222", "-cluster-nats-ca", "/etc/nats/ca.pem",
			"-cluster-nats-cert", "/etc/nats/tls.crt", "-cluster-nats-key", "/etc/nats/tls.key"},
			want: config.ClusterConfig{NATSURL: "tls://n:4222", NATSCA: "/etc/nats/ca.pem", NATSCert: "/etc/nats/tls.crt", NATSKey: "/etc/nats/tls.key", Bucket: "batchgate"}},
		{name: "TLS from the environment", args: []string{"-demo"}, env: map[string]string{"CLUSTER_NATS_URL": "nats://n:4222",
			"CLUSTER_NATS_CA": "ca.pem", "CLUSTER_NATS_CERT": "tls.crt", "CLUSTER_NATS_KEY": "tls.key"},
			want: config.ClusterConfig{NATSURL: "nats://n:4222", NATSCA: "ca.pem", NATSCert: "tls.crt", NATSKey: "tls.key", Bucket: "batchgate"}},
		{name: "TLS flags win over the environment", args: []string{"-demo", "-cluster-nats-ca", "flag-ca.pem", "-cluster-nats-key", "flag.key"},
			env:  map[string]string{"CLUSTER_NATS_URL": "nats://n", "CLUSTER_NATS_CA": "env-ca.pem", "CLUSTER_NATS_CERT": "env.crt", "CLUSTER_NATS_KEY": "env.key"},
			want: config.ClusterConfig{NATSURL: "nats://n", NATSCA: "flag-ca.pem", NATSCert: "env.crt", NATSKey: "flag.key", Bucket: "batchgate"}},
		{name: "CA alone", args: []string{"-demo", "-cluster-nats-url", "nats://n", "-cluster-nats-ca", "ca.pem"},
			want: config.ClusterConfig{NATSURL: "nats://n", NATSCA: "ca.pem", Bucket: "batchgate"}},
		{name: "client certificate without key", args: []string{"-demo", "-cluster-nats-url", "nats://n", "-cluster-nats-cert", "tls.crt"},
			errText: "-cluster-nats-cert (CLUSTER_NATS_CERT) and -cluster-nats-key (CLUSTER_NATS_KEY) go together"},
		{name: "client key without certificate", args: []string{"-demo", "-cluster-nats-url", "nats://n", "-cluster-nats-key", "tls.key"},
			errText: "-cluster-nats-cert (CLUSTER_NATS_CERT) and -cluster-nats-key (CLUSTER_NATS_KEY) go together"},
		{name: "client key without certificate, from the environment", args: []string{"-demo"},
			env:     map[string]string{"CLUSTER_NATS_URL": "nats://n", "CLUSTER_NATS_KEY": "tls.key"},
			errText: "go together"},
		// As -cluster-nats-creds and -cluster-bucket: unused, and so
		// unchecked, while the cluster is off.
		{name: "TLS flags unused without url", args: []string{"-demo", "-cluster-nats-ca", "ca.pem", "-cluster-nats-cert", "tls.crt"},
			want: config.ClusterConfig{NATSCA: "ca.pem", NATSCert: "tls.crt", Bucket: "batchgate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(tt.args, env(tt.env), io.Discard)
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Cluster != tt.want {
				t.Fatalf("Cluster = %+v, want %+v", c.Cluster, tt.want)
			}
		})
	}
}

// TestLogConfigLogger: the logger writes JSON or text as Format says, from
// Level up.
func TestLogConfigLogger(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		format string
		want   string
	}{
		{"json", `"msg":"shown"`},
		{"text", "msg=shown"},
		{"", "msg=shown"},
	} {
		var buf bytes.Buffer
		log := config.LogConfig{Level: slog.LevelInfo, Format: tt.format}.Logger(&buf)
		log.Debug("hidden")
		log.Info("shown")
		if got := buf.String(); !strings.Contains(got, tt.want) || strings.Contains(got, "hidden") {
			t.Errorf("format %q: %q, want %s and no debug line", tt.format, got, tt.want)
		}
	}
}
