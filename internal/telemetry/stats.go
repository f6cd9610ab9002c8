package telemetry

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// RegisterHub makes the scrapes read the hub's counters from stats:
// batchgate_watchers, batchgate_pollers, batchgate_upstream_polls_total,
// batchgate_getbatch_upstream_calls_total, batchgate_getbatch_coalesced_total
// and batchgate_getbatch_cache_hits_total. stats is called once per scrape
// and must be safe for concurrent use. A later call replaces stats; until
// the first, those series are absent.
func (t *Telemetry) RegisterHub(stats func() watch.Stats) { t.hub.stats.Store(&stats) }

// RegisterUpstream makes the scrapes read the upstream client's counters
// from stats: batchgate_upstream_retries_total and
// batchgate_upstream_rate_limited_total. stats is called once per scrape and
// must be safe for concurrent use. A later call replaces stats; until the
// first, those series are absent.
func (t *Telemetry) RegisterUpstream(stats func() upstream.Stats) {
	t.upstream.stats.Store(&stats)
}

// hubCollector reads watch.Stats at scrape time.
type hubCollector struct {
	stats                                        atomic.Pointer[func() watch.Stats]
	watchers, pollers, polls, gets, coal, cached *prometheus.Desc
}

func newHubCollector() *hubCollector {
	return &hubCollector{
		watchers: prometheus.NewDesc("batchgate_watchers", "Active watch subscriptions (gRPC and REST).", nil, nil),
		pollers:  prometheus.NewDesc("batchgate_pollers", "Running shared upstream pollers, one per watched batch.", nil, nil),
		polls:    prometheus.NewDesc("batchgate_upstream_polls_total", "Upstream calls made by the shared pollers.", nil, nil),
		gets:     prometheus.NewDesc("batchgate_getbatch_upstream_calls_total", "Upstream calls made for GetBatch.", nil, nil),
		coal:     prometheus.NewDesc("batchgate_getbatch_coalesced_total", "GetBatch calls that joined an upstream call already in flight.", nil, nil),
		cached:   prometheus.NewDesc("batchgate_getbatch_cache_hits_total", "GetBatch and watch calls answered from a result the gateway already had.", nil, nil),
	}
}

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.watchers, c.pollers, c.polls, c.gets, c.coal, c.cached} {
		ch <- d
	}
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.stats.Load()
	if f == nil || *f == nil {
		return
	}
	s := (*f)()
	ch <- prometheus.MustNewConstMetric(c.watchers, prometheus.GaugeValue, float64(s.Watchers))
	ch <- prometheus.MustNewConstMetric(c.pollers, prometheus.GaugeValue, float64(s.Pollers))
	ch <- prometheus.MustNewConstMetric(c.polls, prometheus.CounterValue, float64(s.Polls))
	ch <- prometheus.MustNewConstMetric(c.gets, prometheus.CounterValue, float64(s.Gets))
	ch <- prometheus.MustNewConstMetric(c.coal, prometheus.CounterValue, float64(s.Coalesced))
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.CounterValue, float64(s.CacheHits))
}

// upstreamCollector reads upstream.Stats at scrape time.
type upstreamCollector struct {
	stats                atomic.Pointer[func() upstream.Stats]
	retries, rateLimited *prometheus.Desc
}

func newUpstreamCollector() *upstreamCollector {
	return &upstreamCollector{
		retries:     prometheus.NewDesc("batchgate_upstream_retries_total", "Upstream attempts that were retries (after the first attempt of a call).", nil, nil),
		rateLimited: prometheus.NewDesc("batchgate_upstream_rate_limited_total", "Upstream answers with status 429 Too Many Requests.", nil, nil),
	}
}

func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.retries
	ch <- c.rateLimited
}

func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.stats.Load()
	if f == nil || *f == nil {
		return
	}
	s := (*f)()
	ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(s.Retries))
	ch <- prometheus.MustNewConstMetric(c.rateLimited, prometheus.CounterValue, float64(s.RateLimited))
}
