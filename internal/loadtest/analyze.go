package loadtest

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Window is the steady part of a phase, [From, To) in Unix µs, cut into
// polling intervals.
type Window struct {
	From, To int64
	Interval time.Duration
}

func (w Window) contains(at int64) bool { return at >= w.From && at < w.To }

// Len is the window's length.
func (w Window) Len() time.Duration { return time.Duration(w.To-w.From) * time.Microsecond }

// String describes the window's length.
func (w Window) String() string { return fmt.Sprintf("%s window", w.Len()) }

// Polls summarizes the upstream requests of one phase in a window.
type Polls struct {
	// PerInterval counts the requests in each whole interval.
	PerInterval Counts
	// Batches is the number of distinct batches requested.
	Batches int
	// PerBatchMin and PerBatchMax bound the requests per requested batch
	// over the whole window.
	PerBatchMin, PerBatchMax int
	// NonTerminal is the number of batches whose upstream state was not
	// terminal at the end of the window (so not at any time in it).
	NonTerminal int
}

// CountPolls counts the GET /v1/batches/{id} requests of phase in w.
func CountPolls(reqs []Request, phase int32, w Window, tl []*Timeline) Polls {
	var times []int64
	perBatch := make(map[int32]int)
	for _, r := range reqs {
		if r.Phase != phase || r.Batch < 0 || !w.contains(r.At) {
			continue
		}
		times = append(times, r.At)
		perBatch[r.Batch]++
	}
	p := Polls{
		PerInterval: SummarizeCounts(PerInterval(times, w.From, w.To, w.Interval.Microseconds())),
		Batches:     len(perBatch),
	}
	first := true
	for _, n := range perBatch {
		if first {
			p.PerBatchMin, p.PerBatchMax, first = n, n, false
		}
		p.PerBatchMin = min(p.PerBatchMin, n)
		p.PerBatchMax = max(p.PerBatchMax, n)
	}
	for _, t := range tl {
		if s, ok := t.At(w.To); ok && !s.FP.Terminal() {
			p.NonTerminal++
		}
	}
	return p
}

// Deliveries are the delays measured for one set of clients.
type Deliveries struct {
	// Latency: from the gateway's observation of a change (the
	// observed_at_unix_ms of the event, set when the poll that saw the
	// change returned) to a watcher's receipt. Only for events that carry
	// observed_at (gRPC). observed_at is whole milliseconds (truncated), so
	// each sample reads up to 1ms high.
	Latency Summary
	// LatencyUpstream: from the upstream writing the response of the poll
	// that first returned a state to a watcher's receipt of it. Works
	// without observed_at (SSE); slightly longer than Latency by the HTTP
	// transfer and decoding of that response.
	LatencyUpstream Summary
	// Pairs is the number of (watcher, observed change) pairs; Skipped and
	// Missed count those that a watcher saw only as a later state, or not
	// at all (see Delivery).
	Pairs, Skipped, Missed int
	// Observed is the number of changes the gateway's polls observed in the
	// window, all batches together.
	Observed int
	// Staleness: from the upstream change (the instant the simulator
	// started returning the state) to a client's first receipt of it or a
	// later state: what a client sees, polling interval included.
	Staleness Summary
	// StaleMissed counts (client, upstream change) pairs never seen.
	StaleMissed int
	// Changes is the number of upstream changes in the window.
	Changes int
	// Unknown counts receipts or responses whose state is not in the
	// batch's timeline (should be zero).
	Unknown int
	// ObservedMismatch counts CHANGE receipts whose observed_at differed
	// from the first watcher's of the same state (should be zero: one poll
	// observed each state); Mismatches are the first few.
	ObservedMismatch int
	Mismatches       []Mismatch
	// ChangeEvents is the number of CHANGE events received in total.
	ChangeEvents int
}

// Mismatch is a state two watchers got with different observed_at: the
// logs' indexes and their stamps (Unix ms).
type Mismatch struct {
	Batch, Idx    int
	FirstLog, Log int
	FirstMs, Ms   int64
}

// maxMismatches bounds Deliveries.Mismatches.
const maxMismatches = 10

// Analyze measures clients of one batch set against the timelines. reqs
// and phase give the gateway's polls (nil reqs: naive clients, which are
// only measured for staleness).
func Analyze(logs []*ClientLog, reqs []Request, phase int32, w Window, tl []*Timeline) Deliveries {
	return analyze(logs, reqs, phase, w, tl, nil)
}

// AnalyzeBy is Analyze restricted to the (watcher, observed change) pairs
// for which keep(i, via) holds, where i indexes logs and via is the Via
// of the poll that first observed the change. Staleness and Changes still
// count every pair.
func AnalyzeBy(logs []*ClientLog, reqs []Request, phase int32, w Window, tl []*Timeline, keep func(i int, via int32) bool) Deliveries {
	return analyze(logs, reqs, phase, w, tl, keep)
}

func analyze(logs []*ClientLog, reqs []Request, phase int32, w Window, tl []*Timeline, keep func(int, int32) bool) Deliveries {
	var d Deliveries
	nb := len(tl)

	// Upstream changes in the window, per batch.
	changes := make([][]Event, nb)
	for b, t := range tl {
		for j, s := range t.States {
			if j > 0 && w.contains(s.At) {
				changes[b] = append(changes[b], Event{Idx: j, At: s.At})
			}
		}
		d.Changes += len(changes[b])
	}

	// The gateway's observations: the first poll returning each new state.
	observed := make([][]Event, nb)
	vias := make([][]int32, nb)
	if reqs != nil {
		byBatch := make([][]Request, nb)
		for _, r := range reqs {
			if r.Phase == phase && r.Batch >= 0 && int(r.Batch) < nb {
				byBatch[r.Batch] = append(byBatch[r.Batch], r)
			}
		}
		for b, rs := range byBatch {
			slices.SortStableFunc(rs, func(x, y Request) int { return cmp.Compare(x.At, y.At) })
			prev := -1
			for _, r := range rs {
				j, ok := tl[b].Index(r.FP)
				if !ok {
					d.Unknown++
					continue
				}
				if prev >= 0 && j != prev && w.contains(r.At) {
					observed[b] = append(observed[b], Event{Idx: j, At: r.At})
					vias[b] = append(vias[b], r.Via)
				}
				prev = j
			}
			d.Observed += len(observed[b])
		}
	}

	// The gateway's own observed_at of each state, from the events, and
	// the first log that had it.
	type stamp struct {
		ms  int64
		log int
	}
	stamps := make([]map[int]stamp, nb)
	seen := make([][]Seen, len(logs))
	for i, l := range logs {
		if l == nil {
			continue
		}
		if stamps[l.Batch] == nil {
			stamps[l.Batch] = make(map[int]stamp)
		}
		for _, r := range l.Got {
			j, ok := tl[l.Batch].Index(r.FP)
			if !ok {
				d.Unknown++
				continue
			}
			seen[i] = append(seen[i], Seen{Idx: j, At: r.At})
			if !r.Change {
				continue
			}
			d.ChangeEvents++
			if r.ObservedMs == 0 {
				continue
			}
			if old, ok := stamps[l.Batch][j]; !ok {
				stamps[l.Batch][j] = stamp{r.ObservedMs, i}
			} else if old.ms != r.ObservedMs {
				d.ObservedMismatch++
				if len(d.Mismatches) < maxMismatches {
					d.Mismatches = append(d.Mismatches, Mismatch{Batch: l.Batch, Idx: j, FirstLog: old.log, FirstMs: old.ms, Log: i, Ms: r.ObservedMs})
				}
			}
		}
	}
	stamped := make([][]Event, nb)
	stampedVia := make([][]int32, nb)
	for b, evs := range observed {
		for k, e := range evs {
			if st, ok := stamps[b][e.Idx]; ok {
				stamped[b] = append(stamped[b], Event{Idx: e.Idx, At: st.ms * 1000})
				stampedVia[b] = append(stampedVia[b], vias[b][k])
			}
		}
	}
	kept := func(i int, evs []Event, via []int32) []Event {
		if keep == nil {
			return evs
		}
		var out []Event
		for k, e := range evs {
			if keep(i, via[k]) {
				out = append(out, e)
			}
		}
		return out
	}

	var lat, up, stale Delivery
	for i, l := range logs {
		if l == nil {
			continue
		}
		Deliver(&lat, seen[i], kept(i, stamped[l.Batch], stampedVia[l.Batch]))
		Deliver(&up, seen[i], kept(i, observed[l.Batch], vias[l.Batch]))
		Deliver(&stale, seen[i], changes[l.Batch])
	}
	d.Latency = Summarize(lat.Delays)
	d.LatencyUpstream = Summarize(up.Delays)
	d.Pairs, d.Skipped, d.Missed = len(up.Delays)+up.Missed, up.Skipped, up.Missed
	d.Staleness = Summarize(stale.Delays)
	d.StaleMissed = stale.Missed
	return d
}

// StateCheck is the outcome of CheckStates.
type StateCheck struct {
	// Watchers is the number of watchers checked, Required the (watcher,
	// state) pairs they had to receive, Missed those they did not, and
	// MissedBy the number of watchers that missed at least one.
	Watchers, Required, Missed, MissedBy int
	// States lists the states some watcher missed, by batch and time.
	States []MissedState
}

// MissedState is one upstream state that some watchers never received.
type MissedState struct {
	// Batch is the batch's index, Idx the state's in its timeline.
	Batch, Idx int
	// At is when the upstream began returning it (Unix µs), Lasted how
	// long it did (0: until the end of the replayed history).
	At     int64
	Lasted time.Duration
	// Watchers is how many of the checked watchers missed it.
	Watchers int
	// Polled is whether a poll of the phase returned it (false also when
	// CheckStates had no polls).
	Polled bool
}

// CheckStates checks that every watcher received each state of its batch
// that ended in w and lasted longer than minLasted: the state itself, not
// a later one in its place. A state counts in the window it ended in,
// since only then can it have been missed: one in force at a kill counts
// after it. The last state of a timeline, still held when the history was
// replayed, counts as long enough, in any w that ends after it began.
// reqs (nil: none) and phase are the gateways' polls, to tell whether a
// missed state was polled at all.
func CheckStates(logs []*ClientLog, reqs []Request, phase int32, w Window, tl []*Timeline, minLasted time.Duration) StateCheck {
	var c StateCheck
	required := make([][]int, len(tl))
	for b, t := range tl {
		for j, s := range t.States {
			if j+1 == len(t.States) {
				if s.At < w.To {
					required[b] = append(required[b], j)
				}
				continue
			}
			end := t.States[j+1].At
			if w.contains(end) && time.Duration(end-s.At)*time.Microsecond > minLasted {
				required[b] = append(required[b], j)
			}
		}
	}
	missed := make(map[[2]int]int)
	for _, l := range logs {
		if l == nil {
			continue
		}
		c.Watchers++
		seen := make(map[int]bool, len(l.Got))
		for _, r := range l.Got {
			if j, ok := tl[l.Batch].Index(r.FP); ok {
				seen[j] = true
			}
		}
		n := 0
		for _, j := range required[l.Batch] {
			if !seen[j] {
				n++
				missed[[2]int{l.Batch, j}]++
			}
		}
		c.Required += len(required[l.Batch])
		c.Missed += n
		c.MissedBy += btoi(n > 0)
	}
	polled := make(map[[2]int]bool)
	for _, r := range reqs {
		if r.Phase != phase || r.Batch < 0 || int(r.Batch) >= len(tl) {
			continue
		}
		if j, ok := tl[r.Batch].Index(r.FP); ok {
			polled[[2]int{int(r.Batch), j}] = true
		}
	}
	for k, n := range missed {
		st := tl[k[0]].States
		m := MissedState{Batch: k[0], Idx: k[1], At: st[k[1]].At, Watchers: n, Polled: polled[k]}
		if k[1]+1 < len(st) {
			m.Lasted = time.Duration(st[k[1]+1].At-m.At) * time.Microsecond
		}
		c.States = append(c.States, m)
	}
	slices.SortFunc(c.States, func(x, y MissedState) int {
		return cmp.Or(cmp.Compare(x.Batch, y.Batch), cmp.Compare(x.Idx, y.Idx))
	})
	return c
}

// Terminals is the outcome of CountTerminals.
type Terminals struct {
	// Batches is the number of batches whose timeline reached a terminal
	// state before the window's end, Expected the number of watchers of
	// those batches, Got those that received it in an event marked
	// terminal, and Missed the others.
	Batches, Expected, Got, Missed int
	// Ended counts the watchers whose stream ended with OK right after
	// the terminal event (ClientLog.Done).
	Ended int
	// BadFlag counts receipts whose terminal flag disagrees with their
	// state's status (should be zero).
	BadFlag int
}

// CountTerminals counts, for every watcher of a batch that became terminal
// before w's end, whether it got the terminal event.
func CountTerminals(logs []*ClientLog, w Window, tl []*Timeline) Terminals {
	var t Terminals
	final := make([]FP, len(tl))
	done := make([]bool, len(tl))
	for b, l := range tl {
		if n := len(l.States); n > 0 {
			s := l.States[n-1]
			final[b], done[b] = s.FP, s.FP.Terminal() && s.At < w.To
			t.Batches += btoi(done[b])
		}
	}
	for _, l := range logs {
		if l == nil {
			continue
		}
		got := false
		for _, r := range l.Got {
			if r.Terminal != r.FP.Terminal() {
				t.BadFlag++
			}
			got = got || (r.Terminal && r.FP == final[l.Batch])
		}
		if !done[l.Batch] {
			continue
		}
		t.Expected++
		if got {
			t.Got++
		} else {
			t.Missed++
		}
		t.Ended += btoi(got && l.Done)
	}
	return t
}

// Resumptions summarizes how a set of watchers reconnected after an
// instant (SummarizeResumptions).
type Resumptions struct {
	// Broken counts the watchers whose stream broke after the instant,
	// Resumed those of them that got a resumed stream, Breaks all breaks.
	Broken, Resumed, Breaks int
	// Delay runs from the instant to each resumed watcher's first event
	// on its new stream; Outage from its stream's break to that event.
	Delay, Outage Summary
	// Snapshots counts the resumptions that began with a SNAPSHOT (the
	// batch had changed) rather than a HEARTBEAT; MaxAttempts is the most
	// WatchBatch calls one took.
	Snapshots, MaxAttempts int
	// ByReplica counts the first resumptions by replica.
	ByReplica map[int]int
}

// SummarizeResumptions measures the watchers' reconnections after since
// (Unix µs).
func SummarizeResumptions(logs []*ClientLog, since int64) Resumptions {
	r := Resumptions{ByReplica: make(map[int]int)}
	var delay, outage []time.Duration
	for _, l := range logs {
		first := true
		for _, rc := range l.Reconnects {
			if rc.Broke < since {
				continue
			}
			r.Breaks++
			r.MaxAttempts = max(r.MaxAttempts, rc.Attempts)
			r.Snapshots += btoi(rc.Resumed != 0 && rc.Snapshot)
			if !first {
				continue
			}
			first = false
			r.Broken++
			if rc.Resumed != 0 {
				r.Resumed++
				r.ByReplica[rc.Replica]++
				delay = append(delay, time.Duration(rc.Resumed-since)*time.Microsecond)
				outage = append(outage, time.Duration(rc.Resumed-rc.Broke)*time.Microsecond)
			}
		}
	}
	r.Delay, r.Outage = Summarize(delay), Summarize(outage)
	return r
}
