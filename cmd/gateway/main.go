// Command gateway runs batchgate: a gRPC and HTTP/JSON front for an
// OpenAI-compatible REST batch API. See the README for flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.LookupEnv, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// realMain loads the configuration from args and the environment, and runs
// the gateway until ctx is done.
func realMain(ctx context.Context, args []string, lookup func(string) (string, bool), stderr io.Writer) error {
	cfg, err := config.Load(args, lookup, stderr)
	if err != nil {
		return err
	}
	return gateway.Run(ctx, cfg, cfg.Log.Logger(stderr))
}
