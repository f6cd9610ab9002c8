package loadtest

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

func TestDeliver(t *testing.T) {
	t.Parallel()
	events := []Event{{Idx: 1, At: 1000}, {Idx: 2, At: 2000}, {Idx: 3, At: 3000}}
	tests := []struct {
		name    string
		seen    []Seen
		delays  []time.Duration
		skipped int
		missed  int
	}{
		{
			name:   "every state, in order",
			seen:   []Seen{{0, 500}, {1, 1010}, {2, 2020}, {3, 3030}},
			delays: []time.Duration{10 * time.Microsecond, 20 * time.Microsecond, 30 * time.Microsecond},
		},
		{
			name:    "a skipped state counts until the later one arrived",
			seen:    []Seen{{0, 500}, {1, 1010}, {3, 3030}},
			delays:  []time.Duration{10 * time.Microsecond, 1030 * time.Microsecond, 30 * time.Microsecond},
			skipped: 1,
		},
		{
			name:   "states never reached are missed",
			seen:   []Seen{{0, 500}, {1, 1010}},
			delays: []time.Duration{10 * time.Microsecond},
			missed: 2,
		},
		{
			name:   "nothing received",
			missed: 3,
		},
		{
			name:   "a repeated state is matched once",
			seen:   []Seen{{1, 1010}, {1, 1500}, {2, 2005}, {3, 3001}},
			delays: []time.Duration{10 * time.Microsecond, 5 * time.Microsecond, time.Microsecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d Delivery
			Deliver(&d, tt.seen, events)
			if !slices.Equal(d.Delays, tt.delays) || d.Skipped != tt.skipped || d.Missed != tt.missed {
				t.Errorf("Deliver = %+v, want delays %v skipped %d missed %d", d, tt.delays, tt.skipped, tt.missed)
			}
		})
	}
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	a := MakeFP("in_progress", 1, 0)
	b := MakeFP("in_progress", 2, 0)
	c := MakeFP("completed", 100, 4)
	tl := NewTimeline([]State{{At: 100, FP: a}, {At: 200, FP: b}, {At: 300, FP: c}})
	if i, ok := tl.Index(b); !ok || i != 1 {
		t.Errorf("Index(b) = %d, %v", i, ok)
	}
	if _, ok := tl.Index(MakeFP("failed", 0, 0)); ok {
		t.Error("Index of an unknown state succeeded")
	}
	for at, want := range map[int64]FP{100: a, 199: a, 200: b, 299: b, 300: c, 1e9: c} {
		if s, ok := tl.At(at); !ok || s.FP != want {
			t.Errorf("At(%d) = %+v, %v; want %+v", at, s, ok, want)
		}
	}
	if _, ok := tl.At(99); ok {
		t.Error("At before the first state succeeded")
	}
	if a.Terminal() || !c.Terminal() || MakeFP("cancelling", 0, 0).Terminal() {
		t.Error("Terminal is wrong")
	}
}

func TestParseFP(t *testing.T) {
	t.Parallel()
	fp, id, err := ParseFP([]byte(`{"id":"batch_1","status":"in_progress","request_counts":{"total":100,"completed":41,"failed":1},"extra":[1]}`))
	if err != nil || id != "batch_1" || fp != (FP{Status: uint8(batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS), Completed: 41, Failed: 1}) {
		t.Errorf("ParseFP = %+v, %q, %v", fp, id, err)
	}
	if fp, _, _ := ParseFP([]byte(`{"status":"something_new"}`)); fp.Status != uint8(batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED) {
		t.Errorf("unknown status parsed as %d", fp.Status)
	}
	if _, _, err := ParseFP([]byte(`{`)); err == nil {
		t.Error("ParseFP accepted malformed JSON")
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	base := time.UnixMicro(1_000_000)
	c := NewClock(base, 100*time.Millisecond)
	for us, want := range map[int64]int64{1_000_000: 0, 1_099_999: 0, 1_100_000: 1, 999_999: -1, 900_000: -1, 899_999: -2} {
		if got := c.Step(us); got != want {
			t.Errorf("Step(%d) = %d, want %d", us, got, want)
		}
	}
	if g := c.Grid(-2); g != 800_000 {
		t.Errorf("Grid(-2) = %d", g)
	}
	// Running: on the grid, not after now.
	now := time.Now()
	got := c.Now()
	if got.After(now.Add(time.Second)) || got.UnixMicro() != c.Grid(c.Step(got.UnixMicro())) || now.Sub(got) > 200*time.Millisecond {
		t.Errorf("running Now() = %v at %v", got, now)
	}
	c.SetManual(123_456)
	if got := c.Now().UnixMicro(); got != 123_456 {
		t.Errorf("manual Now() = %d", got)
	}
	c.Run()
	if got := c.Now(); got.UnixMicro() == 123_456 {
		t.Error("Run did not restart the clock")
	}
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	status := "Name:\tgateway\nVmPeak:\t  999 kB\nVmRSS:\t   16384 kB\nThreads:\t7\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 16<<20 {
		t.Errorf("parseVmRSS = %d, %v", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("parseVmRSS without VmRSS succeeded")
	}
	// Field 2 may hold spaces and parentheses; utime=250, stime=50 ticks.
	stat := "1234 (gate way (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100 0 0"
	if got, err := parseStatCPU([]byte(stat)); err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v", got, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("parseStatCPU of a short line succeeded")
	}
}

func TestOwnProcess(t *testing.T) {
	t.Parallel()
	rss, err := readRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("readRSS(self) = %d, %v", rss, err)
	}
	if _, err := readCPU(os.Getpid()); err != nil {
		t.Errorf("readCPU(self): %v", err)
	}
}

func TestAssign(t *testing.T) {
	t.Parallel()
	// 10,000 watchers, 100 batches, 100 connections: every connection
	// carries 100 streams, one per batch.
	perConn := make(map[int]map[int]int)
	for i := range 10000 {
		b, c := assign(i, 100, 100)
		if perConn[c] == nil {
			perConn[c] = make(map[int]int)
		}
		perConn[c][b]++
	}
	if len(perConn) != 100 {
		t.Fatalf("%d connections used", len(perConn))
	}
	for c, bs := range perConn {
		if len(bs) != 100 {
			t.Fatalf("connection %d carries %d batches", c, len(bs))
		}
		for b, n := range bs {
			if n != 1 {
				t.Fatalf("connection %d carries batch %d %d times", c, b, n)
			}
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	t.Parallel()
	// busy = user+nice+system+irq+softirq+steal = 100+1+50+3+4+2 ticks.
	stat := "cpu  100 1 50 1000 7 3 4 2 9 9\ncpu0 50 0 25 500 3 1 2 1 0 0\nintr 1\n"
	if got, err := parseMachineCPU([]byte(stat)); err != nil || got != 1600*time.Millisecond {
		t.Errorf("parseMachineCPU = %v, %v", got, err)
	}
	if _, err := parseMachineCPU([]byte("intr 1\n")); err == nil {
		t.Error("parseMachineCPU without a cpu line succeeded")
	}
	if _, err := machineCPU(); err != nil {
		t.Errorf("machineCPU: %v", err)
	}
}

func TestParseMetric(t *testing.T) {
	t.Parallel()
	const page = "# HELP batchgate_cluster_leases Leases this replica holds.\n# TYPE batchgate_cluster_leases gauge\n" +
		"batchgate_cluster_leases 34\nbatchgate_cluster_leases_lost_total 2\nbatchgate_cluster_shared 1\nbatchgate_bad NaNx\n"
	tests := []struct {
		name, metric string
		want         int
	}{
		{"a gauge", "batchgate_cluster_leases", 34},
		{"not a prefix of a longer name", "batchgate_cluster_leases_lost", -1},
		{"a later line", "batchgate_cluster_shared", 1},
		{"absent", "batchgate_cluster_nope", -1},
		{"unparsable", "batchgate_bad", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := parseMetric(bufio.NewScanner(strings.NewReader(page)), tt.metric); got != tt.want {
				t.Errorf("parseMetric(%q) = %d, want %d", tt.metric, got, tt.want)
			}
		})
	}
}

func TestSinceKill(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                          "kill+0s",
		1234567 * time.Microsecond: "kill+1.235s",
		-489 * time.Millisecond:    "kill-489ms",
		-1400 * time.Microsecond:   "kill-1ms",
	} {
		if got := sinceKill(d); got != want {
			t.Errorf("sinceKill(%v) = %q, want %q", d, got, want)
		}
	}
}
