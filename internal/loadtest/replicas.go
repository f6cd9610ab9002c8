package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is a NATS server with JetStream in the load tool's process, on a
// free loopback port and a temporary store directory.
type NATS struct {
	// URL is nats://127.0.0.1:<port>.
	URL string
	s   *server.Server
	dir string
}

// StartNATS starts a NATS server with JetStream.
func StartNATS() (*NATS, error) {
	dir, err := os.MkdirTemp("", "loadwatch-nats-")
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		_ = os.RemoveAll(dir)
		return nil, errors.New("nats-server not ready")
	}
	return &NATS{URL: fmt.Sprintf("nats://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port), s: s, dir: dir}, nil
}

// Traffic is the server's message counters so far (Varz): everything it
// received from and sent to its clients.
func (n *NATS) Traffic() Traffic {
	v, err := n.s.Varz(&server.VarzOptions{})
	if err != nil {
		return Traffic{}
	}
	return Traffic{InMsgs: v.InMsgs, OutMsgs: v.OutMsgs, InBytes: v.InBytes, OutBytes: v.OutBytes}
}

// Close shuts the server down and removes its store.
func (n *NATS) Close() {
	n.s.Shutdown()
	n.s.WaitForShutdown()
	_ = os.RemoveAll(n.dir)
}

// Traffic counts NATS messages and bytes, as the server sees them.
type Traffic struct {
	InMsgs, OutMsgs, InBytes, OutBytes int64
}

// Sub returns t - o.
func (t Traffic) Sub(o Traffic) Traffic {
	return Traffic{t.InMsgs - o.InMsgs, t.OutMsgs - o.OutMsgs, t.InBytes - o.InBytes, t.OutBytes - o.OutBytes}
}

// ReplicaPhase is the outcome of one phase of RunReplicas: Replicas
// gateway processes with or without a shared NATS.
type ReplicaPhase struct {
	// Cluster is whether the replicas had -cluster-nats-url.
	Cluster bool
	// Replicas, Watchers and Conns: gateways, gRPC streams over them all
	// (split evenly) and client connections.
	Replicas, Watchers, Conns int
	Opened                    time.Duration
	OpenErrors                int
	// Errors counts watchers that ended on their own, by error.
	Errors map[string]int
	// CPU is each replica's CPU time in the window.
	CPU []time.Duration
	// Usage is the load tool's (upstream, NATS, clients) and the machine's.
	Usage  Usage
	Window Window
	// Polls counts all replicas' upstream polls in the window;
	// PollsBy[r] those of replica r.
	Polls   Polls
	PollsBy []int
	// All measures every watcher. With the cluster, Remote measures the
	// (watcher, change) pairs where the change was first polled by another
	// replica than the watcher's, Local those where it was the same; each
	// replica's own observation without the cluster.
	All, Remote, Local Deliveries
	// Changes is the number of upstream changes in the window.
	Changes int
	// NATS is the server's traffic in the window (cluster only).
	NATS Traffic
	// Leases is batchgate_cluster_leases of each replica at the window's
	// end (cluster only; -1 when unreadable).
	Leases []int
	// States checks every watcher for the states that ended in the window
	// (from its start to the kill, with Takeover) and lasted longer than
	// an interval (CheckStates).
	States StateCheck
	// Counters holds clusterCounters per replica at the window's end
	// (cluster only).
	Counters [][]int
	// Mismatches describes All's observed_at mismatches, with the
	// watchers' replicas.
	Mismatches []string

	// Takeover is what followed the SIGKILL of a replica (cluster with
	// ReplicaOptions.Kill only).
	Takeover *Takeover

	logs []*ClientLog
	via  []int32 // replica+1 of each log
}

// Takeover measures the cluster after SIGKILL of the replica holding the
// most leases, once the phase's window and grace were over.
type Takeover struct {
	// Killed is the replica's index, Leases its batchgate_cluster_leases
	// when killed.
	Killed, Leases int
	// Window runs from the kill for ReplicaOptions.Kill.
	Window Window
	// Batches is the number of batches whose last poll before the kill
	// was the killed replica's; TakenOver how many of them another
	// replica polled in Window.
	Batches, TakenOver int
	// Delay is, per batch taken over, from the kill to the first poll by
	// another replica; Gap from the killed replica's last poll to it.
	Delay, Gap Summary
	// Late counts the batches taken over more than two intervals after
	// the kill.
	Late int
	// PollsAfter counts all upstream polls per interval in Window, or
	// with Finish from the kill to the finish.
	PollsAfter Polls
	// Finish is the instant (Unix µs) the simulator's clock jumped to
	// bring every batch to its end (ReplicaOptions.Finish), Completed the
	// instant the last batch completed by then; both 0 without.
	Finish, Completed int64
	// Terminal is the number of batches terminal by Window's end.
	Terminal int
	// Counters holds clusterCounters per replica at Window's end.
	Counters [][]int
	// Survivors measures the other replicas' watchers in Window;
	// SurvivorStates and SurvivorTerminals check them for the states that
	// began in Window and for the terminal events.
	Survivors         Deliveries
	SurvivorStates    StateCheck
	SurvivorTerminals Terminals
	// KilledWatchers is the number of the killed replica's watchers,
	// KilledErrors how their streams on it ended. They resume on the
	// other replicas (Resumptions); Resumed, ResumedStates and
	// ResumedTerminals measure them in Window as the survivors are.
	KilledWatchers   int
	KilledErrors     map[string]int
	Resumptions      Resumptions
	Resumed          Deliveries
	ResumedStates    StateCheck
	ResumedTerminals Terminals

	at         int64
	mismatches []string // the survivors' observed_at mismatches
	// held marks the batches whose last poll before the kill was the
	// killed replica's.
	held []bool
}

// ReplicaOptions configures RunReplicas.
type ReplicaOptions struct {
	// Replicas is the number of gateways.
	Replicas int
	// Kill, when positive, SIGKILLs the replica holding the most leases
	// after the cluster phase's window and watches the others for Kill;
	// the killed replica's watchers resume on the others (ReplicaWatch's
	// Failover).
	Kill time.Duration
	// Finish, when positive (with Kill), is how long after the kill the
	// simulator's clock jumps forward (Upstream.FinishIn) so that every
	// batch is finalizing, then completes FinishSpan later (plus up to
	// Phase/100): the terminal events within the kill's window, which must
	// hold them.
	Finish time.Duration
}

// FinishSpan is how long, at least, the batches stay finalizing after
// ReplicaOptions.Finish's jump: three poll intervals, so that it is a
// state every watcher must see.
func FinishSpan(interval time.Duration) time.Duration { return 3 * interval }

// ReplicaResult is the outcome of RunReplicas.
type ReplicaResult struct {
	Config   Config
	Replicas int
	// Plain is the run without the cluster flag, Cluster with it.
	Plain, Cluster *ReplicaPhase
	Elapsed        time.Duration
}

// RunReplicas runs replicas gateways twice on one upstream: first each on
// its own, then sharing leases through an in-process NATS server, with
// cfg.Watchers gRPC watchers split evenly across them each time. SSE and
// naive clients are not run.
func RunReplicas(ctx context.Context, cfg Config, o ReplicaOptions) (*ReplicaResult, error) {
	replicas := o.Replicas
	cfg.SSE, cfg.Naive = 0, -1
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if replicas < 1 || cfg.Watchers < replicas || cfg.Conns < replicas {
		return nil, errors.New("need at least one replica, and one watcher and one connection per replica")
	}
	if o.Finish > 0 && o.Kill <= 0 {
		return nil, errors.New("finishing the batches needs a kill")
	}
	if o.Finish > 0 {
		need := o.Finish + FinishSpan(cfg.Interval) + cfg.Phase/100 + cfg.Interval
		if o.Kill < need {
			return nil, fmt.Errorf("finishing %s after the kill needs a kill window of at least %s (finish + 3 intervals + phase/100 + an interval)", o.Finish, need)
		}
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s  "+format+"\n", append([]any{time.Since(start).Truncate(100 * time.Millisecond)}, args...)...)
	}
	up, err := StartUpstream(ctx, UpstreamOptions{Batches: cfg.Batches, Phase: cfg.Phase, Tick: cfg.Tick})
	if err != nil {
		return nil, err
	}
	defer up.Close()
	urls := make([]string, replicas)
	for r := range urls {
		if urls[r], err = up.Listen(ctx); err != nil {
			return nil, err
		}
	}
	logf("upstream simulator on %d ports: %d batches in progress, phase %s, clock tick %s", replicas, cfg.Batches, cfg.Phase, cfg.Tick)
	nats, err := StartNATS()
	if err != nil {
		return nil, err
	}
	defer nats.Close()
	logf("NATS with JetStream on %s", nats.URL)

	res := &ReplicaResult{Config: cfg, Replicas: replicas}
	if res.Plain, err = runReplicaPhase(ctx, cfg, up, urls, nil, ReplicaOptions{}, logf); err != nil {
		return nil, fmt.Errorf("replicas without the cluster: %w", err)
	}
	if res.Cluster, err = runReplicaPhase(ctx, cfg, up, urls, nats, o, logf); err != nil {
		return nil, fmt.Errorf("replicas with the cluster: %w", err)
	}
	_ = up.Close()

	logf("replaying the upstream history")
	tl, err := up.Timelines(time.Now().UnixMicro())
	if err != nil {
		return nil, err
	}
	reqs := up.Requests()
	logf("analysing")
	analyzeReplicas(res.Plain, reqs, PhaseGRPC, tl)
	analyzeReplicas(res.Cluster, reqs, PhaseCluster, tl)
	res.Elapsed = time.Since(start)
	return res, nil
}

func runReplicaPhase(ctx context.Context, cfg Config, up *Upstream, urls []string, nats *NATS, o ReplicaOptions, logf func(string, ...any)) (_ *ReplicaPhase, err error) {
	kill := o.Kill
	n := len(urls)
	r := &ReplicaPhase{Cluster: nats != nil, Replicas: n, Watchers: cfg.Watchers, Conns: cfg.Conns, Errors: map[string]int{}}
	name, phase := "plain", PhaseGRPC
	if r.Cluster {
		name, phase = "cluster", PhaseCluster
	}
	up.SetPhase(phase, true)
	defer up.SetPhase(PhaseSetup, false)

	tgts := make([]Target, 0, n)
	defer func() {
		for _, t := range tgts {
			if serr := t.Stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	for i, u := range urls {
		spec := GatewaySpec{UpstreamURL: u, UpstreamKey: up.Key, PollInterval: cfg.Interval, Heartbeat: cfg.Heartbeat, Args: cfg.GatewayArgs}
		if nats != nil {
			spec.ClusterNATSURL = nats.URL
		}
		t, err := cfg.Start(ctx, spec)
		if err != nil {
			return nil, err
		}
		tgts = append(tgts, t)
		logf("%s: replica %d serving gRPC on %s, HTTP on %s", name, i, t.GRPCAddr(), t.HTTPAddr())
	}

	if nats != nil {
		if err := waitShared(ctx, tgts, 30*time.Second); err != nil {
			return nil, err
		}
	}
	addrs := make([]string, n)
	for i, t := range tgts {
		addrs[i] = t.GRPCAddr()
	}
	t0 := time.Now()
	cs, err := OpenReplicas(ctx, ReplicaWatch{
		Addrs: addrs, Watchers: cfg.Watchers, Conns: cfg.Conns, IDs: up.IDs, Par: cfg.OpenParallel,
		Failover: r.Cluster && kill > 0,
	})
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			cs.Stop()
		}
	}()
	r.OpenErrors = cs.OpenErrors
	if cs.OpenErrors > 0 {
		return nil, fmt.Errorf("%d of %d watchers failed to open: %v", cs.OpenErrors, cfg.Watchers, cs.Errors())
	}
	r.Opened = time.Since(t0)
	logf("%s: %d watchers open over %d connections on %d replicas in %s", name, cfg.Watchers, cfg.Conns, n, r.Opened.Round(time.Millisecond))
	if err := sleep(ctx, cfg.Settle); err != nil {
		return nil, err
	}

	cpu0 := make([]time.Duration, n)
	for i, t := range tgts {
		cpu0[i], _ = t.CPU()
	}
	var nats0 Traffic
	if nats != nil {
		nats0 = nats.Traffic()
	}
	usage := startUsage()
	from := time.Now()
	to := from.Add(cfg.Duration)
	logf("%s: steady window of %s", name, cfg.Duration)
	if err := sleep(ctx, cfg.Duration); err != nil {
		return nil, err
	}
	r.Usage = usage.stop()
	if nats != nil {
		r.NATS = nats.Traffic().Sub(nats0)
		for _, t := range tgts {
			r.Leases = append(r.Leases, readLeases(ctx, t.HTTPAddr()))
		}
		r.Counters = readCounters(ctx, tgts)
	}
	for i, t := range tgts {
		c, err := t.CPU()
		if err != nil {
			c = 0
		} else {
			c -= cpu0[i]
		}
		r.CPU = append(r.CPU, c)
	}
	r.Window = Window{From: from.UnixMicro(), To: to.UnixMicro(), Interval: cfg.Interval}
	if err := sleep(ctx, cfg.grace()); err != nil {
		return nil, err
	}
	killed := -1
	if nats != nil && kill > 0 {
		killed = 0
		for i, v := range r.Leases {
			if v > r.Leases[killed] {
				killed = i
			}
		}
		k, ok := tgts[killed].(Killer)
		if !ok {
			return nil, errors.New("the gateways cannot be killed")
		}
		to := &Takeover{Killed: killed, Leases: r.Leases[killed], KilledErrors: map[string]int{}}
		to.at = time.Now().UnixMicro()
		if err := k.Kill(); err != nil {
			return nil, err
		}
		to.Window = Window{From: to.at, To: to.at + kill.Microseconds(), Interval: cfg.Interval}
		r.Takeover = to
		logf("%s: killed replica %d (%d leases); watching the others for %s", name, killed, to.Leases, kill)
		if o.Finish > 0 {
			if err := sleep(ctx, time.Until(time.UnixMicro(to.at).Add(o.Finish))); err != nil {
				return nil, err
			}
			to.Finish, to.Completed = up.FinishIn(FinishSpan(cfg.Interval))
			logf("%s: the simulator's clock jumped: every batch finalizing, completed within %s", name,
				(time.Duration(to.Completed-to.Finish) * time.Microsecond).Round(time.Millisecond))
		}
		if err := sleep(ctx, time.Until(time.UnixMicro(to.Window.To))); err != nil {
			return nil, err
		}
		to.Counters = readCounters(ctx, tgts)
		if err := sleep(ctx, cfg.grace()); err != nil {
			return nil, err
		}
	}
	cs.Stop()
	stopped = true
	for g, l := range cs.Logs {
		rep := cs.Replica[g]
		r.logs = append(r.logs, l)
		r.via = append(r.via, int32(rep+1))
		rcs := l.Reconnects
		if rep == killed {
			r.Takeover.KilledWatchers++
			if len(rcs) > 0 {
				r.Takeover.KilledErrors[rcs[0].Err]++
				rcs = rcs[1:]
			} else if l.Err != nil {
				r.Takeover.KilledErrors[l.Err.Error()]++
				continue
			}
		}
		for _, rc := range rcs {
			r.Errors["broke (resumed on another replica): "+rc.Err]++
		}
		if l.Err != nil {
			r.Errors[l.Err.Error()]++
		}
	}
	logf("%s: done; leases per replica at the window's end: %v", name, r.Leases)
	return r, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readMetric reads the value of the unlabelled metric name from a
// gateway's /metrics, truncated to an integer; -1 when it cannot.
func readMetric(ctx context.Context, httpAddr, name string) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	return parseMetric(bufio.NewScanner(resp.Body), name)
}

// clusterCounters are the cluster metrics read at the window's end and
// after the kill, to explain what the clients saw.
var clusterCounters = []string{
	"batchgate_cluster_leases_acquired_total", "batchgate_cluster_leases_lost_total", "batchgate_cluster_leases_reclaimed_total",
	"batchgate_cluster_unavailable_total", "batchgate_cluster_errors_total", "batchgate_cluster_states_fenced_total",
}

// readCounters reads clusterCounters from each gateway (-1 for a value it
// cannot read, e.g. of a killed one).
func readCounters(ctx context.Context, tgts []Target) [][]int {
	out := make([][]int, len(tgts))
	for i, t := range tgts {
		for _, name := range clusterCounters {
			out[i] = append(out[i], readMetric(ctx, t.HTTPAddr(), name))
		}
	}
	return out
}

func readLeases(ctx context.Context, httpAddr string) int {
	return readMetric(ctx, httpAddr, "batchgate_cluster_leases")
}

func parseMetric(sc *bufio.Scanner, name string) int {
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return int(f)
		}
	}
	return -1
}

// waitShared waits until every gateway reports batchgate_cluster_shared 1:
// a replica is ready before it has joined the cluster (it polls alone
// until then), and a watcher opened on it meanwhile would not take its
// batch's lease.
func waitShared(ctx context.Context, tgts []Target, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for i, t := range tgts {
		for readMetric(ctx, t.HTTPAddr(), "batchgate_cluster_shared") != 1 {
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return fmt.Errorf("replica %d did not report batchgate_cluster_shared 1 within %s", i, timeout)
			}
		}
	}
	return nil
}

// analyzeReplicas fills r's figures. Without the cluster each replica
// polls for itself, so each watcher is measured against its own
// replica's polls: every (replica, batch) pair is analysed as a batch of
// its own.
func analyzeReplicas(r *ReplicaPhase, reqs []Request, phase int32, tl []*Timeline) {
	w := r.Window
	r.Polls = CountPolls(reqs, phase, w, tl)
	r.PollsBy = make([]int, r.Replicas)
	for _, q := range reqs {
		if q.Phase == phase && q.Batch >= 0 && w.contains(q.At) && q.Via >= 1 && int(q.Via) <= r.Replicas {
			r.PollsBy[q.Via-1]++
		}
	}
	for _, t := range tl {
		for j, s := range t.States {
			if j > 0 && w.contains(s.At) {
				r.Changes++
			}
		}
	}
	if r.Cluster {
		r.All = Analyze(r.logs, reqs, phase, w, tl)
		r.Remote = AnalyzeBy(r.logs, reqs, phase, w, tl, func(i int, via int32) bool { return via != r.via[i] })
		r.Local = AnalyzeBy(r.logs, reqs, phase, w, tl, func(i int, via int32) bool { return via == r.via[i] })
		sw := w
		if r.Takeover != nil {
			sw.To = r.Takeover.at
		}
		r.States = CheckStates(r.logs, reqs, phase, sw, tl, w.Interval)
		r.Mismatches = mismatchNotes(r.All.Mismatches, func(i int) int32 { return r.via[i] })
		if r.Takeover != nil {
			analyzeTakeover(r, reqs, phase, tl)
		}
	} else {
		nb := int32(len(tl))
		vreqs := make([]Request, 0, len(reqs))
		for _, q := range reqs {
			if q.Phase == phase && q.Batch >= 0 && q.Via >= 1 {
				q.Batch += (q.Via - 1) * nb
				vreqs = append(vreqs, q)
			}
		}
		vlogs := make([]*ClientLog, len(r.logs))
		for i, l := range r.logs {
			c := *l
			c.Batch += int(r.via[i]-1) * int(nb)
			vlogs[i] = &c
		}
		vtl := make([]*Timeline, 0, r.Replicas*len(tl))
		for range r.Replicas {
			vtl = append(vtl, tl...)
		}
		r.All = Analyze(vlogs, vreqs, phase, w, vtl)
		r.Local = r.All
		r.Mismatches = mismatchNotes(r.All.Mismatches, func(i int) int32 { return r.via[i] })
		r.States = CheckStates(vlogs, vreqs, phase, w, vtl, w.Interval)
		for i := range r.States.States {
			r.States.States[i].Batch %= int(nb)
		}
	}
	r.logs, r.via = nil, nil
}

// mismatchNotes describes observed_at mismatches, with the replica
// (via(log) - 1) of each watcher.
func mismatchNotes(ms []Mismatch, via func(int) int32) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("batch %d state %d: observed_at %d on a watcher of replica %d, %d (%+d ms) on one of replica %d",
			m.Batch, m.Idx, m.FirstMs, via(m.FirstLog)-1, m.Ms, m.Ms-m.FirstMs, via(m.Log)-1))
	}
	return out
}

func analyzeTakeover(r *ReplicaPhase, reqs []Request, phase int32, tl []*Timeline) {
	to := r.Takeover
	kv := int32(to.Killed + 1)
	var surv, killed []*ClientLog
	var survVia []int32
	for i, l := range r.logs {
		if r.via[i] != kv {
			surv = append(surv, l)
			survVia = append(survVia, r.via[i])
		} else {
			killed = append(killed, l)
		}
	}
	tw := to.Window
	to.Survivors = Analyze(surv, reqs, phase, tw, tl)
	to.mismatches = mismatchNotes(to.Survivors.Mismatches, func(i int) int32 { return survVia[i] })
	to.SurvivorStates = CheckStates(surv, reqs, phase, tw, tl, tw.Interval)
	to.SurvivorTerminals = CountTerminals(surv, tw, tl)
	to.Resumptions = SummarizeResumptions(killed, to.at)
	to.Resumed = Analyze(killed, reqs, phase, tw, tl)
	to.ResumedStates = CheckStates(killed, reqs, phase, tw, tl, tw.Interval)
	to.ResumedTerminals = CountTerminals(killed, tw, tl)
	for _, t := range tl {
		if s, ok := t.At(tw.To - 1); ok && s.FP.Terminal() {
			to.Terminal++
		}
	}
	pw := tw
	if to.Finish > 0 {
		pw.To = to.Finish
	}
	to.PollsAfter = CountPolls(reqs, phase, pw, tl)
	nb := len(tl)
	last := make([]*Request, nb)  // last poll before the kill
	first := make([]*Request, nb) // first poll by another replica after it
	for i := range reqs {
		q := &reqs[i]
		if q.Phase != phase || q.Batch < 0 || int(q.Batch) >= nb {
			continue
		}
		switch {
		case q.At < to.at:
			if l := last[q.Batch]; l == nil || q.At >= l.At {
				last[q.Batch] = q
			}
		case q.Via != kv && q.At < to.Window.To:
			if f := first[q.Batch]; f == nil || q.At < f.At {
				first[q.Batch] = q
			}
		}
	}
	var delay, gap []time.Duration
	to.held = make([]bool, nb)
	for b := range nb {
		if last[b] == nil || last[b].Via != kv {
			continue
		}
		to.held[b] = true
		to.Batches++
		if f := first[b]; f != nil {
			to.TakenOver++
			delay = append(delay, time.Duration(f.At-to.at)*time.Microsecond)
			to.Late += btoi(time.Duration(f.At-to.at)*time.Microsecond > 2*to.Window.Interval)
			gap = append(gap, time.Duration(f.At-last[b].At)*time.Microsecond)
		}
	}
	to.Delay, to.Gap = Summarize(delay), Summarize(gap)
}

// Markdown returns the two phases side by side.
func (r *ReplicaResult) Markdown() string {
	c := r.Config
	col := func(p *ReplicaPhase) []string {
		var sum time.Duration
		for _, v := range p.CPU {
			sum += v
		}
		remote, nats, leases := "—", "—", "—"
		if p.Cluster {
			remote = triple(p.Remote.Latency)
			if p.Changes > 0 {
				ch := float64(p.Changes)
				nats = fmt.Sprintf("%.1f in / %.1f out msgs, %s in / %s out bytes", float64(p.NATS.InMsgs)/ch, float64(p.NATS.OutMsgs)/ch,
					thousandsF(float64(p.NATS.InBytes)/ch), thousandsF(float64(p.NATS.OutBytes)/ch))
			}
			leases = fmt.Sprint(p.Leases)
		}
		d := p.All
		return []string{
			fmt.Sprintf("%d replicas, %s streams on %s connections", p.Replicas, thousands(int64(p.Watchers)), thousands(int64(p.Conns))),
			batches(p.Polls, c.Batches),
			requests(p.Polls),
			fmt.Sprint(p.PollsBy),
			triple(d.Latency),
			remote,
			triple(d.LatencyUpstream),
			staleness(d.Staleness),
			fmt.Sprintf("%s / %d / %d", thousands(int64(d.Pairs)), d.Skipped, d.Missed),
			states(p.States),
			fmt.Sprint(d.ObservedMismatch),
			nats,
			leases,
			cpu(sum, p.Usage, p.Window),
		}
	}
	labels := []string{
		"clients",
		"batches watched (non-terminal)",
		fmt.Sprintf("upstream requests per %s interval, all replicas: mean (min–max)", c.Interval),
		"upstream requests in the window, per replica",
		"delivery latency, poll saw the change → watcher got it (observed_at): p50 / p99 / max",
		"the same, watchers on another replica than the poll's: p50 / p99 / max",
		"delivery latency, upstream answered that poll → watcher got it: p50 / p99 / max",
		"client-visible delay, upstream change → watcher saw it: mean / p50 / p99",
		"(watcher, observed change) pairs / skipped / missed",
		fmt.Sprintf("states that lasted longer than %s, per watcher: missed of (watcher, state) pairs (states ended in the window; with a kill, from its start to the kill)", c.Interval),
		"states whose observed_at differed between watchers",
		"NATS traffic per upstream change (server's Varz, whole window)",
		"leases held per replica at the window's end",
		"CPU in the window: all replicas / load tool (upstream, NATS, clients) / other (one core = 100%)",
	}
	a, b := col(r.Plain), col(r.Cluster)
	var s strings.Builder
	s.WriteString("| | without the cluster flag | with -cluster-nats-url |\n| --- | --- | --- |\n")
	for i, l := range labels {
		fmt.Fprintf(&s, "| %s | %s | %s |\n", l, a[i], b[i])
	}
	return s.String()
}

// states formats a StateCheck: missed of required pairs, and the watchers
// and distinct states concerned.
func states(c StateCheck) string {
	if c.Missed == 0 {
		return fmt.Sprintf("0 of %s", thousands(int64(c.Required)))
	}
	return fmt.Sprintf("**%s** of %s (%s watchers, %d states)", thousands(int64(c.Missed)), thousands(int64(c.Required)), thousands(int64(c.MissedBy)), len(c.States))
}

// terminals formats a Terminals as the load tool's verdict line.
func terminals(t Terminals) string {
	return fmt.Sprintf("got %s of %s expected, missed %s", thousands(int64(t.Got)), thousands(int64(t.Expected)), thousands(int64(t.Missed)))
}

// since formats the instant at (Unix µs) as an offset from the kill.
func (to *Takeover) since(at int64) string {
	return sinceKill(time.Duration(at-to.at) * time.Microsecond)
}

// sinceKill formats an offset from the kill: kill+1.2s, kill-489ms.
func sinceKill(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d < 0 {
		return "kill-" + (-d).String()
	}
	return "kill+" + d.String()
}

// TakeoverMarkdown returns the takeover's table; empty without a kill.
func (r *ReplicaResult) TakeoverMarkdown() string {
	to := r.Cluster.Takeover
	if to == nil {
		return ""
	}
	c := r.Config
	surv := r.Cluster.Watchers - to.KilledWatchers
	rs := to.Resumptions
	polls := "upstream requests per " + c.Interval.String() + " interval after the kill: mean (min–max)"
	if to.Finish > 0 {
		polls = "upstream requests per " + c.Interval.String() + " interval from the kill to the finish: mean (min–max)"
	}
	rows := [][2]string{
		{"killed (SIGKILL)", fmt.Sprintf("replica %d, holding %d leases (leases per replica: %v)", to.Killed, to.Leases, r.Cluster.Leases)},
		{"batches whose last poll before the kill was the killed replica's", fmt.Sprintf("%d; %d polled by another replica within the %s", to.Batches, to.TakenOver, to.Window)},
		{"kill → first poll of the batch by another replica: p50 / p99 / max (batches later than two intervals)", fmt.Sprintf("%s (%d)", triple(to.Delay), to.Late)},
		{"killed replica's last poll → that poll (upstream sees no poll for): min / p50 / max", fmt.Sprintf("%s / %s / %s ms", msNum(to.Gap.Min), msNum(to.Gap.P50), msNum(to.Gap.Max))},
		{polls, requests(to.PollsAfter)},
	}
	if to.Finish > 0 {
		rows = append(rows, [2]string{"finish: the simulator's clock jumps, every batch finalizing → completed",
			fmt.Sprintf("at %s; completed by %s; %d of %d batches terminal by the window's end", to.since(to.Finish), to.since(to.Completed), to.Terminal, c.Batches)})
	}
	group := func(who string, n int, d Deliveries, st StateCheck, t Terminals) {
		rows = append(rows,
			[2]string{fmt.Sprintf("%s (%s): (watcher, observed change) pairs / skipped / missed", who, thousands(int64(n))), fmt.Sprintf("%s / %d / %d", thousands(int64(d.Pairs)), d.Skipped, d.Missed)},
			[2]string{who + ": poll saw the change → watcher got it: p50 / p99 / max", triple(d.Latency)},
			[2]string{who + ": upstream change → watcher saw it: mean / p50 / p99", staleness(d.Staleness)},
			[2]string{fmt.Sprintf("%s: states that lasted longer than %s, missed of (watcher, state) pairs", who, c.Interval), states(st)},
			[2]string{who + ": terminal events", terminals(t)},
		)
	}
	group("surviving watchers", surv, to.Survivors, to.SurvivorStates, to.SurvivorTerminals)
	rows = append(rows,
		[2]string{"the killed replica's watchers: their streams there ended with", errs(to.KilledErrors)},
		[2]string{"the killed replica's watchers: resumed on another replica (resume_tag)", fmt.Sprintf("%s of %s (per replica: %v; %s began with a SNAPSHOT, the rest with a HEARTBEAT; at most %d calls)",
			thousands(int64(rs.Resumed)), thousands(int64(to.KilledWatchers)), replicaCounts(rs.ByReplica, r.Replicas), thousands(int64(rs.Snapshots)), rs.MaxAttempts)},
		[2]string{"kill → re-subscribed (first event on the new stream): p50 / p99 / max", triple(rs.Delay)},
	)
	group("the killed replica's watchers", to.KilledWatchers, to.Resumed, to.ResumedStates, to.ResumedTerminals)
	var b strings.Builder
	b.WriteString("| after the kill | |\n| --- | --- |\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", row[0], row[1])
	}
	return b.String()
}

// replicaCounts lists m's counts for replicas 0 to n-1.
func replicaCounts(m map[int]int, n int) []int {
	out := make([]int, n)
	for k, v := range m {
		if k >= 0 && k < n {
			out[k] = v
		}
	}
	return out
}

// Failures returns a line, starting with "MISSED:", for each promise the
// run found broken: a terminal event or a state that lasted longer than an
// interval not received, a killed replica's watcher never resumed, a batch
// not finished in time. None: nil.
func (r *ReplicaResult) Failures() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, "MISSED: "+fmt.Sprintf(format, args...)) }
	stateLine := func(who string, c StateCheck) {
		if c.Missed > 0 {
			add("%s: %s (watcher, state) pairs of states that lasted longer than %s not received, by %s of %s watchers (%d distinct states)",
				who, thousands(int64(c.Missed)), r.Config.Interval, thousands(int64(c.MissedBy)), thousands(int64(c.Watchers)), len(c.States))
		}
	}
	termLine := func(who string, t Terminals) {
		if t.Missed > 0 || t.BadFlag > 0 {
			add("%s: terminal events: %s; %d receipts with a wrong terminal flag", who, terminals(t), t.BadFlag)
		}
	}
	stateLine("without the cluster", r.Plain.States)
	stateLine("with the cluster, before the kill", r.Cluster.States)
	if to := r.Cluster.Takeover; to != nil {
		stateLine("after the kill, surviving watchers", to.SurvivorStates)
		stateLine("after the kill, the killed replica's watchers", to.ResumedStates)
		termLine("surviving watchers", to.SurvivorTerminals)
		termLine("the killed replica's watchers", to.ResumedTerminals)
		if rs := to.Resumptions; rs.Resumed < to.KilledWatchers {
			add("%s of the killed replica's %s watchers never resumed on another replica", thousands(int64(to.KilledWatchers-rs.Resumed)), thousands(int64(to.KilledWatchers)))
		}
		if to.Finish > 0 && to.Terminal < r.Config.Batches {
			add("%d of %d batches terminal by the end of the kill's window", to.Terminal, r.Config.Batches)
		}
	}
	return out
}

// Raw returns the raw numbers.
func (r *ReplicaResult) Raw() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	c := r.Config
	p("config: replicas=%d watchers=%d conns=%d batches=%d interval=%s duration=%s settle=%s phase=%s tick=%s heartbeat=%s",
		r.Replicas, c.Watchers, c.Conns, c.Batches, c.Interval, c.Duration, c.Settle, c.Phase, c.Tick, c.Heartbeat)
	for _, ph := range []*ReplicaPhase{r.Plain, r.Cluster} {
		name := "plain"
		if ph.Cluster {
			name = "cluster"
		}
		d := ph.All
		p("%s: watchers=%d conns=%d replicas=%d opened_in=%s open_errors=%d errors=%s", name, ph.Watchers, ph.Conns, ph.Replicas, ph.Opened.Round(time.Millisecond), ph.OpenErrors, errs(ph.Errors))
		p("%s: cpu in the window per replica=%v load_tool=%s machine=%s (%s)", name, ph.CPU, ph.Usage.LoadTool.Round(time.Millisecond), ph.Usage.Machine, ph.Window)
		pollsRaw(p, name, ph.Polls, ph.Window)
		p("%s: upstream requests in the window per replica=%v", name, ph.PollsBy)
		p("%s: upstream changes in window=%d, observed by the polls=%d (per replica without the cluster), CHANGE events received=%d", name, ph.Changes, d.Observed, d.ChangeEvents)
		p("%s: latency observed_at→receipt: %s", name, d.Latency)
		if ph.Cluster {
			p("%s: latency observed_at→receipt, watcher on another replica than the poll: %s", name, ph.Remote.Latency)
			p("%s: latency observed_at→receipt, watcher on the poll's replica: %s", name, ph.Local.Latency)
			p("%s: pairs remote=%d (skipped %d, missed %d) local=%d (skipped %d, missed %d)", name, ph.Remote.Pairs, ph.Remote.Skipped, ph.Remote.Missed, ph.Local.Pairs, ph.Local.Skipped, ph.Local.Missed)
		}
		p("%s: latency upstream response→receipt: %s", name, d.LatencyUpstream)
		p("%s: pairs=%d skipped=%d missed=%d unknown_states=%d observed_at_mismatch=%d", name, d.Pairs, d.Skipped, d.Missed, d.Unknown, d.ObservedMismatch)
		p("%s: client-visible delay upstream change→receipt: %s (never seen: %d)", name, d.Staleness, d.StaleMissed)
		statesRaw(p, name+": states that lasted longer than an interval, ended in the window (before the kill)", ph.States, nil)
		for _, m := range ph.Mismatches {
			p("%s: observed_at mismatch: %s", name, m)
		}
		countersRaw(p, name+": at the window's end", ph.Counters)
		if ph.Cluster {
			p("%s: nats in the window: in_msgs=%d out_msgs=%d in_bytes=%d out_bytes=%d; leases per replica at the end=%v", name, ph.NATS.InMsgs, ph.NATS.OutMsgs, ph.NATS.InBytes, ph.NATS.OutBytes, ph.Leases)
		}
	}
	if to := r.Cluster.Takeover; to != nil {
		d := to.Survivors
		p("takeover: killed replica %d (SIGKILL) holding %d leases; %d batches last polled by it, %d polled by another replica within %s", to.Killed, to.Leases, to.Batches, to.TakenOver, to.Window)
		p("takeover: kill→first poll by another replica: %s; later than two intervals: %d", to.Delay, to.Late)
		p("takeover: killed replica's last poll→that poll: %s", to.Gap)
		pollsRaw(p, "takeover", to.PollsAfter, to.Window)
		p("takeover: surviving watchers=%d: pairs=%d skipped=%d missed=%d unknown_states=%d observed_at_mismatch=%d", r.Cluster.Watchers-to.KilledWatchers, d.Pairs, d.Skipped, d.Missed, d.Unknown, d.ObservedMismatch)
		p("takeover: surviving watchers, latency observed_at→receipt: %s", d.Latency)
		p("takeover: surviving watchers, client-visible delay upstream change→receipt: %s (never seen: %d)", d.Staleness, d.StaleMissed)
		for _, m := range to.mismatches {
			p("takeover: surviving watchers, observed_at mismatch: %s", m)
		}
		countersRaw(p, "takeover: at the window's end", to.Counters)
		statesRaw(p, "takeover: surviving watchers, states that lasted longer than an interval, ended after the kill", to.SurvivorStates, to)
		p("takeover: surviving watchers, terminal events: %s; ended with OK after it=%d; wrong terminal flags=%d (%d batches terminal by the window's end)",
			terminals(to.SurvivorTerminals), to.SurvivorTerminals.Ended, to.SurvivorTerminals.BadFlag, to.Terminal)
		p("takeover: the killed replica's %d watchers: their streams on it ended with %s", to.KilledWatchers, errs(to.KilledErrors))
		rs := to.Resumptions
		p("takeover: the killed replica's watchers: broken=%d resumed=%d breaks=%d by_replica=%v snapshots=%d max_calls=%d", rs.Broken, rs.Resumed, rs.Breaks, replicaCounts(rs.ByReplica, r.Replicas), rs.Snapshots, rs.MaxAttempts)
		p("takeover: the killed replica's watchers: kill→first event on the resumed stream: %s", rs.Delay)
		p("takeover: the killed replica's watchers: break→first event on the resumed stream: %s", rs.Outage)
		d = to.Resumed
		p("takeover: the killed replica's watchers: pairs=%d skipped=%d missed=%d unknown_states=%d observed_at_mismatch=%d", d.Pairs, d.Skipped, d.Missed, d.Unknown, d.ObservedMismatch)
		p("takeover: the killed replica's watchers, latency observed_at→receipt: %s", d.Latency)
		p("takeover: the killed replica's watchers, client-visible delay upstream change→receipt: %s (never seen: %d)", d.Staleness, d.StaleMissed)
		statesRaw(p, "takeover: the killed replica's watchers, states that lasted longer than an interval, ended after the kill", to.ResumedStates, to)
		p("takeover: the killed replica's watchers, terminal events: %s; ended with OK after it=%d; wrong terminal flags=%d",
			terminals(to.ResumedTerminals), to.ResumedTerminals.Ended, to.ResumedTerminals.BadFlag)
		if to.Finish > 0 {
			p("takeover: finish: the simulator's clock jumped at %s, every batch completed by %s", to.since(to.Finish), to.since(to.Completed))
		}
	}
	p("elapsed %s", r.Elapsed.Round(time.Millisecond))
	return b.String()
}

// statesRaw prints a StateCheck and its first missed states; with a
// takeover, their instants from the kill and whether the killed replica
// held the batch.
func statesRaw(p func(string, ...any), name string, c StateCheck, to *Takeover) {
	polled, held := 0, 0
	for _, m := range c.States {
		polled += btoi(m.Polled)
		if to != nil && m.Batch < len(to.held) {
			held += btoi(to.held[m.Batch])
		}
	}
	p("%s: watchers=%d required (watcher, state) pairs=%d missed=%d by %d watchers, distinct states missed=%d (returned by a poll: %d; of batches the killed replica polled last: %d)",
		name, c.Watchers, c.Required, c.Missed, c.MissedBy, len(c.States), polled, held)
	const show = 20
	for i, m := range c.States {
		if i == show {
			p("  … %d more", len(c.States)-show)
			break
		}
		at, held := fmt.Sprint(m.At), ""
		if to != nil {
			at = to.since(m.At)
			if m.Batch < len(to.held) {
				held = fmt.Sprintf(", last polled before the kill by the killed replica: %v", to.held[m.Batch])
			}
		}
		lasted := "until the end"
		if m.Lasted > 0 {
			lasted = m.Lasted.Round(time.Millisecond).String()
		}
		p("  batch %d state %d at %s lasted %s: missed by %d watchers; returned by a poll: %v%s", m.Batch, m.Idx, at, lasted, m.Watchers, m.Polled, held)
	}
}

// countersRaw prints clusterCounters per replica.
func countersRaw(p func(string, ...any), name string, cs [][]int) {
	for r, vs := range cs {
		var parts []string
		for k, v := range vs {
			parts = append(parts, fmt.Sprintf("%s=%d", strings.TrimPrefix(clusterCounters[k], "batchgate_cluster_"), v))
		}
		p("%s: replica %d: %s", name, r, strings.Join(parts, " "))
	}
}
