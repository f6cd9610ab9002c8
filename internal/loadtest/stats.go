package loadtest

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary describes a sample of durations.
type Summary struct {
	N                        int
	Min, Mean, P50, P90, P99 time.Duration
	P999, Max                time.Duration
}

// Summarize sorts d in place and summarizes it. Percentiles are
// nearest-rank: Pxx is the smallest value at or below which at least xx% of
// the sample lies. An empty sample gives the zero Summary.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	var sum float64
	for _, v := range d {
		sum += float64(v)
	}
	return Summary{
		N:    len(d),
		Min:  d[0],
		Mean: time.Duration(math.Round(sum / float64(len(d)))),
		P50:  Percentile(d, 50),
		P90:  Percentile(d, 90),
		P99:  Percentile(d, 99),
		P999: Percentile(d, 99.9),
		Max:  d[len(d)-1],
	}
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, which must be sorted ascending: the value at rank ⌈p/100 × n⌉.
// It returns 0 for an empty slice; p ≤ 0 gives the minimum.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps p/100×n from landing just above an integer because
	// of rounding (99.9/100×1000 = 999.0000000000001).
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}

// String formats the summary on one line, in milliseconds.
func (s Summary) String() string {
	if s.N == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d min=%s mean=%s p50=%s p90=%s p99=%s p99.9=%s max=%s",
		s.N, ms(s.Min), ms(s.Mean), ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
}

// ms formats d in milliseconds with one decimal.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// PerInterval splits [from, to) into consecutive intervals of length every
// (a trailing partial interval is dropped) and counts the times that fall
// in each. times need not be sorted; times outside the whole intervals are
// ignored. All values share one unit (the package uses Unix microseconds).
func PerInterval(times []int64, from, to, every int64) []int {
	if every <= 0 || to <= from {
		return nil
	}
	n := (to - from) / every
	counts := make([]int, n)
	end := from + n*every
	for _, t := range times {
		if t < from || t >= end {
			continue
		}
		counts[(t-from)/every]++
	}
	return counts
}

// Counts summarizes per-interval counts.
type Counts struct {
	// Intervals is the number of intervals; Total the sum of the counts.
	Intervals, Total int
	// Mean is Total / Intervals.
	Mean float64
	// Min and Max are the smallest and largest single-interval counts.
	Min, Max int
}

// SummarizeCounts summarizes per-interval counts.
func SummarizeCounts(per []int) Counts {
	if len(per) == 0 {
		return Counts{}
	}
	c := Counts{Intervals: len(per), Min: per[0], Max: per[0]}
	for _, v := range per {
		c.Total += v
		c.Min = min(c.Min, v)
		c.Max = max(c.Max, v)
	}
	c.Mean = float64(c.Total) / float64(len(per))
	return c
}

// String formats the counts as "mean (min–max over N intervals)".
func (c Counts) String() string {
	return fmt.Sprintf("%.1f (min %d, max %d over %d intervals)", c.Mean, c.Min, c.Max, c.Intervals)
}
