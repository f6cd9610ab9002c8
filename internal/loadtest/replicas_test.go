package loadtest_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/loadtest"
)

// TestSmokeReplicas: three in-process gateways poll each batch three
// times per interval on their own, once with the shared NATS, and every
// watcher gets every change either way.
func TestSmokeReplicas(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const replicas, watchers, batches = 3, 24, 4
	res, err := loadtest.RunReplicas(ctx, loadtest.Config{
		Watchers: watchers, Conns: 3, Batches: batches,
		Interval: 300 * time.Millisecond, Duration: 3 * time.Second, Settle: time.Second,
		Phase: 30 * time.Second, Tick: 50 * time.Millisecond,
		Start: startInProcess, Log: testWriter{t},
	}, loadtest.ReplicaOptions{Replicas: replicas, Kill: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s\n%s", res.Markdown(), res.Raw())
	for _, p := range []*loadtest.ReplicaPhase{res.Plain, res.Cluster} {
		want := float64(batches)
		if !p.Cluster {
			want *= replicas
		}
		if got := math.Round(p.Polls.PerInterval.Mean); got != want {
			t.Errorf("cluster=%v: %.2f polls per interval, want %v", p.Cluster, p.Polls.PerInterval.Mean, want)
		}
		d := p.All
		if p.OpenErrors != 0 || len(p.Errors) != 0 {
			t.Errorf("cluster=%v: %d open errors, errors %v", p.Cluster, p.OpenErrors, p.Errors)
		}
		if d.Pairs == 0 || d.Skipped != 0 || d.Missed != 0 || d.StaleMissed != 0 || d.Unknown != 0 || d.ObservedMismatch != 0 {
			t.Errorf("cluster=%v: pairs %d skipped %d missed %d never seen %d unknown %d mismatch %d",
				p.Cluster, d.Pairs, d.Skipped, d.Missed, d.StaleMissed, d.Unknown, d.ObservedMismatch)
		}
		if d.Latency.N != d.Pairs {
			t.Errorf("cluster=%v: %d observed_at samples, want %d", p.Cluster, d.Latency.N, d.Pairs)
		}
	}
	c := res.Cluster
	if c.Remote.Pairs == 0 || c.Remote.Pairs+c.Local.Pairs != c.All.Pairs {
		t.Errorf("cluster: remote %d + local %d pairs, all %d", c.Remote.Pairs, c.Local.Pairs, c.All.Pairs)
	}
	if to := c.Takeover; to == nil || to.Batches == 0 || to.TakenOver != to.Batches || to.Survivors.Missed != 0 || to.Survivors.Pairs == 0 {
		t.Errorf("takeover: %+v", to)
	}
	if c.NATS.InMsgs == 0 || c.Changes == 0 {
		t.Errorf("cluster: NATS %+v over %d changes", c.NATS, c.Changes)
	}
}
