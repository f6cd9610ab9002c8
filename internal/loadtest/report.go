package loadtest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Markdown returns the result as a Markdown table, one column per phase.
func (r *Result) Markdown() string {
	c := r.Config
	type col struct {
		head string
		rows []string
	}
	var cols []col
	add := func(head string, rows ...string) { cols = append(cols, col{head, rows}) }

	watch := func(w *WatchResult, clients string, hasLatency bool) []string {
		d := w.Deliveries
		lat := "—"
		if hasLatency {
			lat = triple(d.Latency)
		}
		return []string{
			clients,
			batches(w.Polls, c.Batches),
			requests(w.Polls),
			lat,
			triple(d.LatencyUpstream),
			staleness(d.Staleness),
			fmt.Sprintf("%s / %d / %d", thousands(int64(d.Pairs)), d.Skipped, d.Missed),
			rss(w),
			rssWindow(w),
			cpu(w.CPU, w.Usage, w.Window),
		}
	}
	g := r.GRPC
	add("WatchBatch, gRPC", watch(g, fmt.Sprintf("%s streams on %s connections", thousands(int64(g.Watchers)), thousands(int64(g.Conns))), true)...)
	if s := r.SSE; s != nil {
		add("WatchBatch, SSE", watch(s, fmt.Sprintf("%s, one connection each", thousands(int64(s.Watchers))), false)...)
	}
	if n := r.Naive; n != nil {
		add("naive: clients poll the upstream", []string{
			fmt.Sprintf("%s on %s connections", thousands(int64(n.Clients)), thousands(int64(n.Conns))),
			batches(n.Requests, c.Batches),
			requests(n.Requests),
			"—", "—",
			staleness(n.Deliveries.Staleness),
			"—", "—", "—",
			cpu(0, n.Usage, n.Window),
		}...)
	}
	labels := []string{
		"clients",
		"batches watched (non-terminal)",
		fmt.Sprintf("upstream requests per %s interval: mean (min–max)", c.Interval),
		"delivery latency, poll saw the change → watcher got it (observed_at): p50 / p99 / max",
		"delivery latency, upstream answered that poll → watcher got it: p50 / p99 / max",
		"client-visible delay, upstream change → client saw it: mean / p50 / p99",
		"(watcher, observed change) pairs / skipped / missed",
		"gateway RSS before → after opening and settling (growth per watcher)",
		"gateway RSS in the window, sampled every second: mean / peak (growth per watcher)",
		"CPU in the window: gateway / load tool / other processes (one core = 100%)",
	}
	var b strings.Builder
	b.WriteString("| |")
	for _, cl := range cols {
		b.WriteString(" " + cl.head + " |")
	}
	b.WriteString("\n| --- |")
	for range cols {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for i, l := range labels {
		b.WriteString("| " + l + " |")
		for _, cl := range cols {
			b.WriteString(" " + cl.rows[i] + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func batches(p Polls, n int) string {
	return fmt.Sprintf("%d (%d)", n, p.NonTerminal)
}

func requests(p Polls) string {
	c := p.PerInterval
	return fmt.Sprintf("%s (%s–%s)", thousandsF(c.Mean), thousands(int64(c.Min)), thousands(int64(c.Max)))
}

func triple(s Summary) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s / %s ms", msNum(s.P50), msNum(s.P99), msNum(s.Max))
}

func staleness(s Summary) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s / %s ms", msNum(s.Mean), msNum(s.P50), msNum(s.P99))
}

func rss(w *WatchResult) string {
	if w.RSSBefore == 0 {
		return "n/a (in process)"
	}
	return fmt.Sprintf("%s → %s (%.1f KiB)", mib(w.RSSBefore), mib(w.RSSAfter), w.RSSPerWatcher()/1024)
}

func rssWindow(w *WatchResult) string {
	if w.RSSMean == 0 {
		return "n/a (in process)"
	}
	return fmt.Sprintf("%s / %s (%.1f / %.1f KiB)", mib(w.RSSMean), mib(w.RSSPeak), w.RSSMeanPerWatcher()/1024, w.RSSPeakPerWatcher()/1024)
}

func cpu(gateway time.Duration, u Usage, w Window) string {
	pct := func(d time.Duration) string { return fmt.Sprintf("%.0f%%", 100*d.Seconds()/w.Len().Seconds()) }
	g, other := "—", "n/a"
	if gateway > 0 {
		g = pct(gateway)
	}
	if u.Machine > 0 {
		other = pct(max(u.Machine-gateway-u.LoadTool, 0))
	}
	return g + " / " + pct(u.LoadTool) + " / " + other
}

// msNum formats d in milliseconds: one decimal below 10ms, none above.
func msNum(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return thousands(int64(v + 0.5))
}

// thousands formats n with commas.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func thousandsF(v float64) string {
	if v >= 1000 {
		return thousands(int64(v + 0.5))
	}
	return fmt.Sprintf("%.1f", v)
}

// Raw returns every measured number, one per line.
func (r *Result) Raw() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	c := r.Config
	p("config: watchers=%d conns=%d batches=%d sse=%d naive=%d naive-conns=%d interval=%s duration=%s settle=%s phase=%s tick=%s heartbeat=%s",
		c.Watchers, c.Conns, c.Batches, c.SSE, c.Naive, c.NaiveConns, c.Interval, c.Duration, c.Settle, c.Phase, c.Tick, c.Heartbeat)
	watch := func(name string, w *WatchResult) {
		d := w.Deliveries
		p("%s: watchers=%d conns=%d opened_in=%s open_errors=%d heartbeats=%d errors=%s", name, w.Watchers, w.Conns, w.Opened.Round(time.Millisecond), w.OpenErrors, w.Heartbeats, errs(w.Errors))
		p("%s: rss_before=%d rss_after=%d rss_window_mean=%d rss_window_peak=%d bytes; per watcher: after %.0f bytes (%.2f KiB), window mean %.0f (%.2f KiB), window peak %.0f (%.2f KiB)",
			name, w.RSSBefore, w.RSSAfter, w.RSSMean, w.RSSPeak, w.RSSPerWatcher(), w.RSSPerWatcher()/1024, w.RSSMeanPerWatcher(), w.RSSMeanPerWatcher()/1024, w.RSSPeakPerWatcher(), w.RSSPeakPerWatcher()/1024)
		p("%s: cpu in the window: gateway=%s load_tool=%s machine=%s (%s)", name, w.CPU, w.Usage.LoadTool.Round(time.Millisecond), w.Usage.Machine, w.Window)
		pollsRaw(p, name, w.Polls, w.Window)
		p("%s: upstream changes in window=%d, observed by the gateway's polls=%d, CHANGE events received=%d", name, d.Changes, d.Observed, d.ChangeEvents)
		p("%s: latency observed_at→receipt: %s", name, d.Latency)
		p("%s: latency upstream response→receipt: %s", name, d.LatencyUpstream)
		p("%s: skipped=%d missed=%d unknown_states=%d observed_at_mismatch=%d", name, d.Skipped, d.Missed, d.Unknown, d.ObservedMismatch)
		p("%s: client-visible delay upstream change→receipt: %s (never seen: %d)", name, d.Staleness, d.StaleMissed)
	}
	watch("grpc", r.GRPC)
	if r.SSE != nil {
		watch("sse", r.SSE)
	} else if r.SSEError != "" {
		p("sse: not measured: %s", r.SSEError)
	}
	if n := r.Naive; n != nil {
		p("naive: clients=%d conns=%d failed_polls=%d", n.Clients, n.Conns, n.Failures)
		p("naive: cpu in the window: load_tool=%s machine=%s (%s)", n.Usage.LoadTool.Round(time.Millisecond), n.Usage.Machine, n.Window)
		pollsRaw(p, "naive", n.Requests, n.Window)
		p("naive: upstream changes in window=%d", n.Deliveries.Changes)
		p("naive: client-visible delay upstream change→next poll: %s (never seen: %d, unknown_states=%d)", n.Deliveries.Staleness, n.Deliveries.StaleMissed, n.Deliveries.Unknown)
	}
	p("load tool CPU=%s over %s", r.LoadCPU.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))
	return b.String()
}

func pollsRaw(p func(string, ...any), name string, q Polls, w Window) {
	p("%s: upstream requests per interval: %s; total=%d; distinct batches=%d; per batch in window min=%d max=%d (%s); non-terminal batches=%d",
		name, q.PerInterval, q.PerInterval.Total, q.Batches, q.PerBatchMin, q.PerBatchMax, w, q.NonTerminal)
}

func errs(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%q×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
