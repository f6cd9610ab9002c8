// Command batchctl is a client of the gateway over gRPC: it gets, lists,
// cancels, watches (with live progress bars on a terminal) and creates
// batches, and streams their results. See internal/batchctl and
// `batchctl -h`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/batchgate/batchgate/internal/batchctl"
)

func main() {
	// Ctrl-C stops the command (a watch stops watching); the batches go on.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := batchctl.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
