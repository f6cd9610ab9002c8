package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
)

// FloorSetup says what RunFloor starts, each as its own process.
type FloorSetup struct {
	// GatewayBin and SimulatorBin are built ./cmd/gateway and
	// ./cmd/simulator binaries.
	GatewayBin, SimulatorBin string
	// CannedCmd is the command line of a process that serves the canned
	// hops: it runs ServeCanned with CannedFlags' files (cmd/loadget's
	// "canned" subcommand).
	CannedCmd []string
	// BatchID is the batch every call gets. Default: the simulator's
	// batch_demo_completed.
	BatchID string
	// Warmup, Rounds and Blocks are FloorConfig's.
	Warmup, Rounds, Blocks int
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// floorKey is the simulator's key in a floor run.
const floorKey = "sk-loadget"

// RunFloor starts a simulator, two gateways in front of it (cache off,
// and the default cache) and the canned hops, each as a separate process
// on loopback, then measures every target with MeasureFloor, and stops
// them all.
func RunFloor(ctx context.Context, s FloorSetup) (_ *FloorResult, err error) {
	logf := func(format string, a ...any) {
		if s.Log != nil {
			fmt.Fprintf(s.Log, format+"\n", a...)
		}
	}
	if s.BatchID == "" {
		s.BatchID = "batch_demo_completed"
	}
	var stops []func() error
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			if serr := stops[i](); serr != nil && err == nil {
				err = serr
			}
		}
	}()

	sim, err := startSimulator(ctx, s.SimulatorBin)
	if err != nil {
		return nil, err
	}
	stops = append(stops, sim.Stop)
	logf("simulator on %s", sim.httpAddr)
	defaults := config.Defaults()
	spec := GatewaySpec{
		UpstreamURL: "http://" + sim.httpAddr, UpstreamKey: floorKey,
		PollInterval: defaults.Watch.PollInterval, Heartbeat: defaults.Service.Heartbeat,
	}
	gateways := make([]*proc, 2)
	for i, args := range [][]string{{"-cache-ttl", "-1s"}, nil} {
		spec.Args = args
		g, err := startProcess(ctx, s.GatewayBin, spec)
		if err != nil {
			return nil, err
		}
		stops = append(stops, g.Stop)
		gateways[i] = g
	}
	uncached, cached := gateways[0], gateways[1]
	logf("gateways on %s and %s (cache off), %s and %s (default cache)", uncached.grpcAddr, uncached.httpAddr, cached.grpcAddr, cached.httpAddr)

	// The canned hops answer with the gateway's own bytes.
	hc := newHopClient()
	contentType, body, err := getBody(ctx, hc, "http://"+uncached.httpAddr+"/v1/batches/"+s.BatchID, "")
	hc.CloseIdleConnections()
	if err != nil {
		return nil, fmt.Errorf("the gateway's REST answer: %w", err)
	}
	resp, err := grpcGet(ctx, uncached.grpcAddr, s.BatchID)
	if err != nil {
		return nil, fmt.Errorf("the gateway's gRPC answer: %w", err)
	}
	canned, err := startCanned(ctx, s.CannedCmd, contentType, body, resp)
	if err != nil {
		return nil, err
	}
	stops = append(stops, canned.Stop)
	logf("canned hops on %s (HTTP) and %s (gRPC)", canned.httpAddr, canned.grpcAddr)

	calls := map[string]Call{}
	for name, target := range map[string]struct{ addr, key string }{
		Direct:       {sim.httpAddr, floorKey},
		CannedHTTP:   {canned.httpAddr, ""},
		RESTUncached: {uncached.httpAddr, ""},
		RESTCached:   {cached.httpAddr, ""},
	} {
		c := newHopClient()
		stops = append(stops, func() error { c.CloseIdleConnections(); return nil })
		url := "http://" + target.addr + "/v1/batches/" + s.BatchID
		calls[name] = func(ctx context.Context) error {
			_, _, err := getBody(ctx, c, url, target.key)
			return err
		}
	}
	for name, addr := range map[string]string{CannedGRPC: canned.grpcAddr, GRPCUncached: uncached.grpcAddr, GRPCCached: cached.grpcAddr} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		stops = append(stops, conn.Close)
		client := batchv1.NewBatchServiceClient(conn)
		req := &batchv1.GetBatchRequest{BatchId: s.BatchID}
		calls[name] = func(ctx context.Context) error {
			_, err := client.GetBatch(ctx, req, grpc.WaitForReady(true))
			return err
		}
	}
	logf("%d warm-up and %d counted rounds of %d calls", s.Warmup, s.Rounds, len(calls))
	return MeasureFloor(ctx, FloorConfig{Calls: calls, Warmup: s.Warmup, Rounds: s.Rounds, Blocks: s.Blocks})
}

// newHopClient returns an HTTP client that keeps its connection to one
// target.
func newHopClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
}

// getBody GETs url (with key as Bearer, when not empty) and returns the
// Content-Type and body of a 200 answer.
func getBody(ctx context.Context, c *http.Client, url, key string) (string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return resp.Header.Get("Content-Type"), body, nil
}

// grpcGet returns the GetBatch answer of the gRPC server at addr.
func grpcGet(ctx context.Context, addr, id string) (*batchv1.GetBatchResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	return batchv1.NewBatchServiceClient(conn).GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: id}, grpc.WaitForReady(true))
}

// startSimulator runs bin on a free loopback port and waits for its
// /healthz.
func startSimulator(ctx context.Context, bin string) (*proc, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	p := &proc{name: "simulator", httpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), out: &tailBuffer{max: 16 << 10}}
	//nolint:noctx // stopped by signal in Stop, not by a context
	p.cmd = exec.Command(bin, "-addr", p.httpAddr, "-log-level", "warn")
	p.cmd.Env = append(os.Environ(), "SIMULATOR_API_KEY="+floorKey)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.start(); err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 30*time.Second, "/healthz"); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("simulator did not get ready: %w\n%s", err, p.out.String())
	}
	return p, nil
}

// CannedFlags are the flags of a canned-hops process: the files of its
// REST body and its gRPC response, and the REST Content-Type.
type CannedFlags struct {
	BodyFile, ResponseFile, ContentType string
}

// Args returns f as command-line flags.
func (f CannedFlags) Args() []string {
	return []string{"-body", f.BodyFile, "-response", f.ResponseFile, "-content-type", f.ContentType}
}

// cannedReady is the line a canned-hops process prints once it listens.
const cannedReady = "canned http=%s grpc=%s"

// startCanned writes the answers to files, runs cmd with their flags and
// waits for its ready line.
func startCanned(ctx context.Context, cmd []string, contentType string, body []byte, resp *batchv1.GetBatchResponse) (*proc, error) {
	if len(cmd) == 0 {
		return nil, errors.New("loadtest: no command for the canned hops")
	}
	dir, err := os.MkdirTemp("", "loadget-")
	if err != nil {
		return nil, err
	}
	// The process reads the files before it says it is ready.
	defer func() { _ = os.RemoveAll(dir) }()
	f := CannedFlags{BodyFile: filepath.Join(dir, "body"), ResponseFile: filepath.Join(dir, "response"), ContentType: contentType}
	msg, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.BodyFile, body, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.ResponseFile, msg, 0o600); err != nil {
		return nil, err
	}
	c := &proc{name: "canned hops", out: &tailBuffer{max: 16 << 10}}
	//nolint:noctx,gosec // stopped by signal in Stop; cmd is the caller's own
	c.cmd = exec.Command(cmd[0], append(slices.Clone(cmd[1:]), f.Args()...)...)
	ready := &firstLine{line: make(chan string, 1)}
	c.cmd.Stdout, c.cmd.Stderr = ready, c.out
	if err := c.start(); err != nil {
		return nil, err
	}
	select {
	case l := <-ready.line:
		if _, err := fmt.Sscanf(l, cannedReady, &c.httpAddr, &c.grpcAddr); err != nil {
			_ = c.Stop()
			return nil, fmt.Errorf("the canned hops' process said %q: %w\n%s", l, err, c.out.String())
		}
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("the canned hops' process exited: %w\n%s", c.waitErr, c.out.String())
	case <-ctx.Done():
		_ = c.Stop()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		_ = c.Stop()
		return nil, fmt.Errorf("the canned hops did not start within 30s\n%s", c.out.String())
	}
}

// firstLine is a process's output that sends its first line (without the
// newline) to line, once, and discards the rest.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	line chan string // buffered, 1
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sent {
		f.buf = append(f.buf, p...)
		if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
			f.line <- strings.TrimSpace(string(f.buf[:i]))
			f.sent, f.buf = true, nil
		}
	}
	return len(p), nil
}
