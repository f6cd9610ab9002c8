package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/testutil"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// the tests here can run the gateway as a real process and signal it.
const runMainEnv = "BATCHGATE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main() // exits 1 on error, returns after a clean shutdown
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Bounds on waiting for the child; passing runs never reach them.
const (
	readyLimit = 60 * time.Second // the -race binary starting up
	exitLimit  = 60 * time.Second // SIGTERM to exit, shutdown timeout 30s
	eventLimit = 30 * time.Second
)

// gatewayProc is the gateway running as a child process.
type gatewayProc struct {
	cmd      *exec.Cmd
	stderr   *lockedBuffer
	exited   chan struct{} // closed when the process has exited
	waitErr  error         // cmd.Wait's error, set before exited closes
	grpcAddr string
	httpAddr string
}

// lockedBuffer is a concurrency-safe log sink.
type lockedBuffer = testutil.SyncBuffer

// childEnv is this process's environment without the gateway's own
// variables (as listed in -h) and OpenTelemetry's, so that the developer's
// environment cannot change what the child does.
func childEnv(t *testing.T) []string {
	t.Helper()
	var help strings.Builder
	if _, err := config.Load([]string{"-h"}, nil, &help); err == nil {
		t.Fatal("-h did not print the help")
	}
	drop := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(\$([A-Z0-9_]+)\)`).FindAllStringSubmatch(help.String(), -1) {
		drop[m[1]] = true
	}
	if !drop["UPSTREAM_URL"] || !drop["AUTH_MODE"] {
		t.Fatalf("found only %v in the help", drop)
	}
	// A -race binary sleeps a second before exiting unless told not to.
	gorace := "atexit_sleep_ms=0"
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "GORACE":
			gorace = v + " " + gorace
		case !drop[k] && !strings.HasPrefix(k, "OTEL_") && k != runMainEnv:
			env = append(env, kv)
		}
	}
	return append(env, runMainEnv+"=1", "GORACE="+gorace)
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runGateway starts the test binary as the gateway with args and waits for
// it to exit, returning its exit code and stderr.
func runGateway(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := spawn(t, args...)
	select {
	case <-p.exited:
	case <-time.After(exitLimit):
		t.Fatalf("the gateway did not exit; stderr:\n%s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode(), p.stderr.String()
}

func spawn(t *testing.T, args ...string) *gatewayProc {
	t.Helper()
	p := &gatewayProc{stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = childEnv(t)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", p.stderr)
		}
	})
	return p
}

// startGateway runs the gateway on free loopback ports with args and waits
// until /readyz answers 200. It retries with other ports if one was taken
// in the meantime.
func startGateway(t *testing.T, args ...string) *gatewayProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
		p := spawn(t, append([]string{"-grpc-addr", grpcAddr, "-http-addr", httpAddr}, args...)...)
		p.grpcAddr, p.httpAddr = grpcAddr, httpAddr
		err := p.waitReady()
		if err == nil {
			return p
		}
		if attempt < 3 && strings.Contains(p.stderr.String(), "address already in use") {
			continue
		}
		t.Fatalf("the gateway did not become ready: %v; stderr:\n%s", err, p.stderr)
	}
}

// readyz returns the status of GET /readyz, or 0 when there is no answer.
func (p *gatewayProc) readyz() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr+"/readyz", nil)
	req.Close = true // no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *gatewayProc) waitReady() error {
	deadline := time.Now().Add(readyLimit)
	for p.readyz() != http.StatusOK {
		select {
		case <-p.exited:
			return errors.New("the gateway exited: " + p.waitErrString())
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (p *gatewayProc) waitErrString() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}

func (p *gatewayProc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits for the process to exit and returns its exit code.
func (p *gatewayProc) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(exitLimit):
		t.Fatal("the gateway did not exit after SIGTERM")
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		t.Fatalf("the gateway was killed by %v", ws.Signal())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *gatewayProc) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// grpcStream is a gRPC watch read in the background.
type grpcStream struct {
	events chan *batchv1.WatchBatchResponse
	done   chan error
}

func openGRPCWatch(t *testing.T, client batchv1.BatchServiceClient, token, id string) *grpcStream {
	t.Helper()
	stream, err := client.WatchBatch(withToken(t.Context(), token), &batchv1.WatchBatchRequest{BatchId: id})
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcStream{}
	s.events, s.done = testutil.Pump(stream, 256)
	ev, err := testutil.Next(s.events, s.done, eventLimit)
	if err != nil {
		t.Fatalf("gRPC watch: no snapshot: %v", err)
	}
	if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || ev.GetTerminal() {
		t.Fatalf("first event %v, want a snapshot that is not terminal", ev)
	}
	return s
}

// end waits for the stream's end, skipping change and heartbeat events.
func (s *grpcStream) end(t *testing.T) error {
	t.Helper()
	deadline := time.Now().Add(eventLimit)
	for {
		ev, err := testutil.Next(s.events, s.done, time.Until(deadline))
		switch {
		case errors.Is(err, testutil.ErrNoMessage):
			t.Fatal("the gRPC watch did not end")
		case err != nil:
			return err
		case ev.GetTerminal():
			t.Fatalf("unexpected terminal event %v", ev)
		}
	}
}

// restStream is a REST NDJSON watch read in the background.
type restStream struct {
	lines chan map[string]any
	done  chan error
}

func openRESTWatch(t *testing.T, hc *http.Client, p *gatewayProc, token, id string) *restStream {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.httpAddr+"/v1/batches/"+id+"/watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("REST watch: %d %s", resp.StatusCode, body)
	}
	s := &restStream{lines: make(chan map[string]any, 256), done: make(chan error, 1)}
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				s.done <- err
				return
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				s.done <- errors.New("bad line " + string(line))
				return
			}
			s.lines <- m
		}
	}()
	m, err := testutil.Next(s.lines, s.done, eventLimit)
	if err != nil {
		t.Fatalf("REST watch: no snapshot: %v", err)
	}
	if m["type"] != "snapshot" || m["terminal"] != false {
		t.Fatalf("first REST event %v, want a snapshot that is not terminal", m)
	}
	return s
}

// last returns the stream's last line, once the body has ended cleanly.
func (s *restStream) last(t *testing.T) map[string]any {
	t.Helper()
	timeout := time.After(eventLimit)
	var last map[string]any
	for {
		select {
		case m := <-s.lines:
			last = m
		case err := <-s.done:
			for len(s.lines) > 0 {
				last = <-s.lines
			}
			if !errors.Is(err, io.EOF) {
				t.Fatalf("the REST watch ended with %v (last line %v), want the end of the body", err, last)
			}
			return last
		case <-timeout:
			t.Fatal("the REST watch did not end")
		}
	}
}

// TestSIGTERMWithLiveWatches runs the demo gateway as a process, holds a
// gRPC and a REST watch open on a batch that stays in progress for
// minutes, sends SIGHUP (the process stays up; in key mode it reloads the
// tokens file) and then SIGTERM: both watches end with UNAVAILABLE (the
// REST one with a final 503 error event), readiness stops answering 200,
// and the process exits 0.
func TestSIGTERMWithLiveWatches(t *testing.T) {
	t.Parallel()
	const (
		oldToken = "tok-sigterm-test-OLD-0001"
		newToken = "tok-sigterm-test-NEW-0002"
	)
	for _, mode := range []string{"none", "key"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"-demo", "-shutdown-timeout", "30s", "-log-level", "debug"}
			token, tokens := "", ""
			if mode == "key" {
				token = oldToken
				tokens = filepath.Join(t.TempDir(), "tokens")
				writeFile(t, tokens, "svc "+oldToken+" all\n")
				args = append(args, "-client-tokens-file", tokens)
			}
			p := startGateway(t, args...)
			conn := p.dial(t)
			client := batchv1.NewBatchServiceClient(conn)
			hc := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(hc.CloseIdleConnections)

			gw := openGRPCWatch(t, client, token, simulator.DemoValidating)
			rw := openRESTWatch(t, hc, p, token, simulator.DemoValidating)

			get := func(token string) error {
				_, err := client.GetBatch(withToken(t.Context(), token), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
				return err
			}
			if err := get(token); err != nil {
				t.Fatalf("GetBatch: %v", err)
			}

			p.signal(t, syscall.SIGHUP)
			if mode == "key" {
				// The reload is seen when the new token is let in.
				writeFile(t, tokens, "svc "+newToken+" all\n")
				p.signal(t, syscall.SIGHUP)
				deadline := time.Now().Add(eventLimit)
				for err := get(newToken); err != nil; err = get(newToken) {
					if status.Code(err) != codes.Unauthenticated || time.Now().After(deadline) {
						t.Fatalf("GetBatch with the new token after SIGHUP: %v", err)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err := get(oldToken); status.Code(err) != codes.Unauthenticated {
					t.Fatalf("GetBatch with the old token after the reload: %v, want Unauthenticated", err)
				}
				// A broken file is refused; the tokens in force stay.
				writeFile(t, tokens, "svc short\n")
				p.signal(t, syscall.SIGHUP)
				deadline = time.Now().Add(eventLimit)
				for !strings.Contains(p.stderr.String(), "reloading the client tokens file failed") {
					if time.Now().After(deadline) {
						t.Fatal("no log line for the failed reload")
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err := get(newToken); err != nil {
					t.Fatalf("GetBatch with the new token after a failed reload: %v", err)
				}
			}
			// Still up and ready, and the watches opened before are still
			// open (with the old token, in key mode: a reload does not
			// cut streams already admitted).
			if code := p.readyz(); code != http.StatusOK {
				t.Fatalf("/readyz after SIGHUP: %d", code)
			}
			select {
			case err := <-gw.done:
				t.Fatalf("the gRPC watch ended after SIGHUP: %v", err)
			case err := <-rw.done:
				t.Fatalf("the REST watch ended after SIGHUP: %v", err)
			case <-p.exited:
				t.Fatalf("the gateway exited after SIGHUP: %v", p.waitErrString())
			default:
			}

			p.signal(t, syscall.SIGTERM)

			err := gw.end(t)
			st := status.Convert(err)
			if st.Code() != codes.Unavailable {
				t.Errorf("the gRPC watch ended with %v, want UNAVAILABLE", err)
			}
			var reason string
			var retry time.Duration
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					reason = d.GetReason()
				case *errdetails.RetryInfo:
					retry = d.GetRetryDelay().AsDuration()
				}
			}
			// Unavailable from the transport closing (no reason) would
			// mean the stream was cut rather than ended.
			if reason != apierr.ReasonShuttingDown || retry <= 0 {
				t.Errorf("the gRPC watch ended with reason %q and retry %v, want %s with a retry delay", reason, retry, apierr.ReasonShuttingDown)
			}

			last := rw.last(t)
			if last["type"] != "error" || last["http_status"] != float64(http.StatusServiceUnavailable) {
				t.Errorf("the REST watch's last line %v, want an error event with http_status 503", last)
			}

			deadline := time.Now().Add(exitLimit)
			for p.readyz() == http.StatusOK {
				if time.Now().After(deadline) {
					t.Fatal("/readyz still answers 200 after SIGTERM")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if code := p.waitExit(t); code != 0 {
				t.Fatalf("exit code %d after SIGTERM, want 0", code)
			}
			out := p.stderr.String()
			for _, want := range []string{"shutting down", "stopped"} {
				if !strings.Contains(out, want) {
					t.Errorf("the logs lack %q", want)
				}
			}
			for _, secret := range []string{oldToken, newToken} {
				if strings.Contains(out, secret) {
					t.Errorf("the logs contain the token %s", secret)
				}
			}
		})
	}
}

// TestMainNeedsAnUpstream: without -demo or an upstream the process exits
// 1 and says to set -upstream-url.
func TestMainNeedsAnUpstream(t *testing.T) {
	t.Parallel()
	code, stderr := runGateway(t)
	if code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "-upstream-url") {
		t.Fatalf("stderr does not name -upstream-url:\n%s", stderr)
	}
}

// TestMainBadFlagExits: an unknown flag, a bad value and -h.
func TestMainBadFlagExits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-no-such-flag"}, 1, "no-such-flag"},
		{[]string{"-demo", "-auth", "sometimes"}, 1, "-auth must be key, passthrough or none"},
		{[]string{"-h"}, 0, "-upstream-url"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stderr := runGateway(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit code %d, stderr:\n%s\nwant exit code %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

// TestMainJSONLogs: with -log-format json every line the process writes
// is a JSON object.
func TestMainJSONLogs(t *testing.T) {
	t.Parallel()
	p := startGateway(t, "-demo", "-log-format", "json")
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := p.stderr.String()
	n := 0
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["msg"] == nil {
			t.Fatalf("line %q is not a JSON log line (%v)", line, err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no log lines")
	}
}

// TestSIGTERMEndsHealthWatches: a gRPC health Watch stream (what gRPC
// clients with health checking keep open) sees NOT_SERVING when SIGTERM
// arrives and then ends, so that it does not hold graceful shutdown up
// for the whole shutdown timeout.
func TestSIGTERMEndsHealthWatches(t *testing.T) {
	t.Parallel()
	// A shutdown timeout far beyond exitLimit: a held-up shutdown fails
	// the test rather than finishing late.
	p := startGateway(t, "-demo", "-shutdown-timeout", "10m")
	conn := p.dial(t)
	hw, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := hw.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v, %v", r, err)
	}
	p.signal(t, syscall.SIGTERM)
	if r, err := hw.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health watch after SIGTERM: %v, %v; want NOT_SERVING", r, err)
	}
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, err := hw.Recv(); err == nil {
		t.Fatal("the health watch did not end")
	}
}

// writeFile replaces the file at path atomically, so that a reload never
// reads it half-written.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
