// Command loadwatch measures WatchBatch fan-out end to end on one machine:
// it starts an upstream simulator and creates batches that change during
// the run, starts the gateway as a separate process (built from this
// module unless -gateway-bin is given), opens thousands of gRPC and SSE
// watchers, then runs the same number of naive clients polling the
// upstream directly, and prints a Markdown table and the raw numbers.
// Everything listens on loopback only; the run stops by itself.
//
//	go run ./cmd/loadwatch                       # the README's numbers
//	go run ./cmd/loadwatch -watchers 1000 -sse 0 # a quicker look
//
// With -replicas N it runs N gateway processes on one upstream instead,
// twice: each on its own, then sharing leases through a NATS JetStream
// server it runs in its own (the load tool's) process (-cluster-nats-url), the gRPC
// watchers split evenly across them, and prints both side by side (no SSE
// or naive phase):
//
//	go run ./cmd/loadwatch -replicas 3 -watchers 9000 -conns 90 -phase 150s -kill 20s -finish 8s
//
// With -kill it then SIGKILLs the replica holding the most leases, resumes
// its watchers on the others, and with -finish brings every batch to its
// end; it exits with status 1, after "MISSED:" lines, when a watcher missed
// a terminal event or a state that lasted longer than an interval.
//
// See internal/loadtest for the definitions of the figures.
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
		fmt.Fprintln(os.Stderr, "loadwatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg loadtest.Config
	var bin, src string
	var ro loadtest.ReplicaOptions
	fs := flag.NewFlagSet("loadwatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Watchers, "watchers", 10000, "gRPC WatchBatch streams")
	fs.IntVar(&cfg.Conns, "conns", 100, "gRPC client connections the streams share")
	fs.IntVar(&cfg.Batches, "batches", 100, "batches, watched round-robin")
	fs.IntVar(&cfg.SSE, "sse", 1000, "SSE watches, one HTTP connection each (0: skip)")
	fs.IntVar(&cfg.Naive, "naive", 0, "naive clients polling the upstream directly (0: as many as -watchers; -1: skip)")
	fs.IntVar(&cfg.NaiveConns, "naive-conns", 0, "HTTP connections the naive clients share (0: as many as -conns)")
	fs.DurationVar(&cfg.Interval, "interval", 1e9, "poll interval of the gateway and of the naive clients")
	fs.DurationVar(&cfg.Duration, "duration", 20e9, "steady measurement window of each phase")
	fs.DurationVar(&cfg.Settle, "settle", 5e9, "wait after opening the watchers before measuring")
	fs.DurationVar(&cfg.Phase, "phase", 0, "simulator phase length (0: long enough for batches to stay in progress)")
	fs.DurationVar(&cfg.Tick, "tick", 100e6, "simulator clock grid: upstream changes happen on it")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", 3600e9, "the gateway's -watch-heartbeat")
	fs.IntVar(&cfg.OpenParallel, "open-parallel", 200, "watchers opening at once")
	fs.IntVar(&ro.Replicas, "replicas", 0, "gateway replicas, run without and then with a shared NATS (0: one gateway, the phases above)")
	fs.DurationVar(&ro.Kill, "kill", 0, "with -replicas: after the cluster window, SIGKILL the replica holding the most leases, resume its watchers on the others (resume_tag) and watch them all this long (0: no kill)")
	fs.DurationVar(&ro.Finish, "finish", 0, "with -kill: this long after the kill, jump the simulator's clock so that every batch is finalizing, then completes 3 intervals (+ up to phase/100) later, to count the terminal events; -kill must hold that plus an interval (0: no finish)")
	fs.StringVar(&bin, "gateway-bin", "", "gateway binary to run (default: go build ./cmd/gateway in -src)")
	fs.StringVar(&src, "src", ".", "module directory to build the gateway from")
	fs.Func("gateway-arg", "extra flag for the gateway process, e.g. -gateway-arg=-log-level=info (repeatable)", func(v string) error {
		cfg.GatewayArgs = append(cfg.GatewayArgs, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case (ro.Kill > 0 || ro.Finish > 0) && ro.Replicas == 0:
		return errors.New("-kill and -finish need -replicas")
	case ro.Finish > 0 && ro.Kill <= 0:
		return errors.New("-finish needs -kill")
	}
	cfg.Log = stderr

	limit, err := loadtest.RaiseFileLimit()
	if err != nil {
		return fmt.Errorf("raising the open-files limit: %w", err)
	}
	if need := uint64(2*cfg.SSE + cfg.Conns + cfg.NaiveConns + 256); limit < need {
		return fmt.Errorf("the open-files limit is %d; this run needs about %d (raise the hard limit)", limit, need)
	}
	if bin == "" {
		fmt.Fprintln(stderr, "building ./cmd/gateway")
		b, cleanup, err := loadtest.BuildGateway(ctx, src)
		if err != nil {
			return err
		}
		defer cleanup()
		bin = b
	}
	cfg.Start = loadtest.ProcessStarter(bin)

	if ro.Replicas > 0 {
		res, err := loadtest.RunReplicas(ctx, cfg, ro)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, res.Markdown())
		if t := res.TakeoverMarkdown(); t != "" {
			fmt.Fprintln(stdout, t)
		}
		fmt.Fprint(stdout, res.Raw())
		if f := res.Failures(); len(f) > 0 {
			for _, l := range f {
				fmt.Fprintln(stdout, l)
			}
			return fmt.Errorf("%d checks failed (the MISSED lines above)", len(f))
		}
		return nil
	}

	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Markdown())
	fmt.Fprint(stdout, res.Raw())
	return nil
}
