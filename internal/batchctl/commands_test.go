package batchctl_test

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/simulator"
)

func TestGet(t *testing.T) {
	e := start(t, newClock())
	r := run(t.Context(), e, "get", simulator.DemoFailed)
	if r.code != 0 {
		t.Fatalf("get: exit %d, stderr %s", r.code, r.stderr)
	}
	for _, want := range []string{"id          batch_demo_failed\n", "status      failed\n",
		"errors      line 3: invalid_value: Line 3: model 'gpt-unknown' is not supported.\n",
		"            line 7: invalid_json_line:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get text: no %q in\n%s", want, r.stdout)
		}
	}

	// -o json after the command: one REST batch object.
	r = run(t.Context(), e, "get", simulator.DemoCompleted, "-o", "json")
	var b struct {
		ID            string            `json:"id"`
		Status        string            `json:"status"`
		OutputFileID  *string           `json:"output_file_id"`
		RequestCounts map[string]int    `json:"request_counts"`
		Metadata      map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || r.code != 0 || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("get json: exit %d, %v:\n%s", r.code, err, r.stdout)
	}
	if b.ID != simulator.DemoCompleted || b.Status != "completed" || b.OutputFileID == nil ||
		b.RequestCounts["completed"] != 2 || b.Metadata["job"] != "nightly" {
		t.Errorf("get json: %+v", b)
	}

	// An unknown batch: refused by the gateway, exit 1.
	r = run(t.Context(), e, "get", "batch_nope")
	if r.code != 1 || !strings.Contains(r.stderr, "not_found") {
		t.Errorf("get unknown: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestList(t *testing.T) {
	e := start(t, newClock())
	r := run(t.Context(), e, "list")
	if r.code != 0 {
		t.Fatalf("list: exit %d, %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "STATUS") {
		t.Fatalf("list: want a header and the 6 demo batches:\n%s", r.stdout)
	}
	for _, id := range []string{simulator.DemoProgress, simulator.DemoFailed, simulator.DemoExpired} {
		if !strings.Contains(r.stdout, id) {
			t.Errorf("list: no %s", id)
		}
	}
	if !strings.Contains(r.stdout, "324/500") {
		t.Errorf("list: no counts of the expired batch:\n%s", r.stdout)
	}

	// One page of 2: says there is more.
	r = run(t.Context(), e, "list", "--limit", "2")
	if n := strings.Count(r.stdout, "\n"); r.code != 0 || n != 3 || !strings.Contains(r.stderr, "--all") {
		t.Errorf("list --limit 2: exit %d, %d lines:\n%s\nstderr %s", r.code, n, r.stdout, r.stderr)
	}

	// Every page of 2, as JSON: the 6 batches, one object a line, each once.
	r = run(t.Context(), e, "-o", "json", "list", "--limit", "2", "--all")
	seen := map[string]bool{}
	for line := range strings.Lines(r.stdout) {
		var b struct{ ID, Status string }
		if err := json.Unmarshal([]byte(line), &b); err != nil || b.ID == "" || b.Status == "" {
			t.Fatalf("list json line %q: %v", line, err)
		}
		if seen[b.ID] {
			t.Errorf("list --all: %s twice", b.ID)
		}
		seen[b.ID] = true
	}
	if r.code != 0 || len(seen) != 6 {
		t.Errorf("list --all -o json: exit %d, %d batches:\n%s", r.code, len(seen), r.stdout)
	}
}

func TestCancel(t *testing.T) {
	e := start(t, newClock())
	id := createBatch(t, e, "req-1", "req-2")
	r := run(t.Context(), e, "cancel", id)
	if r.code != 0 || !strings.Contains(r.stdout, "status      cancelling\n") || !strings.Contains(r.stdout, "cancelling  ") {
		t.Errorf("cancel: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// A terminal batch comes back as it is.
	r = run(t.Context(), e, "cancel", "-o", "json", simulator.DemoCompleted)
	var b struct{ ID, Status string }
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || r.code != 0 || b.Status != "completed" {
		t.Errorf("cancel json: exit %d, %v, %+v", r.code, err, b)
	}
}

func TestUsageErrors(t *testing.T) {
	e := start(t, newClock())
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"get"},
		{"get", "a", "b"},
		{"watch"},
		{"list", "--limit", "0"},
		{"list", "--bogus"},
		{"-o", "yaml", "get", "x"},
	} {
		r := run(t.Context(), e, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "batchctl:") {
			t.Errorf("%q: exit %d, stderr %q; want 2", args, r.code, r.stderr)
		}
	}
	r := run(t.Context(), e, "-h")
	if r.code != 0 || !strings.Contains(r.stdout, "usage: batchctl") || !strings.Contains(r.stdout, "Exit status") {
		t.Errorf("-h: exit %d, %q", r.code, r.stdout)
	}
}

// TestUnreachable: no gateway at the address is exit 2, for a call and a
// watch.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	e := start(t, newClock())
	for _, args := range [][]string{{"get", "batch_x"}, {"watch", "batch_x", "batch_y"}, {"list"}} {
		r := run(t.Context(), e, append([]string{"-addr", addr}, args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "cannot reach the gateway at "+addr) {
			t.Errorf("%q: exit %d, stderr %q; want 2", args, r.code, r.stderr)
		}
	}
}
