package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/testutil"
)

// TestMain is main when RunFloor runs this test binary as the canned
// hops' process (os.Executable is the test binary here), and runs the
// tests otherwise.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == cannedCommand {
		main()
		os.Exit(0)
	}
	testutil.VerifyTestMain(m)
}

func TestRunFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in the error; "" for flag.ErrHelp
	}{
		{"help", []string{"-h"}, ""},
		{"unknown flag", []string{"-nope"}, "flag provided but not defined"},
		{"stray argument", []string{"extra"}, "unexpected arguments"},
		{"no rounds", []string{"-rounds", "0"}, "must be positive"},
		{"negative warm-up", []string{"-warmup", "-1"}, "not negative"},
		{"canned without files", []string{cannedCommand}, "-body and -response are required"},
		{"canned, missing file", []string{cannedCommand, "-body", "/nonexistent/b", "-response", "/nonexistent/r"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			switch {
			case tt.want == "" && !errors.Is(err, flag.ErrHelp):
				t.Errorf("run(%q) = %v, want flag.ErrHelp", tt.args, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// TestRunEndToEnd builds the gateway and the simulator, runs a short
// measurement with every process for real, and checks that each target
// answered every round and that each ratio was computed.
func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"-src", "../..", "-rounds", "40", "-warmup", "5", "-blocks", "4"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, target := range []string{"direct", "canned-grpc", "canned-http", "grpc-uncached", "rest-uncached", "grpc-cached", "rest-cached"} {
		if !strings.Contains(out, "| `"+target+"` | 40 | ") {
			t.Errorf("no row of 40 calls for %s:\n%s", target, out)
		}
	}
	for _, path := range []string{"gRPC uncached", "REST uncached", "gRPC cached", "REST cached"} {
		if !strings.Contains(out, "| "+path+" | `canned-") || strings.Contains(out, "0.00×") {
			t.Errorf("no ratio for %s:\n%s", path, out)
		}
	}
	if !strings.Contains(stderr.String(), "canned hops on") {
		t.Errorf("progress lines:\n%s", stderr.String())
	}
}
