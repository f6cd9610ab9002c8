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
	"runtime/debug"
	"syscall"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
)

// defaultGOGC is the collector's target when the environment sets no
// GOGC: garbage may grow to half the live heap, not all of it, before a
// collection. A gateway's live heap is mostly its watchers; at the Go
// default its RSS, with changes flowing, rose to 21.4 KiB per gRPC watcher
// against 18.1 KiB at 50, for about 5% more CPU (docs/performance.md).
const defaultGOGC = 50

func main() {
	tuneGC(os.LookupEnv)
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

// tuneGC sets the collector's target to defaultGOGC unless GOGC is set,
// and returns the target now in force.
func tuneGC(lookup func(string) (string, bool)) int {
	if _, ok := lookup("GOGC"); ok {
		old := debug.SetGCPercent(-1) // read it back: SetGCPercent has no getter
		debug.SetGCPercent(old)
		return old
	}
	debug.SetGCPercent(defaultGOGC)
	return defaultGOGC
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
