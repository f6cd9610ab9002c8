package loadtest

import (
	"maps"
	"slices"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

func TestAnalyze(t *testing.T) {
	t.Parallel()
	st := func(n int32) FP { return FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS), Completed: n} }
	tl := []*Timeline{NewTimeline([]State{{0, st(0)}, {1000, st(1)}, {2000, st(2)}, {3000, st(3)}})}
	w := Window{From: 500, To: 3500, Interval: time.Millisecond}
	reqs := []Request{
		{At: 100, Batch: 0, Phase: PhaseGRPC, FP: st(0)}, // the first poll: the snapshot
		{At: 1100, Batch: 0, Phase: PhaseGRPC, FP: st(1)},
		{At: 1600, Batch: -1, Phase: PhaseGRPC},            // not a batch: ignored
		{At: 1700, Batch: 0, Phase: PhaseNaive, FP: st(1)}, // another phase: ignored
		{At: 2100, Batch: 0, Phase: PhaseGRPC, FP: st(2)},
		{At: 2600, Batch: 0, Phase: PhaseGRPC, FP: st(2)}, // no change
		{At: 3100, Batch: 0, Phase: PhaseGRPC, FP: st(3)},
	}
	logs := []*ClientLog{
		{Batch: 0, Got: []Receipt{
			{At: 150, FP: st(0)},
			{At: 1105, ObservedMs: 1, FP: st(1), Change: true},
			{At: 2110, ObservedMs: 2, FP: st(2), Change: true},
			{At: 3120, ObservedMs: 3, FP: st(3), Change: true},
		}},
		{Batch: 0, Got: []Receipt{ // skipped state 2
			{At: 150, FP: st(0)},
			{At: 1108, ObservedMs: 1, FP: st(1), Change: true},
			{At: 3130, ObservedMs: 4, FP: st(3), Change: true}, // a different observed_at
		}},
	}

	p := CountPolls(reqs, PhaseGRPC, w, tl)
	wantP := Polls{PerInterval: Counts{Intervals: 3, Total: 4, Mean: 4.0 / 3, Min: 1, Max: 2}, Batches: 1, PerBatchMin: 4, PerBatchMax: 4, NonTerminal: 1}
	if p != wantP {
		t.Errorf("CountPolls = %+v, want %+v", p, wantP)
	}

	d := Analyze(logs, reqs, PhaseGRPC, w, tl)
	us := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Microsecond)
		}
		return out
	}
	check := func(name string, got Summary, want []time.Duration) {
		t.Helper()
		if w := Summarize(want); got != w {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
	check("Latency", d.Latency, us(105, 110, 120, 108, 1130, 130))
	check("LatencyUpstream", d.LatencyUpstream, us(5, 10, 20, 8, 1030, 30))
	check("Staleness", d.Staleness, us(105, 110, 120, 108, 1130, 130))
	if d.Observed != 3 || d.Pairs != 6 || d.Skipped != 1 || d.Missed != 0 || d.Changes != 3 ||
		d.StaleMissed != 0 || d.Unknown != 0 || d.ObservedMismatch != 1 || d.ChangeEvents != 5 {
		t.Errorf("Analyze counters = %+v", d)
	}
	if want := []Mismatch{{Batch: 0, Idx: 3, FirstLog: 0, FirstMs: 3, Log: 1, Ms: 4}}; !slices.Equal(d.Mismatches, want) {
		t.Errorf("Mismatches = %+v, want %+v", d.Mismatches, want)
	}

	// Naive clients: staleness only.
	n := Analyze(logs[:1], nil, PhaseNaive, w, tl)
	check("naive Staleness", n.Staleness, us(105, 110, 120))
	if n.Latency.N != 0 || n.LatencyUpstream.N != 0 || n.Observed != 0 {
		t.Errorf("naive Analyze measured latency: %+v", n)
	}

	// A state outside the timeline is counted, not matched.
	bad := []*ClientLog{{Batch: 0, Got: []Receipt{{At: 150, FP: st(0)}, {At: 1200, FP: FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_FAILED)}, Change: true}}}}
	if u := Analyze(bad, nil, PhaseNaive, w, tl); u.Unknown != 1 || u.StaleMissed != 3 {
		t.Errorf("unknown state: %+v", u)
	}
}

func TestCheckStates(t *testing.T) {
	t.Parallel()
	ip := func(n int32) FP { return FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS), Completed: n} }
	done := FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_COMPLETED), Completed: 9}
	// Batch 0: state 0 ends as the window begins after exactly one
	// interval, states 1 and 3 last 1.5 intervals, state 2 half of one;
	// the last (4) is held to the end. Batch 1: states that end before the
	// window, after it, and one that begins after it. Batch 2: a long state
	// that began before the window and ends in it, then one that ends
	// after it.
	tl := []*Timeline{
		NewTimeline([]State{{0, ip(0)}, {1000, ip(1)}, {2500, ip(2)}, {3000, ip(3)}, {4500, done}}),
		NewTimeline([]State{{0, ip(0)}, {900, ip(1)}, {6000, ip(2)}}),
		NewTimeline([]State{{0, ip(0)}, {1500, ip(1)}, {5500, ip(2)}}),
	}
	w := Window{From: 1000, To: 5000, Interval: time.Millisecond}
	got := func(fps ...FP) []Receipt {
		var r []Receipt
		for i, fp := range fps {
			r = append(r, Receipt{At: int64(1000 + i), FP: fp})
		}
		return r
	}
	tests := []struct {
		name                                 string
		logs                                 []*ClientLog
		reqs                                 []Request
		watchers, required, missed, missedBy int
		states                               []MissedState
	}{
		{
			name:     "every state received",
			logs:     []*ClientLog{{Batch: 0, Got: got(ip(0), ip(1), ip(2), ip(3), done)}},
			watchers: 1, required: 3,
		},
		{
			name:     "a short state may be skipped",
			logs:     []*ClientLog{{Batch: 0, Got: got(ip(0), ip(1), ip(3), done)}},
			watchers: 1, required: 3,
		},
		{
			name: "a long state skipped is missed, even with a later one; polled or not",
			logs: []*ClientLog{
				{Batch: 0, Got: got(ip(0), ip(2), ip(3), done)},
				{Batch: 0, Got: got(ip(0), ip(2), done)},
				{Batch: 0, Got: got(ip(0), ip(1), ip(3), done)},
			},
			reqs: []Request{
				{At: 3100, Batch: 0, Phase: PhaseCluster, FP: ip(3)},
				{At: 1100, Batch: 0, Phase: PhaseGRPC, FP: ip(1)}, // another phase's
			},
			watchers: 3, required: 9, missed: 3, missedBy: 2,
			states: []MissedState{
				{Batch: 0, Idx: 1, At: 1000, Lasted: 1500 * time.Microsecond, Watchers: 2},
				{Batch: 0, Idx: 3, At: 3000, Lasted: 1500 * time.Microsecond, Watchers: 1, Polled: true},
			},
		},
		{
			name:     "the last state counts as long; a stream that broke misses it",
			logs:     []*ClientLog{{Batch: 0, Got: got(ip(0), ip(1), ip(2), ip(3))}, nil},
			watchers: 1, required: 3, missed: 1, missedBy: 1,
			states: []MissedState{{Batch: 0, Idx: 4, At: 4500, Watchers: 1}},
		},
		{
			name:     "nothing begins in the window: nothing required",
			logs:     []*ClientLog{{Batch: 1, Got: got(ip(0))}},
			watchers: 1,
		},
		{
			name:     "a state counts in the window it ends in",
			logs:     []*ClientLog{{Batch: 2, Got: got(ip(1), ip(2))}, {Batch: 2, Got: got(ip(0))}},
			watchers: 2, required: 2, missed: 1, missedBy: 1,
			states: []MissedState{{Batch: 2, Idx: 0, At: 0, Lasted: 1500 * time.Microsecond, Watchers: 1}},
		},
		{
			name:     "unknown states are ignored",
			logs:     []*ClientLog{{Batch: 0, Got: got(ip(0), ip(1), ip(7), ip(3), done)}},
			watchers: 1, required: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := CheckStates(tt.logs, tt.reqs, PhaseCluster, w, tl, time.Millisecond)
			if c.Watchers != tt.watchers || c.Required != tt.required || c.Missed != tt.missed || c.MissedBy != tt.missedBy || !slices.Equal(c.States, tt.states) {
				t.Errorf("CheckStates = %+v, want watchers %d required %d missed %d by %d, states %+v", c, tt.watchers, tt.required, tt.missed, tt.missedBy, tt.states)
			}
		})
	}
}

func TestCountTerminals(t *testing.T) {
	t.Parallel()
	ip := FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS), Completed: 5}
	fin := FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_FINALIZING), Completed: 9}
	done := FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_COMPLETED), Completed: 9}
	// Batch 0 completes in the window, batch 1 after it, batch 2 never.
	tl := []*Timeline{
		NewTimeline([]State{{0, ip}, {3000, fin}, {4000, done}}),
		NewTimeline([]State{{0, ip}, {6000, done}}),
		NewTimeline([]State{{0, ip}}),
	}
	w := Window{From: 1000, To: 5000, Interval: time.Millisecond}
	term := Receipt{At: 4100, FP: done, Change: true, Terminal: true}
	tests := []struct {
		name string
		logs []*ClientLog
		want Terminals
	}{
		{
			name: "got it, and the stream ended",
			logs: []*ClientLog{{Batch: 0, Got: []Receipt{{FP: ip}, {FP: fin, Change: true}, term}, Done: true}},
			want: Terminals{Batches: 1, Expected: 1, Got: 1, Ended: 1},
		},
		{
			name: "got it, the stream broke after",
			logs: []*ClientLog{{Batch: 0, Got: []Receipt{{FP: ip}, term}}},
			want: Terminals{Batches: 1, Expected: 1, Got: 1},
		},
		{
			name: "stopped at finalizing",
			logs: []*ClientLog{{Batch: 0, Got: []Receipt{{FP: ip}, {FP: fin, Change: true}}}, nil},
			want: Terminals{Batches: 1, Expected: 1, Missed: 1},
		},
		{
			name: "the terminal state without the flag is not the event, and is flagged",
			logs: []*ClientLog{{Batch: 0, Got: []Receipt{{FP: ip}, {FP: done, Change: true}}}},
			want: Terminals{Batches: 1, Expected: 1, Missed: 1, BadFlag: 1},
		},
		{
			name: "a terminal flag on a state that is not terminal",
			logs: []*ClientLog{{Batch: 0, Got: []Receipt{{FP: fin, Terminal: true}, term}}},
			want: Terminals{Batches: 1, Expected: 1, Got: 1, BadFlag: 1},
		},
		{
			name: "batches not terminal by the window's end expect nothing",
			logs: []*ClientLog{{Batch: 1, Got: []Receipt{{FP: ip}}}, {Batch: 2, Got: []Receipt{{FP: ip}}}, {Batch: 0, Got: []Receipt{term}, Done: true}},
			want: Terminals{Batches: 1, Expected: 1, Got: 1, Ended: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := CountTerminals(tt.logs, w, tl); got != tt.want {
				t.Errorf("CountTerminals = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSummarizeResumptions(t *testing.T) {
	t.Parallel()
	const kill = 10_000
	us := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Microsecond)
		}
		return out
	}
	tests := []struct {
		name                                         string
		logs                                         []*ClientLog
		broken, resumed, breaks, snapshots, attempts int
		delay, outage                                []time.Duration
		byReplica                                    map[int]int
	}{
		{name: "no breaks", logs: []*ClientLog{{}, {}}, byReplica: map[int]int{}},
		{
			name: "resumed on two replicas, one with a snapshot",
			logs: []*ClientLog{
				{Reconnects: []Reconnect{{Broke: 10_100, Resumed: 10_600, Replica: 1, Attempts: 1}}},
				{Reconnects: []Reconnect{{Broke: 10_200, Resumed: 12_000, Replica: 2, Attempts: 3, Snapshot: true}}},
			},
			broken: 2, resumed: 2, breaks: 2, snapshots: 1, attempts: 3,
			delay: us(600, 2000), outage: us(500, 1800), byReplica: map[int]int{1: 1, 2: 1},
		},
		{
			name: "breaks before the instant are not counted; a second break counts as a break only",
			logs: []*ClientLog{{Reconnects: []Reconnect{
				{Broke: 5_000, Resumed: 5_100, Replica: 2, Attempts: 1},
				{Broke: 10_100, Resumed: 10_300, Replica: 1, Attempts: 1},
				{Broke: 11_000, Resumed: 11_500, Replica: 2, Attempts: 2, Snapshot: true},
			}}},
			broken: 1, resumed: 1, breaks: 2, snapshots: 1, attempts: 2,
			delay: us(300), outage: us(200), byReplica: map[int]int{1: 1},
		},
		{
			name:   "never resumed",
			logs:   []*ClientLog{{Reconnects: []Reconnect{{Broke: 10_100, Replica: 1, Attempts: 4}}}},
			broken: 1, breaks: 1, attempts: 4, byReplica: map[int]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := SummarizeResumptions(tt.logs, kill)
			if r.Broken != tt.broken || r.Resumed != tt.resumed || r.Breaks != tt.breaks || r.Snapshots != tt.snapshots || r.MaxAttempts != tt.attempts ||
				r.Delay != Summarize(tt.delay) || r.Outage != Summarize(tt.outage) || !maps.Equal(r.ByReplica, tt.byReplica) {
				t.Errorf("SummarizeResumptions = %+v", r)
			}
		})
	}
}
