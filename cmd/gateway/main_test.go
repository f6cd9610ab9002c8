package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/config"
)

func TestRealMainNeedsAnUpstream(t *testing.T) {
	t.Parallel()
	var stderr strings.Builder
	err := realMain(context.Background(), nil, func(string) (string, bool) { return "", false }, &stderr)
	if !errors.Is(err, config.ErrNoUpstream) {
		t.Fatalf("err = %v, want ErrNoUpstream", err)
	}
	for _, want := range []string{"-upstream-url", "UPSTREAM_URL", "-demo"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say to set %s", err, want)
		}
	}
}

func TestRealMainDemoStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already done: the gateway starts, then shuts down at once
	args := []string{"-demo", "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"}
	if err := realMain(ctx, args, func(string) (string, bool) { return "", false }, io.Discard); err != nil {
		t.Fatalf("realMain: %v", err)
	}
}
