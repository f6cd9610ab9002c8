// Command loadget measures GetBatch against its floor from outside, as
// the README's performance table quotes it: it starts the upstream
// simulator, two gateways in front of it (cache off, and the default
// cache) and a process serving the canned hops (a plain gRPC server and
// a plain net/http server that answer the gateway's own bytes for the
// batch and do nothing else), each a separate process on loopback, built
// from this module unless -gateway-bin and -simulator-bin are given. It
// then calls every target in interleaved rounds, one call each, and
// prints each target's latencies and each gateway path's ratio to its
// floor: canned hop + direct GET uncached, canned hop alone cached.
//
//	go run ./cmd/loadget                 # the README's figures
//	go run ./cmd/loadget -rounds 500     # a quicker look
//
// See internal/loadtest (MeasureFloor) for the definitions.
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

	"github.com/batchgate/batchgate/internal/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadget:", err)
		os.Exit(1)
	}
}

// cannedCommand is the subcommand that serves the canned hops: loadget
// runs itself with it as the canned hops' process.
const cannedCommand = "canned"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == cannedCommand {
		return runCanned(ctx, args[1:], stdout, stderr)
	}
	var s loadtest.FloorSetup
	var src string
	fs := flag.NewFlagSet("loadget", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&s.Rounds, "rounds", 5000, "counted rounds; a round calls each of the 7 targets once")
	fs.IntVar(&s.Warmup, "warmup", 500, "rounds made first and not counted")
	fs.IntVar(&s.Blocks, "blocks", 10, "blocks of consecutive rounds the ratios are also computed in, for their spread")
	fs.StringVar(&s.BatchID, "batch", "batch_demo_completed", "the simulator batch every call gets")
	fs.StringVar(&s.GatewayBin, "gateway-bin", "", "gateway binary (default: go build ./cmd/gateway in -src)")
	fs.StringVar(&s.SimulatorBin, "simulator-bin", "", "simulator binary (default: go build ./cmd/simulator in -src)")
	fs.StringVar(&src, "src", ".", "module directory to build the binaries from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	case s.Rounds <= 0 || s.Warmup < 0 || s.Blocks <= 0:
		return errors.New("-rounds and -blocks must be positive, -warmup not negative")
	}
	for _, b := range []struct {
		bin  *string
		name string
	}{{&s.GatewayBin, "gateway"}, {&s.SimulatorBin, "simulator"}} {
		if *b.bin != "" {
			continue
		}
		fmt.Fprintf(stderr, "building ./cmd/%s\n", b.name)
		bin, cleanup, err := loadtest.BuildCommand(ctx, src, b.name)
		if err != nil {
			return err
		}
		defer cleanup()
		*b.bin = bin
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	s.CannedCmd = []string{self, cannedCommand}
	s.Log = stderr
	res, err := loadtest.RunFloor(ctx, s)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, res.Markdown())
	return nil
}

// runCanned serves the canned hops until ctx ends (RunFloor stops it with
// SIGTERM).
func runCanned(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f loadtest.CannedFlags
	fs := flag.NewFlagSet("loadget canned", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.BodyFile, "body", "", "file of the REST answer")
	fs.StringVar(&f.ResponseFile, "response", "", "file of the gRPC GetBatchResponse, binary protobuf")
	fs.StringVar(&f.ContentType, "content-type", "application/json", "Content-Type of the REST answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.BodyFile == "" || f.ResponseFile == "" || fs.NArg() > 0 {
		return errors.New("canned: -body and -response are required, and nothing else")
	}
	return loadtest.ServeCanned(ctx, f, stdout)
}
