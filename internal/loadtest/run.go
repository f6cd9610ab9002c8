package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
)

// Config configures Run. Zero fields get the defaults shown.
type Config struct {
	// Watchers is the number of gRPC WatchBatch streams (10000), opened
	// over Conns client connections (100), on Batches batches (100).
	Watchers, Conns, Batches int
	// SSE is the number of SSE watches, each on its own HTTP connection
	// (0: none).
	SSE int
	// Naive is the number of naive clients polling the upstream directly
	// (default Watchers; negative: none) over NaiveConns connections
	// (default Conns).
	Naive, NaiveConns int
	// Interval is the poll interval, of the gateway and of naive clients
	// (1s).
	Interval time.Duration
	// Duration is the steady measurement window of each phase (20s).
	Duration time.Duration
	// Settle is the wait after the watchers opened before the second RSS
	// reading and the window (5s).
	Settle time.Duration
	// Phase is the simulator's Phase. Zero picks one long enough for the
	// batches to stay in progress, changing, for the whole run.
	Phase time.Duration
	// Tick is the simulator clock's grid (100ms).
	Tick time.Duration
	// Heartbeat is the gateway's -watch-heartbeat (1h: no heartbeats).
	Heartbeat time.Duration
	// OpenParallel bounds the watchers opening at once (200).
	OpenParallel int
	// GatewayArgs are extra flags for the gateway process.
	GatewayArgs []string
	// Start starts a gateway. Required.
	Start StartFunc
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

func (c Config) withDefaults() Config {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.Watchers, 10000)
	def(&c.Conns, 100)
	def(&c.Batches, 100)
	def(&c.Naive, c.Watchers)
	def(&c.NaiveConns, c.Conns)
	def(&c.OpenParallel, 200)
	defD(&c.Interval, time.Second)
	defD(&c.Duration, 20*time.Second)
	defD(&c.Settle, 5*time.Second)
	defD(&c.Tick, 100*time.Millisecond)
	defD(&c.Heartbeat, time.Hour)
	if c.Phase == 0 {
		c.Phase = max(100*c.Interval, c.estimate()*5/4).Truncate(c.Tick)
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// grace is how long clients keep listening after a window, so that the
// changes of the window's last interval reach them.
func (c Config) grace() time.Duration { return 2*c.Interval + 500*time.Millisecond }

// estimate is a generous estimate of the run's length after the batches
// are created.
func (c Config) estimate() time.Duration {
	phases := 2
	if c.SSE > 0 {
		phases++
	}
	return time.Duration(phases)*(c.Duration+c.Settle+c.grace()+10*time.Second) + 10*time.Second
}

func (c Config) validate() error {
	switch {
	case c.Watchers < 1 || c.Conns < 1 || c.Batches < 1:
		return errors.New("watchers, conns and batches must be positive")
	case c.SSE < 0:
		return errors.New("sse must not be negative")
	case c.Interval < 100*time.Millisecond:
		return errors.New("the interval must be at least 100ms (the gateway's minimum)")
	case c.Duration < c.Interval:
		return errors.New("the duration must be at least one interval")
	case c.Tick <= 0 || c.Tick > c.Interval || c.Tick%time.Microsecond != 0:
		return errors.New("the tick must be positive, a whole number of µs and at most the interval")
	case c.Phase < c.Tick:
		return errors.New("the phase must be at least one tick")
	case c.Start == nil:
		return errors.New("no gateway starter")
	}
	return nil
}

// WatchResult is the outcome of one watch phase (gRPC or SSE).
type WatchResult struct {
	// Watchers and Conns are how many watch streams were opened, over how
	// many connections.
	Watchers, Conns int
	// Opened is how long opening them took; OpenErrors how many failed.
	Opened     time.Duration
	OpenErrors int
	// Errors counts watchers that ended on their own, by error.
	Errors map[string]int
	// Heartbeats is the number of heartbeat events received.
	Heartbeats int
	// RSSBefore is the gateway's RSS before the watchers opened, RSSAfter
	// after they opened and Settle passed; RSSMean and RSSPeak are the mean
	// and the highest of the readings taken every second of the window
	// (bytes; 0 when not measurable).
	RSSBefore, RSSAfter, RSSMean, RSSPeak int64
	// CPU is the gateway's CPU time during the window (0 when not
	// measurable).
	CPU time.Duration
	// Usage is the CPU time of the load tool and of the whole machine
	// during the window.
	Usage Usage
	// Window is the steady window.
	Window Window
	// Polls counts the gateway's upstream polls in the window.
	Polls Polls
	// Deliveries measures the watchers.
	Deliveries Deliveries

	logs []*ClientLog
}

// RSSPerWatcher is (RSSAfter - RSSBefore) / Watchers, in bytes.
func (w *WatchResult) RSSPerWatcher() float64 { return w.perWatcher(w.RSSAfter) }

// RSSMeanPerWatcher is (RSSMean - RSSBefore) / Watchers, in bytes.
func (w *WatchResult) RSSMeanPerWatcher() float64 { return w.perWatcher(w.RSSMean) }

// RSSPeakPerWatcher is (RSSPeak - RSSBefore) / Watchers, in bytes.
func (w *WatchResult) RSSPeakPerWatcher() float64 { return w.perWatcher(w.RSSPeak) }

func (w *WatchResult) perWatcher(rss int64) float64 {
	if w.RSSBefore == 0 || rss == 0 || w.Watchers == 0 {
		return 0
	}
	return float64(rss-w.RSSBefore) / float64(w.Watchers)
}

// NaiveResult is the outcome of the naive phase.
type NaiveResult struct {
	Clients, Conns int
	// Failures counts failed polls.
	Failures int
	// Usage is the CPU time of the load tool and of the whole machine
	// during the window.
	Usage  Usage
	Window Window
	// Requests counts the upstream requests in the window.
	Requests Polls
	// Deliveries measures the clients (staleness only).
	Deliveries Deliveries

	logs []*ClientLog
}

// Usage is CPU time spent during a window.
type Usage struct {
	// LoadTool is the load tool's own (upstream simulator and clients).
	LoadTool time.Duration
	// Machine is all CPUs' busy time, every process included; zero when
	// not measurable.
	Machine time.Duration
}

// usageMeter measures Usage from its creation.
type usageMeter struct{ self, machine time.Duration }

func startUsage() usageMeter {
	m, _ := machineCPU()
	return usageMeter{self: selfCPU(), machine: m}
}

func (u usageMeter) stop() Usage {
	out := Usage{LoadTool: selfCPU() - u.self}
	if m, err := machineCPU(); err == nil && u.machine > 0 {
		out.Machine = m - u.machine
	}
	return out
}

// Result is the outcome of Run.
type Result struct {
	Config Config
	// GRPC, SSE and Naive are the phases' results; SSE and Naive are nil
	// when not run. SSEError says why SSE could not be measured.
	GRPC     *WatchResult
	SSE      *WatchResult
	SSEError string
	Naive    *NaiveResult
	// LoadCPU is the load tool's own CPU time over the whole run.
	LoadCPU time.Duration
	// Elapsed is the whole run.
	Elapsed time.Duration
}

// Run runs the load test: upstream, gRPC phase, SSE phase, naive phase,
// then the analysis.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	cpu0 := selfCPU()
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s  "+format+"\n", append([]any{time.Since(start).Truncate(100 * time.Millisecond)}, args...)...)
	}
	res := &Result{Config: cfg}

	up, err := StartUpstream(ctx, UpstreamOptions{Batches: cfg.Batches, Phase: cfg.Phase, Tick: cfg.Tick})
	if err != nil {
		return nil, err
	}
	defer up.Close()
	logf("upstream simulator on %s: %d batches in progress, phase %s, clock tick %s", up.URL, cfg.Batches, cfg.Phase, cfg.Tick)
	spec := GatewaySpec{UpstreamURL: up.URL, UpstreamKey: up.Key, PollInterval: cfg.Interval, Heartbeat: cfg.Heartbeat, Args: cfg.GatewayArgs}

	res.GRPC, err = runWatch(ctx, cfg, up, spec, PhaseGRPC, logf)
	if err != nil {
		return nil, fmt.Errorf("gRPC phase: %w", err)
	}
	if cfg.SSE > 0 {
		res.SSE, err = runWatch(ctx, cfg, up, spec, PhaseSSE, logf)
		if errors.Is(err, ErrNoSSE) {
			res.SSE, res.SSEError = nil, err.Error()
			logf("SSE phase skipped: %v", err)
		} else if err != nil {
			return nil, fmt.Errorf("SSE phase: %w", err)
		}
	}
	if cfg.Naive > 0 {
		res.Naive, err = runNaive(ctx, cfg, up, logf)
		if err != nil {
			return nil, fmt.Errorf("naive phase: %w", err)
		}
	}
	_ = up.Close()
	res.LoadCPU = selfCPU() - cpu0

	logf("replaying the upstream history")
	tl, err := up.Timelines(time.Now().UnixMicro())
	if err != nil {
		return nil, err
	}
	reqs := up.Requests()
	logf("analysing")
	for _, w := range []*WatchResult{res.GRPC, res.SSE} {
		if w == nil {
			continue
		}
		ph := PhaseGRPC
		if w == res.SSE {
			ph = PhaseSSE
		}
		w.Polls = CountPolls(reqs, ph, w.Window, tl)
		w.Deliveries = Analyze(w.logs, reqs, ph, w.Window, tl)
		w.logs = nil
	}
	if n := res.Naive; n != nil {
		n.Requests = CountPolls(reqs, PhaseNaive, n.Window, tl)
		n.Deliveries = Analyze(n.logs, nil, PhaseNaive, n.Window, tl)
		n.logs = nil
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// sleep waits for d or ctx.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func runWatch(ctx context.Context, cfg Config, up *Upstream, spec GatewaySpec, phase int32, logf func(string, ...any)) (_ *WatchResult, err error) {
	name := "gRPC"
	if phase == PhaseSSE {
		name = "SSE"
	}
	up.SetPhase(phase, true)
	defer up.SetPhase(PhaseSetup, false)
	tgt, err := cfg.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := tgt.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	logf("%s: gateway serving gRPC on %s, HTTP on %s", name, tgt.GRPCAddr(), tgt.HTTPAddr())

	if phase == PhaseSSE {
		if err := ProbeSSE(ctx, tgt.HTTPAddr(), up.IDs[0]); err != nil {
			return nil, err
		}
	}
	r := &WatchResult{}
	if _, err := tgt.RSS(); err == nil {
		// Let the fresh process settle before its baseline.
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
		r.RSSBefore, _ = tgt.RSS()
	}

	var cs *Clients
	if phase == PhaseGRPC {
		r.Watchers, r.Conns = cfg.Watchers, cfg.Conns
		cs, err = OpenGRPC(ctx, tgt.GRPCAddr(), cfg.Conns, cfg.Watchers, cfg.OpenParallel, up.IDs)
	} else {
		r.Watchers, r.Conns = cfg.SSE, cfg.SSE
		cs, err = OpenSSE(ctx, tgt.HTTPAddr(), cfg.SSE, cfg.OpenParallel, up.IDs)
	}
	if err != nil {
		return nil, err
	}
	r.Opened, r.OpenErrors = cs.Opened, cs.OpenErrors
	logf("%s: %d watchers open over %d connections in %s (%d failed); RSS before %s", name, r.Watchers, r.Conns, cs.Opened.Round(time.Millisecond), cs.OpenErrors, mib(r.RSSBefore))
	if r.OpenErrors > 0 {
		cs.Stop()
		return nil, fmt.Errorf("%d of %d watchers failed to open: %v", r.OpenErrors, r.Watchers, cs.Errors())
	}

	if err := sleep(ctx, cfg.Settle); err != nil {
		cs.Stop()
		return nil, err
	}
	r.RSSAfter, _ = tgt.RSS()
	r.RSSPeak = r.RSSAfter
	cpuStart, _ := tgt.CPU()
	usage := startUsage()
	from := time.Now()
	logf("%s: RSS after %s (%+.1f KiB per watcher); steady window of %s", name, mib(r.RSSAfter), r.RSSPerWatcher()/1024, cfg.Duration)
	to := from.Add(cfg.Duration)
	var sum, n int64
	for time.Now().Before(to) {
		if err := sleep(ctx, min(time.Second, time.Until(to))); err != nil {
			cs.Stop()
			return nil, err
		}
		if v, err := tgt.RSS(); err == nil {
			r.RSSPeak = max(r.RSSPeak, v)
			sum, n = sum+v, n+1
		}
	}
	if n > 0 {
		r.RSSMean = sum / n
	}
	r.Usage = usage.stop()
	if c, err := tgt.CPU(); err == nil {
		r.CPU = c - cpuStart
	}
	r.Window = Window{From: from.UnixMicro(), To: to.UnixMicro(), Interval: cfg.Interval}
	if err := sleep(ctx, cfg.grace()); err != nil {
		cs.Stop()
		return nil, err
	}
	cs.Stop()
	r.Errors = cs.Errors()
	for _, l := range cs.Logs {
		r.Heartbeats += l.Heartbeats
	}
	r.logs = cs.Logs
	logf("%s: done; gateway CPU in the window %s; RSS in the window: mean %s, peak %s", name, r.CPU.Round(time.Millisecond), mib(r.RSSMean), mib(r.RSSPeak))
	return r, nil
}

func runNaive(ctx context.Context, cfg Config, up *Upstream, logf func(string, ...any)) (*NaiveResult, error) {
	up.SetPhase(PhaseNaive, false)
	defer up.SetPhase(PhaseSetup, false)
	r := &NaiveResult{Clients: cfg.Naive, Conns: cfg.NaiveConns}
	cs := StartNaive(ctx, up.URL, up.Key, cfg.NaiveConns, cfg.Naive, cfg.Interval, up.IDs)
	logf("naive: %d clients polling the upstream every %s over %d connections", cfg.Naive, cfg.Interval, cfg.NaiveConns)
	// All clients have started after one interval; give them one more.
	from := time.Now().Add(2 * cfg.Interval)
	to := from.Add(cfg.Duration)
	if err := sleep(ctx, time.Until(from)); err != nil {
		cs.Stop()
		return nil, err
	}
	usage := startUsage()
	if err := sleep(ctx, time.Until(to)); err != nil {
		cs.Stop()
		return nil, err
	}
	r.Usage = usage.stop()
	if err := sleep(ctx, cfg.grace()); err != nil {
		cs.Stop()
		return nil, err
	}
	cs.Stop()
	r.Window = Window{From: from.UnixMicro(), To: to.UnixMicro(), Interval: cfg.Interval}
	for _, l := range cs.Logs {
		r.Failures += l.Failures
	}
	r.logs = cs.Logs
	logf("naive: done (%d failed polls)", r.Failures)
	return r, nil
}

// selfCPU returns the load tool's own CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit, for the
// load tool and the gateway it starts (children inherit it), and returns
// the new soft limit.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Cur, nil
}

func mib(b int64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
