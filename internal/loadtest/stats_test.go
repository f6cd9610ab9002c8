package loadtest

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100ms
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value, any p", ms(7), 99, 7 * time.Millisecond},
		{"p0 is the minimum", ms(1, 2, 3), 0, time.Millisecond},
		{"p100 is the maximum", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"median of four is the second (nearest rank)", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the maximum", hundred, 99.9, 100 * time.Millisecond},
		{"p90.5 of 1..100 rounds the rank up", hundred, 90.5, 91 * time.Millisecond},
		{"p99.9 of 1..1000, no float creep", thousand, 99.9, 999 * time.Millisecond},
		{"p99 with one outlier in 100", append(slices.Repeat(ms(1), 99), time.Second), 99, time.Millisecond},
		{"p99 with two outliers in 100", append(slices.Repeat(ms(1), 98), time.Second, time.Second), 99, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(p=%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	if s := Summarize(nil); s != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", s)
	}
	// Unsorted input: Summarize sorts it.
	d := []time.Duration{40, 10, 30, 20, 100}
	got := Summarize(d)
	want := Summary{N: 5, Min: 10, Mean: 40, P50: 30, P90: 100, P99: 100, P999: 100, Max: 100}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if !slices.IsSorted(d) {
		t.Errorf("Summarize left its input unsorted: %v", d)
	}
	if s := got.String(); s != "n=5 min=0.0ms mean=0.0ms p50=0.0ms p90=0.0ms p99=0.0ms p99.9=0.0ms max=0.0ms" {
		t.Errorf("String() = %q", s)
	}
}

func TestPerInterval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		times           []int64
		from, to, every int64
		want            []int
	}{
		{"boundaries belong to the interval they start", []int64{100, 199, 200, 299, 300}, 100, 400, 100, []int{2, 2, 1}},
		{"outside the window is ignored", []int64{99, 400, 401, -5}, 100, 400, 100, []int{0, 0, 0}},
		{"a trailing partial interval is dropped", []int64{100, 350, 399}, 100, 399, 100, []int{1, 0}},
		{"unsorted input", []int64{250, 120, 260, 110}, 100, 300, 100, []int{2, 2}},
		{"window shorter than an interval", []int64{100}, 100, 150, 100, []int{}},
		{"empty window", []int64{100}, 100, 100, 100, nil},
		{"zero interval", []int64{100}, 100, 200, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := PerInterval(tt.times, tt.from, tt.to, tt.every)
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("PerInterval = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestSummarizeCounts(t *testing.T) {
	t.Parallel()
	if c := SummarizeCounts(nil); c != (Counts{}) {
		t.Errorf("SummarizeCounts(nil) = %+v", c)
	}
	got := SummarizeCounts([]int{100, 97, 103, 100})
	want := Counts{Intervals: 4, Total: 400, Mean: 100, Min: 97, Max: 103}
	if got != want {
		t.Errorf("SummarizeCounts = %+v, want %+v", got, want)
	}
	if s := got.String(); s != "100.0 (min 97, max 103 over 4 intervals)" {
		t.Errorf("String() = %q", s)
	}
}

func TestThousands(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
