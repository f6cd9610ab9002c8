package loadtest

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// recordCalls returns calls for every floor target that append their
// name to *order.
func recordCalls(order *[]string) map[string]Call {
	calls := map[string]Call{}
	for _, n := range floorTargets {
		calls[n] = func(context.Context) error {
			*order = append(*order, n)
			return nil
		}
	}
	return calls
}

func TestMeasureFloorInterleaves(t *testing.T) {
	t.Parallel()
	var order []string
	const warmup, rounds = 3, 11
	res, err := MeasureFloor(t.Context(), FloorConfig{Calls: recordCalls(&order), Warmup: warmup, Rounds: rounds, Blocks: 4})
	if err != nil {
		t.Fatal(err)
	}
	n := len(floorTargets)
	if len(order) != (warmup+rounds)*n {
		t.Fatalf("%d calls, want %d", len(order), (warmup+rounds)*n)
	}
	for round := range warmup + rounds {
		got := order[round*n : (round+1)*n]
		// Every target once, starting at the round's own target.
		if got[0] != floorTargets[round%n] {
			t.Errorf("round %d starts at %s, want %s", round, got[0], floorTargets[round%n])
		}
		sorted := slices.Sorted(slices.Values(got))
		if want := slices.Sorted(slices.Values(floorTargets)); !slices.Equal(sorted, want) {
			t.Errorf("round %d calls %v, want each target once", round, got)
		}
	}
	for _, name := range floorTargets {
		if len(res.Samples[name]) != rounds {
			t.Errorf("%s: %d samples, want %d (warm-up not counted)", name, len(res.Samples[name]), rounds)
		}
	}
}

func TestMeasureFloorErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name   string
		mutate func(map[string]Call, *FloorConfig)
		want   string
	}{
		{"missing target", func(c map[string]Call, _ *FloorConfig) { delete(c, RESTCached) }, `no call for target "rest-cached"`},
		{"unknown target", func(c map[string]Call, _ *FloorConfig) { c["other"] = c[Direct] }, "unknown targets"},
		{"no rounds", func(_ map[string]Call, f *FloorConfig) { f.Rounds = 0 }, "Rounds must be positive"},
		{"a call fails", func(c map[string]Call, _ *FloorConfig) {
			c[GRPCCached] = func(context.Context) error { return boom }
		}, "grpc-cached, round 0: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mine []string
			calls := recordCalls(&mine)
			cfg := FloorConfig{Rounds: 2}
			tt.mutate(calls, &cfg)
			cfg.Calls = calls
			_, err := MeasureFloor(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("MeasureFloor = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// constant returns n samples of d.
func constant(n int, d time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}

func TestFloorRatios(t *testing.T) {
	t.Parallel()
	const n = 20
	us := time.Microsecond
	res := &FloorResult{blocks: 4, Samples: map[string][]time.Duration{
		Direct:       constant(n, 100*us),
		CannedGRPC:   constant(n, 50*us),
		CannedHTTP:   constant(n, 40*us),
		GRPCUncached: constant(n, 225*us),
		RESTUncached: constant(n, 280*us),
		GRPCCached:   constant(n, 50*us),
		RESTCached:   constant(n, 60*us),
	}}
	// The last block of the uncached REST answers is twice as slow: the
	// all-rounds median does not move, the blocks' maximum does.
	for i := 15; i < n; i++ {
		res.Samples[RESTUncached][i] = 560 * us
	}
	want := map[string][4]float64{ // all, median, min, max
		"gRPC uncached": {1.5, 1.5, 1.5, 1.5},
		"REST uncached": {2, 2, 2, 4},
		"gRPC cached":   {1, 1, 1, 1},
		"REST cached":   {1.5, 1.5, 1.5, 1.5},
	}
	rs := res.Ratios()
	if len(rs) != len(want) {
		t.Fatalf("%d ratios, want %d", len(rs), len(want))
	}
	for _, r := range rs {
		w, ok := want[r.Name]
		got := [4]float64{r.All, r.Median, r.Min, r.Max}
		for i := range got {
			if !ok || math.Abs(got[i]-w[i]) > 1e-9 {
				t.Errorf("%s: (all, median, min, max) = %v, want %v", r.Name, got, w)
				break
			}
		}
	}
	md := res.Markdown()
	for _, line := range []string{
		"| `direct` | 20 | 100.0 µs | 100.0 µs | 100.0 µs |",
		"| REST uncached | `canned-http` + `direct` | 2.00× | 2.00× | 2.00–4.00× |",
		"| gRPC cached | `canned-grpc` | 1.00× | 1.00× | 1.00–1.00× |",
	} {
		if !strings.Contains(md, line) {
			t.Errorf("Markdown lacks %q:\n%s", line, md)
		}
	}
}

// TestStartCannedFailures: a canned-hops process that exits, or says
// something else than its ready line, fails the start at once with what
// it printed.
func TestStartCannedFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cmd  []string
		want string
	}{
		{"exits", []string{"sh", "-c", "echo broken >&2; exit 3"}, "exited: exit status 3\nbroken"},
		{"no ready line", []string{"sh", "-c", "echo nonsense; exec sleep 30"}, `said "nonsense"`},
		{"no command", nil, "no command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := startCanned(t.Context(), tt.cmd, "application/json", []byte("{}"), &batchv1.GetBatchResponse{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("startCanned = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
