package loadtest

import (
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
