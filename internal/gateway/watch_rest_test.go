package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/wire"
)

// restWatchGuard bounds every REST watch request here, so that a stream
// that never delivers fails its test instead of hanging it. Passing runs
// never wait for it.
const restWatchGuard = 30 * time.Second

// restFastPolls polls watched batches every 50ms, once an attempt.
func restFastPolls(c *config.Config) {
	c.Watch.PollInterval = 50 * time.Millisecond
	c.Upstream.MaxAttempts = 1
	c.Service.Heartbeat = time.Hour
}

// restWatch opens GET /v1/batches/{id}/watch as curl -N would, with the
// given Accept header (none when empty); the body is left unread.
func restWatch(t *testing.T, e *env, id, accept string) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), restWatchGuard)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.BaseURL+"/v1/batches/"+id+"/watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("watch %s: %v", id, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

// restGetRaw returns the body of GET /v1/batches/{id}, without its final
// newline.
func restGetRaw(t *testing.T, e *env, id string) []byte {
	t.Helper()
	resp, err := e.HTTP.Get(e.BaseURL + "/v1/batches/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", id, resp.StatusCode, body, err)
	}
	return bytes.TrimSpace(body)
}

// restEvent is one NDJSON watch line, the batch kept as sent.
type restEvent struct {
	Type         string          `json:"type"`
	Sequence     json.Number     `json:"sequence"`
	Terminal     bool            `json:"terminal"`
	ObservedAtMS json.Number     `json:"observed_at_ms"`
	Batch        json.RawMessage `json:"batch"`
	Error        json.RawMessage `json:"error"`
	HTTPStatus   int             `json:"http_status"`
}

func restNextLine(t *testing.T, br *bufio.Reader) restEvent {
	t.Helper()
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading an NDJSON line: %q, %v", line, err)
	}
	var ev restEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return ev
}

// restNextSSE returns the next SSE event block as field -> value (data
// lines joined with "\n").
func restNextSSE(t *testing.T, br *bufio.Reader) map[string]string {
	t.Helper()
	ev := map[string]string{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading an SSE event: %q, %v (so far %v)", line, err, ev)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(ev) == 0 {
				continue
			}
			return ev
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		if old, ok := ev[k]; ok && k == "data" {
			v = old + "\n" + v
		}
		ev[k] = v
	}
}

func restExpectEOF(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last event: %q, %v; want the end of the stream", rest, err)
	}
}

// TestRESTWatchTerminalBatch watches a completed batch: one terminal
// snapshot whose batch is byte for byte what GET returns, then the end.
func TestRESTWatchTerminalBatch(t *testing.T) {
	t.Parallel()
	e := start(t, restFastPolls)
	want := restGetRaw(t, e, simulator.DemoCompleted)

	t.Run("ndjson", func(t *testing.T) {
		t.Parallel()
		resp, br := restWatch(t, e, simulator.DemoCompleted, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		ev := restNextLine(t, br)
		if ev.Type != "snapshot" || ev.Sequence != "1" || !ev.Terminal || ev.ObservedAtMS == "" || ev.ObservedAtMS == "0" {
			t.Errorf("event %+v, want a terminal snapshot numbered 1 with observed_at_ms", ev)
		}
		if !bytes.Equal(ev.Batch, want) {
			t.Errorf("batch %s\nwant (GET) %s", ev.Batch, want)
		}
		restExpectEOF(t, br)
	})
	t.Run("sse", func(t *testing.T) {
		t.Parallel()
		resp, br := restWatch(t, e, simulator.DemoCompleted, "text/event-stream")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" ||
			resp.Header.Get("Cache-Control") != "no-cache" || resp.ContentLength != -1 {
			t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
		}
		ev := restNextSSE(t, br)
		if tag := wire.TagJSON(want); ev["id"] != tag || ev["event"] != "snapshot" || ev["data"] != string(want) {
			t.Errorf("event %v, want id %s (the tag), snapshot, data %s", ev, tag, want)
		}
		if ev := restNextSSE(t, br); ev["event"] != "end" || ev["data"] != "{}" {
			t.Errorf("event %v, want end", ev)
		}
		restExpectEOF(t, br)
	})
}

// TestRESTWatchChange sees a change polled from the upstream arrive as a
// change event, ending the stream when it is terminal.
func TestRESTWatchChange(t *testing.T) {
	t.Parallel()
	e := start(t, restFastPolls)
	const id = "batch_rest_watch_change"
	b := wire.Batch{
		ID: id, Object: "batch", Endpoint: simulator.SupportedEndpoint, Status: simulator.StatusInProgress,
		InputFileID: "file_in", CompletionWindow: simulator.SupportedCompletionWindow,
		RequestCounts: &wire.RequestCounts{Total: 10, Completed: 3}, CreatedAt: new(wire.Int(1710000000)),
	}
	e.Sim.Put(b)

	resp, br := restWatch(t, e, id, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	first := restNextLine(t, br)
	if first.Type != "snapshot" || first.Terminal || !bytes.Contains(first.Batch, []byte(`"status":"in_progress"`)) {
		t.Fatalf("first event %+v, want an in_progress snapshot", first)
	}

	out := "file_out"
	completed := wire.Int(1710000600)
	b.Status, b.OutputFileID, b.CompletedAt = simulator.StatusCompleted, &out, &completed
	b.RequestCounts.Completed = 10
	e.Sim.Put(b)

	ev := restNextLine(t, br)
	if ev.Type != "change" || ev.Sequence != "2" || !ev.Terminal {
		t.Fatalf("event %+v, want the terminal change numbered 2", ev)
	}
	if want := restGetRaw(t, e, id); !bytes.Equal(ev.Batch, want) {
		t.Errorf("batch %s\nwant (GET) %s", ev.Batch, want)
	}
	restExpectEOF(t, br)
}

// TestRESTWatchErrorBeforeFirstEvent gets real HTTP statuses and the
// upstream envelope, not a 200 with an error line.
func TestRESTWatchErrorBeforeFirstEvent(t *testing.T) {
	t.Parallel()
	e := start(t, restFastPolls)
	tests := []struct {
		id         string
		accept     string
		wantStatus int
		wantType   string
	}{
		{"batch_nope", "", http.StatusNotFound, "not_found_error"},
		{"batch_nope", "text/event-stream", http.StatusNotFound, "not_found_error"},
		{"bad.id", "", http.StatusBadRequest, "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.id+"/"+tt.accept, func(t *testing.T) {
			t.Parallel()
			resp, br := restWatch(t, e, tt.id, tt.accept)
			body, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, Content-Type %q, body %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			var env struct {
				Error map[string]any `json:"error"`
			}
			if err := json.Unmarshal(body, &env); err != nil || env.Error["type"] != tt.wantType || len(env.Error) != 4 {
				t.Fatalf("body %s: want the envelope with type %q (%v)", body, tt.wantType, err)
			}
		})
	}
}

// TestRESTWatchShutdown ends a live REST watch with an error event (503,
// reconnect) when the gateway shuts down, and shutdown completes.
func TestRESTWatchShutdown(t *testing.T) {
	t.Parallel()
	for _, accept := range []string{"", "text/event-stream"} {
		t.Run("Accept="+accept, func(t *testing.T) {
			t.Parallel()
			e := start(t, restFastPolls)
			resp, br := restWatch(t, e, simulator.DemoValidating, accept)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			stopped := make(chan struct{})
			if accept == "" {
				if ev := restNextLine(t, br); ev.Type != "snapshot" {
					t.Fatalf("first event %+v", ev)
				}
				go func() { defer close(stopped); e.Stop() }()
				var ev restEvent
				for ev = restNextLine(t, br); ev.Type == "change"; ev = restNextLine(t, br) {
				}
				if ev.Type != "error" || ev.HTTPStatus != http.StatusServiceUnavailable || !bytes.Contains(ev.Error, []byte(`"api_error"`)) {
					t.Errorf("last event %+v, want a 503 error", ev)
				}
			} else {
				if ev := restNextSSE(t, br); ev["event"] != "snapshot" {
					t.Fatalf("first event %v", ev)
				}
				go func() { defer close(stopped); e.Stop() }()
				ev := restNextSSE(t, br)
				for ev["event"] == "change" {
					ev = restNextSSE(t, br)
				}
				if ev["event"] != "error" || ev["retry"] != "1000" || !strings.HasPrefix(ev["data"], `{"error":{`) {
					t.Errorf("last event %v, want an error with retry 1000", ev)
				}
			}
			restExpectEOF(t, br)
			<-stopped
		})
	}
}
