package loadtest

import (
	"bufio"
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
	"syscall"
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
	stops = append(stops, sim.stop)
	logf("simulator on %s", sim.addr)
	defaults := config.Defaults()
	spec := GatewaySpec{
		UpstreamURL: "http://" + sim.addr, UpstreamKey: floorKey,
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
	stops = append(stops, canned.stop)
	logf("canned hops on %s (HTTP) and %s (gRPC)", canned.httpAddr, canned.grpcAddr)

	calls := map[string]Call{}
	for name, target := range map[string]struct{ addr, key string }{
		Direct:       {sim.addr, floorKey},
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

// child is a helper process of a floor run.
type child struct {
	cmd                *exec.Cmd
	addr               string // the simulator's
	httpAddr, grpcAddr string // the canned hops'
	out                *tailBuffer
	done               chan struct{}
	waitErr            error
}

func (c *child) start() error {
	if err := c.cmd.Start(); err != nil {
		return err
	}
	c.done = make(chan struct{})
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	return nil
}

// stop sends SIGTERM and waits up to 10 s, then kills.
func (c *child) stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within 10s of SIGTERM; killed", filepath.Base(c.cmd.Path))
	}
}

// startSimulator runs bin on a free loopback port and waits for its
// /healthz.
func startSimulator(ctx context.Context, bin string) (*child, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	c := &child{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), out: &tailBuffer{max: 16 << 10}}
	//nolint:noctx // stopped by signal in stop, not by a context
	c.cmd = exec.Command(bin, "-addr", c.addr, "-log-level", "warn")
	c.cmd.Env = append(os.Environ(), "SIMULATOR_API_KEY="+floorKey)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.start(); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, err := getBody(ctx, hc, "http://"+c.addr+"/healthz", ""); err == nil {
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("the simulator exited: %w\n%s", c.waitErr, c.out.String())
		case <-ctx.Done():
			_ = c.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = c.stop()
			return nil, fmt.Errorf("the simulator did not answer /healthz within 30s\n%s", c.out.String())
		}
	}
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
func startCanned(ctx context.Context, cmd []string, contentType string, body []byte, resp *batchv1.GetBatchResponse) (*child, error) {
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
	c := &child{out: &tailBuffer{max: 16 << 10}}
	//nolint:noctx,gosec // stopped by signal in stop; cmd is the caller's own
	c.cmd = exec.Command(cmd[0], append(slices.Clone(cmd[1:]), f.Args()...)...)
	c.cmd.Stderr = c.out
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if _, err := fmt.Sscanf(strings.TrimSpace(l), cannedReady, &c.httpAddr, &c.grpcAddr); err != nil {
			_ = c.stop()
			return nil, fmt.Errorf("the canned hops' process said %q: %w\n%s", strings.TrimSpace(l), err, c.out.String())
		}
		return c, nil
	case <-ctx.Done():
		_ = c.stop()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		_ = c.stop()
		return nil, fmt.Errorf("the canned hops did not start within 30s\n%s", c.out.String())
	}
}
