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
	// ObservedMismatch counts states whose observed_at differed between
	// watchers (should be zero: one poll observed each state).
	ObservedMismatch int
	// ChangeEvents is the number of CHANGE events received in total.
	ChangeEvents int
}

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

	// The gateway's own observed_at of each state, from the events.
	stamps := make([]map[int]int64, nb)
	seen := make([][]Seen, len(logs))
	for i, l := range logs {
		if l == nil {
			continue
		}
		if stamps[l.Batch] == nil {
			stamps[l.Batch] = make(map[int]int64)
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
				stamps[l.Batch][j] = r.ObservedMs
			} else if old != r.ObservedMs {
				d.ObservedMismatch++
			}
		}
	}
	stamped := make([][]Event, nb)
	stampedVia := make([][]int32, nb)
	for b, evs := range observed {
		for k, e := range evs {
			if ms, ok := stamps[b][e.Idx]; ok {
				stamped[b] = append(stamped[b], Event{Idx: e.Idx, At: ms * 1000})
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
