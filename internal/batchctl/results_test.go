package batchctl_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/simulator"
)

// resultLine is the part of a results line the tests read.
type resultLine struct {
	Kind       string `json:"kind"`
	Line       int64  `json:"line"`
	CustomID   string `json:"custom_id"`
	ParseError string `json:"parse_error"`
	Response   *struct {
		StatusCode int             `json:"status_code"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
}

func parseResults(t *testing.T, data string) []resultLine {
	t.Helper()
	var out []resultLine
	for line := range strings.Lines(data) {
		var r resultLine
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("results line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func TestResults(t *testing.T) {
	e := start(t, newClock())
	// To a file: the error file's 4 lines.
	path := filepath.Join(t.TempDir(), "errors.jsonl")
	r := run(t.Context(), e, "results", simulator.DemoExpired, "--kind", "errors", "-o", path)
	if r.code != 0 || !strings.Contains(r.stderr, "4 results of batch_demo_expired written to "+path) || r.stdout != "" {
		t.Fatalf("results to a file: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := parseResults(t, string(data))
	if len(lines) != 4 || lines[0].Kind != "errors" || lines[0].CustomID != "request-81" || lines[0].Line != 1 {
		t.Errorf("error lines: %+v", lines)
	}

	// Everything to stdout: the output then the errors, the unreadable
	// line with its parse error.
	r = run(t.Context(), e, "results", simulator.DemoExpired)
	lines = parseResults(t, r.stdout)
	if r.code != 0 || len(lines) != 324 || lines[0].Kind != "output" || lines[323].Kind != "errors" {
		t.Fatalf("results: exit %d, %d lines", r.code, len(lines))
	}
	if lines[1].ParseError == "" || lines[0].Response == nil || lines[0].Response.StatusCode != http.StatusOK {
		t.Errorf("lines 1 and 2: %+v %+v", lines[0], lines[1])
	}

	// A batch not done yet: refused (exit 1), and no file left behind.
	path = filepath.Join(t.TempDir(), "none.jsonl")
	r = run(t.Context(), e, "results", simulator.DemoProgress, "-o", path)
	if r.code != 1 || !strings.Contains(r.stderr, "failedprecondition") {
		t.Errorf("results of a running batch: exit %d, stderr %q", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
	if r := run(t.Context(), e, "results", simulator.DemoExpired, "--kind", "some"); r.code != 2 {
		t.Errorf("--kind some: exit %d", r.code)
	}
}
