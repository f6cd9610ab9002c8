package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/webhook"
	"github.com/batchgate/batchgate/internal/wire"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

const waitLimit = 10 * time.Second

func noEnv(string) (string, bool) { return "", false }

// startMain runs realMain with args (JSON logs) on an ephemeral port until
// the test ends, and returns the simulator's base URL and a function that
// stops it and returns realMain's error.
func startMain(t *testing.T, args []string, lookup func(string) (string, bool)) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- realMain(ctx, append([]string{"-addr", "127.0.0.1:0", "-log-format", "json"}, args...), lookup, logs)
	}()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" && line.Addr != "" {
				return "http://" + line.Addr, stop
			}
		}
		select {
		case err := <-done:
			t.Fatalf("realMain returned before serving: %v\n%s", err, logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no serving log line within %v:\n%s", waitLimit, logs)
	return "", nil
}

func get(t *testing.T, url, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestServesDemoBatchesWithKey: the process serves the demo batches to
// callers with its key, refuses others, answers /healthz without one, and
// returns nil once its context is done.
func TestServesDemoBatchesWithKey(t *testing.T) {
	base, stop := startMain(t, nil, func(k string) (string, bool) {
		if k == "SIMULATOR_API_KEY" {
			return "sk-sim-test", true
		}
		return "", false
	})
	code, body := get(t, base+"/v1/batches/"+simulator.DemoCompleted, "sk-sim-test")
	var b wire.Batch
	if code != http.StatusOK || json.Unmarshal(body, &b) != nil || b.ID != simulator.DemoCompleted {
		t.Fatalf("GET the demo batch with the key: %d %s", code, body)
	}
	if code, body := get(t, base+"/v1/batches/"+simulator.DemoCompleted, "sk-wrong"); code != http.StatusUnauthorized {
		t.Errorf("GET with a wrong key: %d %s, want 401", code, body)
	}
	if code, body := get(t, base+"/healthz", ""); code != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("realMain after its context ended: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}

// TestAnyKeyAndWebhooks: with -any-key any bearer key is taken, and with
// -webhook-url the simulator POSTs a webhook signed with -webhook-secret
// when a demo batch completes.
func TestAnyKeyAndWebhooks(t *testing.T) {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	secret := webhook.SecretPrefix + base64.StdEncoding.EncodeToString(raw[:])
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan webhook.Event, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := v.Verify(r.Header, body, time.Now())
		if err != nil {
			t.Errorf("webhook delivery: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case events <- ev:
		default:
		}
	}))
	defer hook.Close()
	base, stop := startMain(t, []string{"-any-key", "-phase", "100ms", "-webhook-url", hook.URL + webhook.Path, "-webhook-secret", secret}, noEnv)
	if code, body := get(t, base+"/v1/batches/"+simulator.DemoProgress, "sk-anything"); code != http.StatusOK {
		t.Fatalf("GET with any key: %d %s", code, body)
	}
	if code, _ := get(t, base+"/v1/batches/"+simulator.DemoProgress, ""); code != http.StatusUnauthorized {
		t.Errorf("GET without a key: %d, want 401", code)
	}
	select {
	case ev := <-events:
		if ev.Data.ID != simulator.DemoProgress {
			t.Errorf("webhook for %q, want %q", ev.Data.ID, simulator.DemoProgress)
		}
	case <-time.After(waitLimit):
		t.Fatal("no webhook within the wait")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRealMainRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "-api-key"},
		{[]string{"-api-key", "k", "-any-key"}, "exclude"},
		{[]string{"-any-key", "-webhook-url", "http://gw/v1/webhooks"}, "-webhook-secret"},
		{[]string{"-any-key", "-webhook-url", "http://gw/v1/webhooks", "-webhook-secret", "whsec_nope"}, "-webhook-secret"},
		{[]string{"-any-key", "-addr", "256.0.0.1:1"}, "listener"},
	} {
		err := realMain(context.Background(), tt.args, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("realMain %q: %v, want an error mentioning %s", tt.args, err, tt.want)
		}
	}
	if err := realMain(context.Background(), nil, noEnv, io.Discard); !errors.Is(err, config.ErrNoSimulatorKey) {
		t.Errorf("no key: %v, want ErrNoSimulatorKey", err)
	}
	if err := realMain(context.Background(), []string{"-h"}, noEnv, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
