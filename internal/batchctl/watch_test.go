package batchctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/simulator"
)

// TestWatchCompleted follows a batch to completed in plain mode: a line
// per change, the summary, exit 0.
func TestWatchCompleted(t *testing.T) {
	clk := newClock()
	e := start(t, clk)
	id := createBatch(t, e, "req-1", "fail-2", "req-3")
	out, done := runAsync(t.Context(), e, "watch", id)
	waitFor(t, out, "validating")
	clk.run(t)
	r := wait(t, done)
	if r.code != 0 {
		t.Fatalf("watch: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	body, summary, ok := strings.Cut(r.stdout, "summary: ")
	if !ok {
		t.Fatalf("no summary:\n%s", r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "validating") || !strings.Contains(lines[len(lines)-1], "completed") {
		t.Errorf("want a line per change, validating to completed:\n%s", body)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, id+"  ") || !strings.Contains(l, "elapsed ") || strings.Contains(l, "\x1b") {
			t.Errorf("plain line %q", l)
		}
	}
	if !strings.Contains(lines[len(lines)-1], "3/3 100%  1 failed") {
		t.Errorf("last line: %q", lines[len(lines)-1])
	}
	if !strings.HasPrefix(summary, "1 batch: 1 completed\n") || !strings.Contains(summary, id+"  completed") {
		t.Errorf("summary: %q", summary)
	}
}

// TestWatchNotCompleted: a failed or cancelled batch among the watched is
// exit 1, and so is an id that cannot be watched; the others go on.
func TestWatchNotCompleted(t *testing.T) {
	e := start(t, newClock())
	for _, tc := range []struct {
		ids  []string
		want []string
	}{
		{[]string{simulator.DemoFailed}, []string{"summary: 1 batch: 1 failed", "invalid_value: Line 3"}},
		{[]string{simulator.DemoCompleted, simulator.DemoCancelled}, []string{"summary: 2 batches: 1 completed, 1 cancelled"}},
		{[]string{simulator.DemoCompleted, "batch_unknown"}, []string{"error        upstream answered HTTP 404", "summary: 2 batches: 1 completed, 1 error"}},
	} {
		r := run(t.Context(), e, append([]string{"watch"}, tc.ids...)...)
		if r.code != 1 {
			t.Errorf("watch %v: exit %d, want 1\n%s%s", tc.ids, r.code, r.stdout, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("watch %v: no %q in\n%s", tc.ids, w, r.stdout)
			}
		}
	}
	r := run(t.Context(), e, "watch", simulator.DemoCompleted, simulator.DemoCompleted)
	if r.code != 0 || !strings.Contains(r.stdout, "summary: 1 batch: 1 completed") {
		t.Errorf("watch the same id twice: exit %d\n%s", r.code, r.stdout)
	}
}

// TestWatchCancelled: a batch cancelled (with batchctl cancel) while
// watched ends the watch with exit 1.
func TestWatchCancelled(t *testing.T) {
	clk := newClock()
	e := start(t, clk)
	id := createBatch(t, e, "req-1", "req-2")
	out, done := runAsync(t.Context(), e, "watch", id)
	waitFor(t, out, "validating")
	if r := run(t.Context(), e, "cancel", id); r.code != 0 {
		t.Fatalf("cancel: %d %s", r.code, r.stderr)
	}
	waitFor(t, out, "cancelling")
	clk.run(t)
	r := wait(t, done)
	if r.code != 1 || !strings.Contains(r.stdout, "summary: 1 batch: 1 cancelled") {
		t.Errorf("watch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestWatchJSON: -o json is one object per event, then a summary object.
func TestWatchJSON(t *testing.T) {
	e := start(t, newClock())
	r := run(t.Context(), e, "-o", "json", "watch", simulator.DemoCompleted, "batch_unknown")
	var events []map[string]any
	for line := range strings.Lines(r.stdout) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		events = append(events, ev)
	}
	if r.code != 1 || len(events) != 3 {
		t.Fatalf("exit %d, %d events:\n%s", r.code, len(events), r.stdout)
	}
	byID := map[string]map[string]any{}
	for _, ev := range events[:2] {
		byID[ev["batch_id"].(string)] = ev
	}
	if ev := byID[simulator.DemoCompleted]; ev["type"] != "snapshot" || ev["terminal"] != true ||
		ev["batch"].(map[string]any)["status"] != "completed" || ev["tag"] == "" {
		t.Errorf("completed event: %v", ev)
	}
	if ev := byID["batch_unknown"]; ev["type"] != "error" || ev["error"].(map[string]any)["code"] != "not_found" {
		t.Errorf("error event: %v", ev)
	}
	sum := events[2]
	if sum["type"] != "summary" || sum["exit_code"] != 1.0 || len(sum["batches"].([]any)) != 2 {
		t.Errorf("summary: %v", sum)
	}
}

// TestWatchInterrupted: cancelling the context stops the watch (exit
// 130), not the batch.
func TestWatchInterrupted(t *testing.T) {
	e := start(t, newClock())
	id := createBatch(t, e, "req-1")
	ctx, cancel := context.WithCancel(t.Context())
	out, done := runAsync(ctx, e, "watch", id)
	waitFor(t, out, "validating")
	cancel()
	r := wait(t, done)
	if r.code != 130 || !strings.Contains(r.stdout, "stopped watching: 1 batch: 1 still validating") ||
		!strings.Contains(r.stderr, "the batches go on") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if g := run(t.Context(), e, "get", id); !strings.Contains(g.stdout, "validating") {
		t.Errorf("the batch after the watch: %s", g.stdout)
	}
}
