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
// watcher gets every change either way; with the cluster the leases are
// spread, and after the replica holding the most stops, its watchers
// resume on the others and every watcher gets every batch's terminal
// event.
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
	}, loadtest.ReplicaOptions{Replicas: replicas, Kill: 3 * time.Second, Finish: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s\n%s\n%s", res.Markdown(), res.TakeoverMarkdown(), res.Raw())
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
		if p.States.Watchers != watchers || p.States.Missed != 0 {
			t.Errorf("cluster=%v: states check %+v", p.Cluster, p.States)
		}
	}
	c := res.Cluster
	if c.Remote.Pairs == 0 || c.Remote.Pairs+c.Local.Pairs != c.All.Pairs {
		t.Errorf("cluster: remote %d + local %d pairs, all %d", c.Remote.Pairs, c.Local.Pairs, c.All.Pairs)
	}
	// Batch b's first watcher opened on replica b mod 3: 2, 1 and 1 leases.
	if len(c.Leases) != replicas || c.Leases[0] != 2 || c.Leases[1] != 1 || c.Leases[2] != 1 {
		t.Errorf("cluster: leases per replica %v, want [2 1 1]", c.Leases)
	}
	to := c.Takeover
	if to == nil || to.Killed != 0 || to.Batches == 0 || to.TakenOver != to.Batches || to.Late != 0 || to.Survivors.Missed != 0 || to.Survivors.Pairs == 0 {
		t.Fatalf("takeover: %+v", to)
	}
	const killed = watchers / replicas
	if rs := to.Resumptions; to.KilledWatchers != killed || rs.Broken != killed || rs.Resumed != killed || rs.Delay.N != killed {
		t.Errorf("takeover: %d killed watchers, resumptions %+v", to.KilledWatchers, rs)
	}
	if to.Terminal != batches || to.Finish == 0 || to.Completed <= to.Finish {
		t.Errorf("takeover: %d of %d batches terminal; finish at %d, completed at %d", to.Terminal, batches, to.Finish, to.Completed)
	}
	for name, tt := range map[string]struct {
		n  int
		t  loadtest.Terminals
		st loadtest.StateCheck
	}{
		"survivors": {watchers - killed, to.SurvivorTerminals, to.SurvivorStates},
		"resumed":   {killed, to.ResumedTerminals, to.ResumedStates},
	} {
		if tt.t.Batches != batches || tt.t.Expected != tt.n || tt.t.Got != tt.n || tt.t.Missed != 0 || tt.t.Ended != tt.n || tt.t.BadFlag != 0 {
			t.Errorf("takeover, %s: terminals %+v, want all %d", name, tt.t, tt.n)
		}
		// The finalizing state lasts 3 intervals and the terminal one for
		// ever: two states per watcher at least.
		if tt.st.Watchers != tt.n || tt.st.Required < 2*tt.n || tt.st.Missed != 0 {
			t.Errorf("takeover, %s: states check %+v", name, tt.st)
		}
	}
	if f := res.Failures(); len(f) != 0 {
		t.Errorf("Failures: %q", f)
	}
	if c.NATS.InMsgs == 0 || c.Changes == 0 {
		t.Errorf("cluster: NATS %+v over %d changes", c.NATS, c.Changes)
	}
}
