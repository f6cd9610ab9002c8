// Package compose_test checks compose.yaml at the repository's root
// against the binaries it runs: each gateway's and the simulator's
// environment loads, and the services point at each other's ports, keys
// and secrets. (Docker is not needed: the file is only read.)
package compose_test

import (
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/batchgate/batchgate/internal/auth"
	"github.com/batchgate/batchgate/internal/config"
)

// composeFile is the part of the compose file the test reads.
type composeFile struct {
	Services map[string]struct {
		Image       string            `json:"image"`
		Entrypoint  []string          `json:"entrypoint"`
		Command     []string          `json:"command"`
		Ports       []string          `json:"ports"`
		Environment map[string]string `json:"environment"`
		Volumes     []string          `json:"volumes"`
	} `json:"services"`
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

func TestComposeMatchesTheBinaries(t *testing.T) {
	data, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var help strings.Builder
	_, _ = config.Load([]string{"-h"}, nil, &help)
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(\$([A-Z0-9_]+)\)`).FindAllStringSubmatch(help.String(), -1) {
		known[m[1]] = true
	}

	sim, ok := f.Services["simulator"]
	if !ok {
		t.Fatal("no simulator service")
	}
	simCfg, err := config.LoadSimulator(sim.Command, lookupIn(sim.Environment), io.Discard)
	if err != nil {
		t.Fatalf("the simulator would not start: %v", err)
	}
	if _, ok := f.Services["nats"]; !ok || !strings.HasPrefix(f.Services["nats"].Image, "nats:2.1") {
		t.Errorf("want a nats:2.11 or later service, have %+v", f.Services["nats"])
	}

	hostPorts := map[string]string{}
	for _, name := range []string{"gateway1", "gateway2", "gateway3"} {
		g, ok := f.Services[name]
		if !ok {
			t.Fatalf("no %s service", name)
		}
		for k := range g.Environment {
			if !known[k] {
				t.Errorf("%s: %s is not a variable of the gateway (-h lists them); it would be ignored", name, k)
			}
		}
		cfg, err := config.Load(g.Command, lookupIn(g.Environment), io.Discard)
		if err != nil {
			t.Fatalf("%s would not start: %v", name, err)
		}
		u, err := url.Parse(cfg.Upstream.BaseURL)
		if err != nil || u.Hostname() != "simulator" || u.Port() != portOf(t, simCfg.Addr) {
			t.Errorf("%s: upstream %s, not the simulator's %s", name, cfg.Upstream.BaseURL, simCfg.Addr)
		}
		if cfg.Upstream.APIKey != simCfg.Sim.APIKey {
			t.Errorf("%s: its upstream key is not the simulator's", name)
		}
		if cfg.Webhook.Addr != "" && !strings.Contains(cfg.Webhook.Secret, simCfg.Sim.WebhookSecret) {
			t.Errorf("%s: its webhook secrets do not include the simulator's", name)
		}
		// The tokens file is mounted where CLIENT_TOKENS_FILE says, and loads.
		if cfg.Auth.Mode == auth.ModeKey {
			found := false
			for _, v := range g.Volumes {
				src, dst, _ := strings.Cut(strings.TrimSuffix(v, ":ro"), ":")
				if dst == cfg.Auth.TokensFile {
					found = true
					if _, err := auth.LoadTokens("../../" + strings.TrimPrefix(src, "./")); err != nil {
						t.Errorf("%s: tokens file %s: %v", name, src, err)
					}
				}
			}
			if !found {
				t.Errorf("%s: nothing mounted at %s", name, cfg.Auth.TokensFile)
			}
		}
		// Published ports reach the listeners; no two services share a host port.
		inside := map[string]bool{portOf(t, cfg.Server.GRPCAddr): false, portOf(t, cfg.Server.HTTPAddr): false}
		for _, p := range g.Ports {
			host, ctr, _ := strings.Cut(p, ":")
			if _, ok := inside[ctr]; !ok {
				t.Errorf("%s publishes %s, not a port it listens on", name, p)
			}
			inside[ctr] = true
			if other, dup := hostPorts[host]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, host)
			}
			hostPorts[host] = name
		}
		for p, published := range inside {
			if !published {
				t.Errorf("%s does not publish its port %s", name, p)
			}
		}
		if name == "gateway1" && simCfg.Sim.WebhookURL != "" {
			w, err := url.Parse(simCfg.Sim.WebhookURL)
			if err != nil || w.Hostname() != name || w.Port() != portOf(t, cfg.Webhook.Addr) {
				t.Errorf("the simulator's webhooks go to %s, not %s's receiver %s", simCfg.Sim.WebhookURL, name, cfg.Webhook.Addr)
			}
		}
	}
}
