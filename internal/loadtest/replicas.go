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
	// PollsAfter counts all upstream polls in Window, per interval.
	PollsAfter Polls
	// Survivors measures the other replicas' watchers in Window.
	Survivors Deliveries
	// KilledWatchers is the number of the killed replica's watchers
	// (not measured after the kill: their streams broke), KilledErrors how
	// their streams ended.
	KilledWatchers int
	KilledErrors   map[string]int

	at int64
}

// ReplicaOptions configures RunReplicas.
type ReplicaOptions struct {
	// Replicas is the number of gateways.
	Replicas int
	// Kill, when positive, SIGKILLs the replica holding the most leases
	// after the cluster phase's window and watches the others for Kill.
	Kill time.Duration
}

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
	if res.Plain, err = runReplicaPhase(ctx, cfg, up, urls, nil, 0, logf); err != nil {
		return nil, fmt.Errorf("replicas without the cluster: %w", err)
	}
	if res.Cluster, err = runReplicaPhase(ctx, cfg, up, urls, nats, o.Kill, logf); err != nil {
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

func runReplicaPhase(ctx context.Context, cfg Config, up *Upstream, urls []string, nats *NATS, kill time.Duration, logf func(string, ...any)) (_ *ReplicaPhase, err error) {
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

	var all []*Clients
	defer func() {
		for _, cs := range all {
			cs.Stop()
		}
	}()
	t0 := time.Now()
	for i, t := range tgts {
		w := cfg.Watchers/n + btoi(i < cfg.Watchers%n)
		c := cfg.Conns/n + btoi(i < cfg.Conns%n)
		cs, err := OpenGRPC(ctx, t.GRPCAddr(), c, w, cfg.OpenParallel, up.IDs)
		if err != nil {
			return nil, err
		}
		all = append(all, cs)
		r.OpenErrors += cs.OpenErrors
		if cs.OpenErrors > 0 {
			return nil, fmt.Errorf("%d of %d watchers on replica %d failed to open: %v", cs.OpenErrors, w, i, cs.Errors())
		}
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
		if err := sleep(ctx, kill+cfg.grace()); err != nil {
			return nil, err
		}
	}
	for i, cs := range all {
		cs.Stop()
		errs := r.Errors
		if i == killed {
			errs = r.Takeover.KilledErrors
			r.Takeover.KilledWatchers = len(cs.Logs)
		}
		for k, v := range cs.Errors() {
			errs[k] += v
		}
		for _, l := range cs.Logs {
			r.logs = append(r.logs, l)
			r.via = append(r.via, int32(i+1))
		}
	}
	all = nil
	logf("%s: done; leases per replica at the window's end: %v", name, r.Leases)
	return r, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readLeases reads batchgate_cluster_leases from a gateway's /metrics; -1
// when it cannot.
func readLeases(ctx context.Context, httpAddr string) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	return parseLeases(bufio.NewScanner(resp.Body))
}

func parseLeases(sc *bufio.Scanner) int {
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "batchgate_cluster_leases "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return int(f)
		}
	}
	return -1
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
	}
	r.logs, r.via = nil, nil
}

func analyzeTakeover(r *ReplicaPhase, reqs []Request, phase int32, tl []*Timeline) {
	to := r.Takeover
	kv := int32(to.Killed + 1)
	var surv []*ClientLog
	for i, l := range r.logs {
		if r.via[i] != kv {
			surv = append(surv, l)
		}
	}
	to.Survivors = Analyze(surv, reqs, phase, to.Window, tl)
	to.PollsAfter = CountPolls(reqs, phase, to.Window, tl)
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
	for b := range nb {
		if last[b] == nil || last[b].Via != kv {
			continue
		}
		to.Batches++
		if f := first[b]; f != nil {
			to.TakenOver++
			delay = append(delay, time.Duration(f.At-to.at)*time.Microsecond)
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
		if ph.Cluster {
			p("%s: nats in the window: in_msgs=%d out_msgs=%d in_bytes=%d out_bytes=%d; leases per replica at the end=%v", name, ph.NATS.InMsgs, ph.NATS.OutMsgs, ph.NATS.InBytes, ph.NATS.OutBytes, ph.Leases)
		}
	}
	if to := r.Cluster.Takeover; to != nil {
		d := to.Survivors
		p("takeover: killed replica %d (SIGKILL) holding %d leases; %d batches last polled by it, %d polled by another replica within %s", to.Killed, to.Leases, to.Batches, to.TakenOver, to.Window)
		p("takeover: kill→first poll by another replica: %s", to.Delay)
		p("takeover: killed replica's last poll→that poll: %s", to.Gap)
		pollsRaw(p, "takeover", to.PollsAfter, to.Window)
		p("takeover: surviving watchers=%d: pairs=%d skipped=%d missed=%d unknown_states=%d observed_at_mismatch=%d", r.Cluster.Watchers-to.KilledWatchers, d.Pairs, d.Skipped, d.Missed, d.Unknown, d.ObservedMismatch)
		p("takeover: surviving watchers, latency observed_at→receipt: %s", d.Latency)
		p("takeover: surviving watchers, client-visible delay upstream change→receipt: %s (never seen: %d)", d.Staleness, d.StaleMissed)
		p("takeover: the killed replica's %d watchers ended with %s", to.KilledWatchers, errs(to.KilledErrors))
	}
	p("elapsed %s", r.Elapsed.Round(time.Millisecond))
	return b.String()
}
