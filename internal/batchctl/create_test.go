package batchctl_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestCreateWatchResults: create uploads the file, creates the batch,
// watches it to its end and writes its results.
func TestCreateWatchResults(t *testing.T) {
	clk := newClock()
	e := start(t, clk)
	dir := t.TempDir()
	in := filepath.Join(dir, "input.jsonl")
	// More than one upload chunk of input.
	ids := []string{"req-1", "fail-2"}
	for len(ids) < 3000 {
		ids = append(ids, "req-"+strings.Repeat("x", 100)+string(rune('a'+len(ids)%26))+strings.Repeat("y", len(ids)%7)+"-"+itoa(len(ids)))
	}
	data := input(ids...)
	if len(data) < 300<<10 {
		t.Fatalf("input of %d bytes only", len(data))
	}
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	stdout, done := runAsync(t.Context(), e, "create", "--file", in, "--metadata", "team=search", "--metadata", "run=7",
		"--watch", "--results", out)
	waitFor(t, stdout, "validating")
	clk.run(t)
	r := wait(t, done)
	if r.code != 0 {
		t.Fatalf("create: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`(?m)^uploaded input.jsonl: (\d+) bytes as (file_\w+)\ncreated (batch_\w+) \(validating\) of (file_\w+)\n`).FindStringSubmatch(r.stdout)
	if m == nil || m[1] != itoa(len(data)) || m[2] != m[4] {
		t.Fatalf("create output:\n%s", r.stdout)
	}
	id := m[3]
	if !strings.Contains(r.stdout, "summary: 1 batch: 1 completed") || !strings.Contains(r.stderr, "3000 results of "+id+" written to "+out) {
		t.Errorf("create output:\n%s\nstderr %s", r.stdout, r.stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := parseResults(t, string(got))
	if len(lines) != 3000 || lines[0].CustomID != "req-1" || lines[len(lines)-1].Kind != "errors" ||
		lines[len(lines)-1].CustomID != "fail-2" {
		t.Errorf("results: %d lines, first %+v, last %+v", len(lines), lines[0], lines[len(lines)-1])
	}
	g := run(t.Context(), e, "get", id)
	if !strings.Contains(g.stdout, "run=7 team=search\n") || !bytes.Contains([]byte(g.stdout), []byte("completed")) {
		t.Errorf("the batch:\n%s", g.stdout)
	}
}

func TestCreateUsage(t *testing.T) {
	e := start(t, newClock())
	in := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(in, input("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"create"},
		{"create", "--file", filepath.Join(t.TempDir(), "missing.jsonl")},
		{"create", "--file", in, "--metadata", "novalue"},
		{"create", "--file", in, "extra"},
	} {
		if r := run(t.Context(), e, args...); r.code != 2 {
			t.Errorf("%q: exit %d, %s", args, r.code, r.stderr)
		}
	}
	// Without --watch: created, not watched; -o json prints the batch.
	r := run(t.Context(), e, "-o", "json", "create", "--file", in)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, `"status":"validating"`) {
		t.Errorf("create -o json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
