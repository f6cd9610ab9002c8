package webhook

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the receiver's Prometheus metrics and its record of the
// arrivals whose first watcher delivery it measures. Create it with
// NewMetrics, register Collectors, and call Delivered when a poller
// publishes a batch's new state. A nil *Metrics records nothing.
type Metrics struct {
	received *prometheus.CounterVec
	delivery prometheus.Histogram
	drops    prometheus.Counter

	mu      sync.Mutex
	pending map[string]time.Time // batch id -> earliest arrival not yet delivered
	max     int
}

// maxPending bounds the arrivals awaiting their delivery; arrivals older
// than pendingFor are forgotten (their batch had no change to publish).
const (
	maxPending = 10_000
	pendingFor = time.Minute
)

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batchgate_webhooks_received_total",
			Help: "Webhook deliveries received, by event type (batch.*; \"other\" for other types, \"none\" when refused before the body was trusted) and outcome (accepted, duplicate, bad_signature, stale, malformed, unknown_type).",
		}, []string{"type", "outcome"}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "batchgate_webhook_delivery_seconds",
			Help:    "From a batch webhook's arrival to the first publication of that batch's next state to its watchers (the upstream GET included).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "batchgate_webhook_pokes_dropped_total",
			Help: "Accepted batch webhooks whose poke was dropped because the receiver's queue was full.",
		}),
		pending: make(map[string]time.Time),
		max:     maxPending,
	}
}

// Collectors returns the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.received, m.delivery, m.drops}
}

func (m *Metrics) count(typ, outcome string) {
	if m != nil {
		m.received.WithLabelValues(typ, outcome).Inc()
	}
}

func (m *Metrics) dropped() {
	if m != nil {
		m.drops.Inc()
	}
}

// arrived records a webhook's arrival for batchID, unless an earlier one
// is still pending.
func (m *Metrics) arrived(batchID string, at time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pending[batchID]; ok {
		return
	}
	if len(m.pending) >= m.max {
		for id, t := range m.pending {
			if at.Sub(t) > pendingFor {
				delete(m.pending, id)
			}
		}
		if len(m.pending) >= m.max {
			return
		}
	}
	m.pending[batchID] = at
}

// forget drops the arrival at of batchID, if it is still the pending one.
func (m *Metrics) forget(batchID string, at time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.pending[batchID]; ok && t.Equal(at) {
		delete(m.pending, batchID)
	}
}

// Delivered is called when a poller publishes a new state of batchID to
// its watchers, at at. If a webhook for the batch arrived and has not been
// delivered yet, it observes the time between them and reports it.
func (m *Metrics) Delivered(batchID string, at time.Time) (time.Duration, bool) {
	if m == nil {
		return 0, false
	}
	m.mu.Lock()
	t, ok := m.pending[batchID]
	ok = ok && !at.Before(t) // a publication before the arrival is not its delivery
	if ok {
		delete(m.pending, batchID)
	}
	m.mu.Unlock()
	if !ok || at.Sub(t) > pendingFor {
		return 0, false
	}
	d := at.Sub(t)
	m.delivery.Observe(d.Seconds())
	return d, true
}
