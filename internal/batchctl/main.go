// Package batchctl is the logic of the batchctl command: a client of the
// gateway over gRPC (the generated stubs of gen/batch/v1) that gets, lists,
// cancels, watches and creates batches and streams their results.
//
// cmd/batchctl only wires Main to the process: its arguments, standard
// streams and environment. Everything else, the terminal detection
// included, is here, so that the tests drive the commands in process.
package batchctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Exit statuses of Main.
const (
	// ExitOK: the command did what it was asked; for watch, every batch
	// completed.
	ExitOK = 0
	// ExitFailed: the gateway refused the call (not found, permission
	// denied, ...), or, for watch, a batch failed, expired, was cancelled
	// or could not be watched.
	ExitFailed = 1
	// ExitUsage: bad usage, or the gateway could not be reached.
	ExitUsage = 2
	// ExitInterrupted: the context was cancelled (Ctrl-C) before the
	// command was done; the batches go on.
	ExitInterrupted = 130
)

// DefaultAddr is the gateway's gRPC address when neither -addr nor
// BATCHCTL_ADDR says otherwise.
const DefaultAddr = "localhost:9090"

const usageText = `usage: batchctl [flags] COMMAND [ARGS]

Commands:
  get ID                          show one batch
  list [--limit N] [--all]        list batches, newest first (--all: every page)
  cancel ID                       ask for a batch to be cancelled
  watch ID [ID...]                follow batches live until they end
  results ID [--kind output|errors|all] [-o out.jsonl]
                                  stream a finished batch's results as JSONL
  create --file input.jsonl [--endpoint E] [--metadata k=v ...] [--watch] [--results out.jsonl]
                                  upload an input file and create a batch of it

Flags (before or after the command):
  -addr host:port   the gateway's gRPC address (BATCHCTL_ADDR, default localhost:9090)
  -token T          sent as "authorization: Bearer T" (BATCHCTL_TOKEN)
  -tls              connect with TLS (the system's roots unless -ca)
  -ca FILE          PEM roots to verify the gateway with (implies -tls)
  -o text|json      output format (json: one object per line)

Exit status: 0 done (watch: every batch completed); 1 refused by the gateway,
or a watched batch failed, expired, was cancelled or could not be watched;
2 bad usage or gateway unreachable; 130 interrupted.
`

// env is one run of Main: its streams and settings.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// terminal reports whether stdout is a terminal: watch and create
	// then redraw live bars in place.
	terminal bool
	// now is the clock of rates, ETAs and elapsed times.
	now func() time.Time

	g    globals
	conn *grpc.ClientConn
}

// globals are the flags every command takes.
type globals struct {
	addr, token, ca, format string
	tls                     bool
}

func (g *globals) register(fs *flag.FlagSet, withFormat bool) {
	fs.StringVar(&g.addr, "addr", g.addr, "the gateway's gRPC `host:port` (BATCHCTL_ADDR)")
	fs.StringVar(&g.token, "token", g.token, "bearer `token` (BATCHCTL_TOKEN)")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect with TLS")
	fs.StringVar(&g.ca, "ca", g.ca, "PEM `file` of roots to verify the gateway with (implies -tls)")
	if withFormat {
		fs.StringVar(&g.format, "o", g.format, "output `format`: text or json")
	}
}

// usageError is bad usage: Main prints it with a hint and exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError ends a command with a status of its own, after the command
// printed what it had to.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs batchctl with args (without the program name) and returns its
// exit status. getenv reads the environment (BATCHCTL_ADDR,
// BATCHCTL_TOKEN). Cancelling ctx stops the command (watching stops; the
// batches go on).
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now, terminal: isTerminal(stdout)}
	return e.run(ctx, args, getenv)
}

// isTerminal reports whether w is a terminal (a file whose descriptor is
// one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func (e *env) run(ctx context.Context, args []string, getenv func(string) string) int {
	e.g = globals{addr: cmpOr(getenv("BATCHCTL_ADDR"), DefaultAddr), token: getenv("BATCHCTL_TOKEN"), format: "text"}
	top := flag.NewFlagSet("batchctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	e.g.register(top, true)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.stdout, usageText)
			return ExitOK
		}
		return e.fail(usageError{err.Error()})
	}
	rest := top.Args()
	if len(rest) == 0 {
		return e.fail(usagef("no command"))
	}
	cmd, ok := commands[rest[0]]
	if !ok {
		if rest[0] == "help" {
			fmt.Fprint(e.stdout, usageText)
			return ExitOK
		}
		return e.fail(usagef("unknown command %q", rest[0]))
	}
	fs := flag.NewFlagSet("batchctl "+rest[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.g.register(fs, !cmd.ownO)
	run := cmd.setup(fs)
	pos, err := parseInterspersed(fs, rest[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(e.stdout, "usage: batchctl %s\n\nFlags:\n", cmd.usage)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		return ExitOK
	}
	if err != nil {
		return e.fail(usageError{err.Error()})
	}
	if e.g.format != "text" && e.g.format != "json" {
		return e.fail(usagef("-o must be text or json, not %q", e.g.format))
	}
	if err := e.dial(); err != nil {
		return e.fail(err)
	}
	defer func() { _ = e.conn.Close() }()
	if e.g.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.g.token)
	}
	return e.fail(run(ctx, e, pos))
}

// command is one subcommand: setup registers its flags on fs and returns
// what runs it with the positional arguments.
type command struct {
	usage string
	// ownO: the command's -o is its own (an output file), not the format.
	ownO  bool
	setup func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"get":     {usage: "get ID", setup: setupGet},
		"list":    {usage: "list [--limit N] [--all]", setup: setupList},
		"cancel":  {usage: "cancel ID", setup: setupCancel},
		"watch":   {usage: "watch ID [ID...]", setup: setupWatch},
		"results": {usage: "results ID [--kind output|errors|all] [-o out.jsonl]", ownO: true, setup: setupResults},
		"create": {usage: "create --file input.jsonl [--endpoint E] [--metadata k=v ...] [--watch] [--results out.jsonl]",
			setup: setupCreate},
	}
}

// parseInterspersed parses fs's flags wherever they are among args and
// returns the positional arguments ("--" ends the flags).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		// Parse stops at the first positional argument, or after a "--",
		// which ends the flags.
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" {
			return append(pos, left...), nil
		}
		if len(left) == 0 {
			return pos, nil
		}
		pos = append(pos, left[0])
		args = left[1:]
	}
}

// dial makes the client connection (lazily: nothing is sent yet).
func (e *env) dial() error {
	creds := insecure.NewCredentials()
	if e.g.tls || e.g.ca != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.g.ca != "" {
			pem, err := os.ReadFile(e.g.ca)
			if err != nil {
				return usagef("-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return usagef("-ca: no PEM certificate in %s", e.g.ca)
			}
			cfg.RootCAs = pool
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(e.g.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return usagef("-addr %q: %v", e.g.addr, err)
	}
	e.conn = conn
	return nil
}

func (e *env) batches() batchv1.BatchServiceClient { return batchv1.NewBatchServiceClient(e.conn) }
func (e *env) files() batchv1.FileServiceClient    { return batchv1.NewFileServiceClient(e.conn) }

func (e *env) json() bool { return e.g.format == "json" }

// fail prints err, if any, and returns the exit status it stands for.
func (e *env) fail(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "batchctl: %s\n(batchctl -h for help)\n", ue.msg)
		return ExitUsage
	}
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		fmt.Fprintln(e.stderr, "batchctl: interrupted")
		return ExitInterrupted
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			fmt.Fprintf(e.stderr, "batchctl: cannot reach the gateway at %s: %s\n", e.g.addr, st.Message())
			return ExitUsage
		case codes.Unknown:
		default:
			fmt.Fprintf(e.stderr, "batchctl: %s: %s\n", strings.ToLower(st.Code().String()), st.Message())
			return ExitFailed
		}
	}
	fmt.Fprintf(e.stderr, "batchctl: %v\n", err)
	return ExitFailed
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (e *env) stderrf(format string, args ...any) { fmt.Fprintf(e.stderr, format, args...) }
