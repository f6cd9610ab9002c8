package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GatewaySpec is what a gateway under test is started with.
type GatewaySpec struct {
	// UpstreamURL and UpstreamKey name the upstream (the simulator).
	UpstreamURL, UpstreamKey string
	// PollInterval is the gateway's -poll-interval.
	PollInterval time.Duration
	// Heartbeat is the gateway's -watch-heartbeat.
	Heartbeat time.Duration
	// ClusterNATSURL is the gateway's -cluster-nats-url; empty: none.
	ClusterNATSURL string
	// Args are further command-line flags for a gateway process, after
	// the load tool's own (a flag given twice takes the last value).
	Args []string
}

// Target is a running gateway.
type Target interface {
	// GRPCAddr and HTTPAddr are the loopback addresses it serves.
	GRPCAddr() string
	HTTPAddr() string
	// RSS returns its resident set size in bytes, when measurable.
	RSS() (int64, error)
	// CPU returns the CPU time it used so far, when measurable.
	CPU() (time.Duration, error)
	// Stop shuts it down and waits for it.
	Stop() error
}

// Killer is a Target that can be made to end abruptly (SIGKILL).
type Killer interface {
	Kill() error
}

// StartFunc starts a gateway.
type StartFunc func(ctx context.Context, spec GatewaySpec) (Target, error)

// BuildGateway builds ./cmd/gateway of the module in dir into a temporary
// directory and returns the binary's path and a function removing it.
func BuildGateway(ctx context.Context, dir string) (string, func(), error) {
	return BuildCommand(ctx, dir, "gateway")
}

// BuildCommand builds ./cmd/<name> of the module in dir into a temporary
// directory and returns the binary's path and a function removing it.
func BuildCommand(ctx context.Context, dir, name string) (string, func(), error) {
	tmp, err := os.MkdirTemp("", "loadtest-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	bin := filepath.Join(tmp, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
	}
	return bin, cleanup, nil
}

// ProcessStarter returns a StartFunc that runs bin as a child process on
// free loopback ports, and waits until its /readyz answers 200.
func ProcessStarter(bin string) StartFunc {
	return func(ctx context.Context, spec GatewaySpec) (Target, error) {
		return startProcess(ctx, bin, spec)
	}
}

// proc is a child process: a gateway, or a helper of a floor run.
type proc struct {
	name               string // "gateway", … in errors
	cmd                *exec.Cmd
	grpcAddr, httpAddr string
	out                *tailBuffer
	done               chan struct{}
	waitErr            error
}

// start starts p.cmd and waits for it in the background.
func (p *proc) start() error {
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.done = make(chan struct{})
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

func startProcess(ctx context.Context, bin string, spec GatewaySpec) (*proc, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	p := &proc{
		name:     "gateway",
		grpcAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		httpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		out:      &tailBuffer{max: 64 << 10},
	}
	args := []string{
		"-upstream-url", spec.UpstreamURL,
		"-grpc-addr", p.grpcAddr,
		"-http-addr", p.httpAddr,
		"-poll-interval", spec.PollInterval.String(),
		"-watch-heartbeat", spec.Heartbeat.String(),
		"-watch-max-age", "24h",
		"-shutdown-timeout", "10s",
		"-log-level", "warn",
		// Loopback only, one caller: no caller credentials.
		"-auth", "none",
	}
	if spec.ClusterNATSURL != "" {
		args = append(args, "-cluster-nats-url", spec.ClusterNATSURL)
	}
	//nolint:noctx // the process is stopped by signal in Stop, not by a context
	p.cmd = exec.Command(bin, append(args, spec.Args...)...)
	// The key goes through the environment, as the gateway recommends.
	p.cmd.Env = append(os.Environ(), "UPSTREAM_API_KEY="+spec.UpstreamKey)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.start(); err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 30*time.Second, "/readyz"); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("gateway did not get ready: %w\n%s", err, p.out.String())
	}
	return p, nil
}

func (p *proc) GRPCAddr() string { return p.grpcAddr }
func (p *proc) HTTPAddr() string { return p.httpAddr }

// waitReady waits until GET path of p's HTTP address answers 200.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration, path string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr+path, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited: %w", p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RSS reads VmRSS from /proc/<pid>/status.
func (p *proc) RSS() (int64, error) {
	return readRSS(p.cmd.Process.Pid)
}

// CPU reads utime+stime from /proc/<pid>/stat.
func (p *proc) CPU() (time.Duration, error) {
	return readCPU(p.cmd.Process.Pid)
}

// Kill sends SIGKILL and waits for the process to end: a crash, no lease
// released.
func (p *proc) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Stop sends SIGTERM, waits up to 20s for a graceful exit, then kills.
func (p *proc) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 20s of SIGTERM; killed", p.name)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return fmt.Errorf("%s exited with %w\n%s", p.name, p.waitErr, p.out.String())
	}
	return p.waitErr
}

// readRSS returns VmRSS of pid in bytes.
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(data)
}

func parseVmRSS(status []byte) (int64, error) {
	for line := range strings.Lines(string(status)) {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, errors.New("no VmRSS line")
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux platform Go supports.
const clockTicks = 100

// readCPU returns utime+stime of pid (all threads).
func readCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// machineCPU returns the busy CPU time of the whole machine so far (all
// CPUs, from /proc/stat: everything but idle and iowait).
func machineCPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineCPU(data)
}

func parseMachineCPU(stat []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("no cpu line in /proc/stat")
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		// Fields: user nice system idle iowait irq softirq steal guest
		// guest_nice; guest time is already in user and nice.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// freePorts returns n distinct free loopback TCP ports. They are free when
// returned; another process may take one before it is used.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // picks a free port and closes at once
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
