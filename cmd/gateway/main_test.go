package main

import (
	"context"
	"errors"
	"io"
	"runtime/debug"
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

// Without GOGC in the environment the gateway collects at defaultGOGC;
// with one, the runtime's reading of it stands. Not parallel: the GC
// percent is the process's.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	for _, tt := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"GOGC unset", nil, defaultGOGC},
		{"GOGC set", map[string]string{"GOGC": "100"}, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100) // what the runtime made of GOGC=100
			got := tuneGC(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if got != tt.want {
				t.Errorf("tuneGC = %d, want %d", got, tt.want)
			}
			if now := debug.SetGCPercent(100); now != tt.want {
				t.Errorf("GC percent in force %d, want %d", now, tt.want)
			}
		})
	}
}
