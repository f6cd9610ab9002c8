package telemetry

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

func TestStatsCallbacks(t *testing.T) {
	t.Parallel()
	type series struct {
		name string
		typ  dto.MetricType
		want float64
	}
	hubSeries := func(s watch.Stats) []series {
		return []series{
			{"batchgate_watchers", dto.MetricType_GAUGE, float64(s.Watchers)},
			{"batchgate_pollers", dto.MetricType_GAUGE, float64(s.Pollers)},
			{"batchgate_upstream_polls_total", dto.MetricType_COUNTER, float64(s.Polls)},
			{"batchgate_getbatch_upstream_calls_total", dto.MetricType_COUNTER, float64(s.Gets)},
			{"batchgate_getbatch_coalesced_total", dto.MetricType_COUNTER, float64(s.Coalesced)},
			{"batchgate_getbatch_cache_hits_total", dto.MetricType_COUNTER, float64(s.CacheHits)},
		}
	}
	upSeries := func(s upstream.Stats) []series {
		return []series{
			{"batchgate_upstream_retries_total", dto.MetricType_COUNTER, float64(s.Retries)},
			{"batchgate_upstream_rate_limited_total", dto.MetricType_COUNTER, float64(s.RateLimited)},
		}
	}
	for _, tc := range []struct {
		name string
		hub  []watch.Stats // successive RegisterHub calls; the last counts
		up   []upstream.Stats
	}{
		{name: "none registered"},
		{name: "hub only", hub: []watch.Stats{{Watchers: 3, Pollers: 2, Polls: 10, Gets: 5, Coalesced: 4, CacheHits: 7}}},
		{name: "upstream only", up: []upstream.Stats{{Requests: 9, Retries: 3, RateLimited: 2}}},
		{name: "both, replaced", hub: []watch.Stats{{Watchers: 1}, {Watchers: 1 << 40, Polls: 1<<53 - 1}}, up: []upstream.Stats{{Retries: 1}, {Retries: 8, RateLimited: 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tel := newTelemetry(t, Options{})
			var calls sync.Map // name → count of callback calls
			for i, s := range tc.hub {
				tel.RegisterHub(func() watch.Stats { n, _ := calls.LoadOrStore(fmt.Sprint("hub", i), new(int)); *n.(*int)++; return s })
			}
			for i, s := range tc.up {
				tel.RegisterUpstream(func() upstream.Stats {
					n, _ := calls.LoadOrStore(fmt.Sprint("up", i), new(int))
					*n.(*int)++
					return s
				})
			}
			m := scrape(t, tel)
			var want []series
			if n := len(tc.hub); n > 0 {
				want = append(want, hubSeries(tc.hub[n-1])...)
			} else {
				for _, s := range hubSeries(watch.Stats{}) {
					if m[s.name] != nil {
						t.Errorf("%s present without RegisterHub", s.name)
					}
				}
			}
			if n := len(tc.up); n > 0 {
				want = append(want, upSeries(tc.up[n-1])...)
			} else {
				for _, s := range upSeries(upstream.Stats{}) {
					if m[s.name] != nil {
						t.Errorf("%s present without RegisterUpstream", s.name)
					}
				}
			}
			for _, s := range want {
				mf := m[s.name]
				if mf == nil {
					t.Errorf("%s missing", s.name)
					continue
				}
				if mf.GetType() != s.typ {
					t.Errorf("%s is a %v, want a %v", s.name, mf.GetType(), s.typ)
				}
				if got := m.value(t, s.name, nil); got != s.want {
					t.Errorf("%s = %v, want %v", s.name, got, s.want)
				}
			}
			// One callback call per scrape, and only the latest callback.
			calls.Range(func(k, v any) bool {
				key := k.(string)
				last := (strings.HasPrefix(key, "hub") && key == fmt.Sprint("hub", len(tc.hub)-1)) ||
					(strings.HasPrefix(key, "up") && key == fmt.Sprint("up", len(tc.up)-1))
				if !last || *v.(*int) != 1 {
					t.Errorf("callback %s called %d times", key, *v.(*int))
				}
				return true
			})
		})
	}
}

// TestMetricsHandler: the runtime collectors are there, and every family
// of this package is documented in the package doc.
func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, Options{})
	tel.RegisterHub(func() watch.Stats { return watch.Stats{} })
	tel.RegisterUpstream(func() upstream.Stats { return upstream.Stats{} })
	m := scrape(t, tel)
	want := []string{"go_goroutines", "go_memstats_alloc_bytes", "promhttp_metric_handler_requests_total"}
	if runtime.GOOS == "linux" {
		want = append(want, "process_cpu_seconds_total", "process_resident_memory_bytes")
	}
	for _, name := range want {
		if m[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	// The second scrape sees the first.
	m = scrape(t, tel)
	if got := m.value(t, "promhttp_metric_handler_requests_total", L("code", "200")); got != 1 {
		t.Errorf("promhttp_metric_handler_requests_total{code=200} = %v, want 1", got)
	}
	for name, mf := range m {
		if strings.HasPrefix(name, "batchgate_") && mf.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
}

// TestRegistryIsolated: each Telemetry has its own registry, so that tests
// (and, if ever needed, two gateways in one process) do not collide.
func TestRegistryIsolated(t *testing.T) {
	t.Parallel()
	a, b := newTelemetry(t, Options{}), newTelemetry(t, Options{})
	a.RegisterHub(func() watch.Stats { return watch.Stats{Watchers: 1} })
	if scrape(t, b)["batchgate_watchers"] != nil {
		t.Error("b sees a's hub")
	}
}

// invented caps names that start with "inv:" in the group "inv:other", and
// leaves the others (known callers) uncapped.
func invented(name string) (string, bool) {
	if strings.HasPrefix(name, "inv:") {
		return "inv:other", true
	}
	return "", false
}

func TestCallerSet(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxCallerLen+1)
	for _, tc := range []struct {
		name  string
		group func(string) (string, bool)
		in    []string
		want  []string
	}{
		{"empty is unknown", nil, []string{""}, []string{"unknown"}},
		{"kept up to the cap", nil, []string{"a", "b", "c", "a", "b"}, []string{"a", "b", "other", "a", "b"}},
		{"invalid UTF-8", nil, []string{"\xff"}, []string{"other"}},
		{"too long", nil, []string{long, "a"}, []string{"other", "a"}},
		{"longest kept", nil, []string{long[1:]}, []string{long[1:]}},
		{"known names are never capped", invented,
			[]string{"a", "b", "c", "d", "a"}, []string{"a", "b", "c", "d", "a"}},
		{"invented names are capped in their group", invented,
			[]string{"inv:1", "inv:2", "inv:3", "inv:1", "inv:4"}, []string{"inv:1", "inv:2", "inv:other", "inv:1", "inv:other"}},
		{"invented names do not crowd out known ones", invented,
			[]string{"inv:1", "inv:2", "inv:3", "a", "b", "c", "inv:4"}, []string{"inv:1", "inv:2", "inv:other", "a", "b", "c", "inv:other"}},
		{"known names do not take invented names' slots", invented,
			[]string{"a", "b", "c", "inv:1", "inv:2", "inv:3"}, []string{"a", "b", "c", "inv:1", "inv:2", "inv:other"}},
		{"groups are capped separately", func(name string) (string, bool) { return name[:1] + "-other", true },
			[]string{"x1", "x2", "x3", "y1", "y2", "y3"}, []string{"x1", "x2", "x-other", "y1", "y2", "y-other"}},
		{"too long known name", invented, []string{long}, []string{"other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCallerSet(2, tc.group)
			for i, in := range tc.in {
				if got := c.label(in); got != tc.want[i] {
					t.Errorf("label(%q) #%d = %q, want %q", in, i, got, tc.want[i])
				}
			}
		})
	}

	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		c := newCallerSet(defaultMaxCallers, nil)
		var wg sync.WaitGroup
		var mu sync.Mutex
		kept := map[string]bool{}
		for g := range 8 {
			wg.Go(func() {
				for i := range 300 {
					name := fmt.Sprint("caller-", (i*7+g)%300)
					if got := c.label(name); got != callerOther {
						if got != name {
							t.Errorf("label(%q) = %q", name, got)
						}
						mu.Lock()
						kept[got] = true
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if len(kept) != defaultMaxCallers {
			t.Errorf("%d names kept, want %d", len(kept), defaultMaxCallers)
		}
	})
}
