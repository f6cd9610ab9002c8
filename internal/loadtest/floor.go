package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Call is one request to a target, made and read to its end; an error
// ends the measurement.
type Call func(ctx context.Context) error

// Target names of MeasureFloor's calls. The floor of an uncached
// GetBatch over a protocol is its canned hop plus Direct; a cached one's
// is its canned hop alone.
const (
	Direct       = "direct"        // GET of the upstream itself
	CannedGRPC   = "canned-grpc"   // a gRPC server that answers the gateway's bytes and does nothing else
	CannedHTTP   = "canned-http"   // the same over plain net/http
	GRPCUncached = "grpc-uncached" // the gateway, cache off: every call goes upstream
	RESTUncached = "rest-uncached"
	GRPCCached   = "grpc-cached" // the gateway with its default cache
	RESTCached   = "rest-cached"
)

// floorTargets are MeasureFloor's targets, in the order of a round's
// first call.
var floorTargets = []string{Direct, CannedGRPC, CannedHTTP, GRPCUncached, RESTUncached, GRPCCached, RESTCached}

// FloorConfig says how MeasureFloor runs.
type FloorConfig struct {
	// Calls maps each target name above to its call; all seven are
	// required.
	Calls map[string]Call
	// Warmup rounds are made and not counted; Rounds are counted. A round
	// calls every target once, one after another, starting each round
	// at the next target, so that no target always follows the same one
	// and drift in the machine's speed falls on all of them alike.
	Warmup, Rounds int
	// Blocks splits the counted rounds into this many consecutive
	// blocks; each ratio is also computed per block, and its spread over
	// the blocks is reported. Default 10.
	Blocks int
}

// FloorResult is the latency of each target, call by call.
type FloorResult struct {
	// Samples holds each target's counted latencies, in call order.
	Samples map[string][]time.Duration
	blocks  int
}

// Ratio is one latency ratio of FloorResult: a gateway target's median
// over the sum of its floor's medians.
type Ratio struct {
	Name  string   // e.g. "gRPC uncached"
	Of    string   // the gateway target
	Floor []string // the targets whose medians sum to the floor
	// All is the ratio of the medians of all counted rounds; Median, Min
	// and Max summarize the same ratio computed block by block.
	All, Median, Min, Max float64
}

// MeasureFloor calls every target of cfg in interleaved rounds and
// returns their latencies. It stops at the first failed call or when ctx
// ends, with an error.
func MeasureFloor(ctx context.Context, cfg FloorConfig) (*FloorResult, error) {
	names := floorTargets
	for _, n := range names {
		if cfg.Calls[n] == nil {
			return nil, fmt.Errorf("loadtest: no call for target %q", n)
		}
	}
	if len(cfg.Calls) != len(names) {
		return nil, errors.New("loadtest: unknown targets among the calls")
	}
	if cfg.Rounds <= 0 {
		return nil, errors.New("loadtest: Rounds must be positive")
	}
	if cfg.Blocks <= 0 {
		cfg.Blocks = 10
	}
	cfg.Blocks = min(cfg.Blocks, cfg.Rounds)
	res := &FloorResult{Samples: make(map[string][]time.Duration, len(names)), blocks: cfg.Blocks}
	for _, n := range names {
		res.Samples[n] = make([]time.Duration, 0, cfg.Rounds)
	}
	for round := range cfg.Warmup + cfg.Rounds {
		for i := range names {
			n := names[(round+i)%len(names)]
			start := time.Now()
			if err := cfg.Calls[n](ctx); err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", n, round, err)
			}
			if round >= cfg.Warmup {
				res.Samples[n] = append(res.Samples[n], time.Since(start))
			}
		}
	}
	return res, nil
}

// median returns the median of d (not modified).
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return Percentile(s, 50)
}

// ratio returns the median of of's samples in [from, to) over the sum of
// the floor targets' medians in the same rounds.
func (r *FloorResult) ratio(of string, floor []string, from, to int) float64 {
	var sum time.Duration
	for _, f := range floor {
		sum += median(r.Samples[f][from:to])
	}
	if sum <= 0 {
		return 0
	}
	return float64(median(r.Samples[of][from:to])) / float64(sum)
}

// Ratios returns the four ratios the floor is about: each gateway target
// over its floor.
func (r *FloorResult) Ratios() []Ratio {
	out := []Ratio{
		{Name: "gRPC uncached", Of: GRPCUncached, Floor: []string{CannedGRPC, Direct}},
		{Name: "REST uncached", Of: RESTUncached, Floor: []string{CannedHTTP, Direct}},
		{Name: "gRPC cached", Of: GRPCCached, Floor: []string{CannedGRPC}},
		{Name: "REST cached", Of: RESTCached, Floor: []string{CannedHTTP}},
	}
	n := len(r.Samples[Direct])
	for i := range out {
		q := &out[i]
		q.All = r.ratio(q.Of, q.Floor, 0, n)
		per := make([]float64, 0, r.blocks)
		for b := range r.blocks {
			from, to := b*n/r.blocks, (b+1)*n/r.blocks
			per = append(per, r.ratio(q.Of, q.Floor, from, to))
		}
		slices.Sort(per)
		q.Min, q.Max = per[0], per[len(per)-1]
		if m := len(per); m%2 == 1 {
			q.Median = per[m/2]
		} else {
			q.Median = (per[m/2-1] + per[m/2]) / 2
		}
	}
	return out
}

// Markdown returns the latencies and the ratios as two Markdown tables.
func (r *FloorResult) Markdown() string {
	var b strings.Builder
	b.WriteString("| target | calls | p10 | median | p90 |\n| --- | --- | --- | --- | --- |\n")
	for _, n := range floorTargets {
		s := slices.Clone(r.Samples[n])
		slices.Sort(s)
		fmt.Fprintf(&b, "| `%s` | %d | %s | %s | %s |\n", n, len(s), us(Percentile(s, 10)), us(Percentile(s, 50)), us(Percentile(s, 90)))
	}
	fmt.Fprintf(&b, "\n| path | floor | ratio of the medians | median of %d blocks | blocks' range |\n| --- | --- | --- | --- | --- |\n", r.blocks)
	for _, q := range r.Ratios() {
		fmt.Fprintf(&b, "| %s | `%s` | %.2f× | %.2f× | %.2f–%.2f× |\n", q.Name, strings.Join(q.Floor, "` + `"), q.All, q.Median, q.Min, q.Max)
	}
	return b.String()
}

// us formats d in microseconds with one decimal.
func us(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}
