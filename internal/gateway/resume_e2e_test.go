package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/wire"
)

// Resumable and conditional reads, end to end against the simulator: the
// tag of a state is the same in every place it shows (gRPC event, NDJSON
// line, SSE id, ETag) and on every gateway, and each transport resumes
// from it.

// resumeEnv is a gateway in front of a simulator on a clock the test
// advances (a batch moves one status a phase), polling every 50ms, with
// heartbeats an hour apart (so that the heartbeat a resumed stream starts
// with is the immediate one).
func resumeEnv(t *testing.T) (*env, *clock) {
	t.Helper()
	clk := newClock()
	return startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, restFastPolls), clk
}

// restDo sends a request through the checking client and returns the
// response, its body unread (closed at the test's end).
func restDo(t *testing.T, e *env, path string, header http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), restWatchGuard)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.BaseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// etagOf GETs the batch and returns its ETag, checking that it is the
// quoted tag of the body.
func etagOf(t *testing.T, e *env, id string) string {
	t.Helper()
	resp := restDo(t, e, "/v1/batches/"+id, nil)
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", id, resp.StatusCode, body, err)
	}
	etag := resp.Header.Get("ETag")
	if want := `"` + wire.TagJSON(body) + `"`; etag != want {
		t.Fatalf("ETag %q, want the body's tag %q", etag, want)
	}
	return strings.Trim(etag, `"`)
}

// watchFrom opens a gRPC watch resuming from tag.
func (e *env) watchFrom(t *testing.T, id, tag string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := e.Client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id, ResumeTag: tag})
	if err != nil {
		cancel()
		t.Fatalf("WatchBatch: %v", err)
	}
	t.Cleanup(cancel)
	return pumpWatch(stream, cancel)
}

func isType(ev *batchv1.WatchBatchResponse, typ batchv1.WatchEventType) bool {
	return ev.GetType() == typ
}

// TestResumeGRPC: a watcher that reconnects with the tag of the last event
// it saw gets no snapshot while the batch is in that state (a heartbeat at
// once, then the changes); with an older tag, the current snapshot; and a
// terminal batch in the state it has ends the stream at once.
func TestResumeGRPC(t *testing.T) {
	t.Parallel()
	e, clk := resumeEnv(t)
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})

	w := e.watch(t, b.ID)
	snap := w.next(t)
	if !isType(snap, batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT) || snap.GetTag() == "" {
		t.Fatalf("first event %v, want a tagged snapshot", snap)
	}
	if got, want := snap.GetTag(), wire.Tag(snap.GetBatch()); got != want {
		t.Fatalf("tag %q, want wire.Tag of the batch %q", got, want)
	}
	if etag := etagOf(t, e, b.ID); etag != snap.GetTag() {
		t.Fatalf("GET's ETag %q differs from the watch's tag %q", etag, snap.GetTag())
	}
	w.cancel()

	// Reconnect with the tag: the batch is still in that state.
	r := e.watchFrom(t, b.ID, snap.GetTag())
	hb := r.next(t)
	if !isType(hb, batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT) || hb.GetBatch() != nil || hb.GetTag() != "" || hb.GetSequence() != 1 {
		t.Fatalf("first resumed event %v, want an immediate heartbeat numbered 1", hb)
	}
	clk.Advance(phase)
	ch := r.next(t)
	if !isType(ch, batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE) || ch.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS || ch.GetSequence() != 2 {
		t.Fatalf("event %v, want the change to in_progress numbered 2", ch)
	}
	if ch.GetTag() == snap.GetTag() || ch.GetTag() != wire.Tag(ch.GetBatch()) {
		t.Fatalf("change tag %q: want its own state's (%q), not the snapshot's", ch.GetTag(), wire.Tag(ch.GetBatch()))
	}
	r.cancel()

	// An older tag: the current state as a snapshot.
	s := e.watchFrom(t, b.ID, snap.GetTag())
	if ev := s.next(t); !isType(ev, batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT) || ev.GetTag() != ch.GetTag() {
		t.Fatalf("event %v, want the in_progress snapshot tagged %s", ev, ch.GetTag())
	}
	s.cancel()

	// A terminal batch resumed in its terminal state: nothing will come.
	done := e.watch(t, simulator.DemoCompleted).next(t)
	if !done.GetTerminal() || done.GetTag() == "" {
		t.Fatalf("event %v, want a tagged terminal snapshot", done)
	}
	if st := e.watchFrom(t, simulator.DemoCompleted, done.GetTag()).end(t); st.Code() != codes.OK {
		t.Fatalf("resumed terminal watch ended with %v, want OK and no event", st)
	}
}

// TestResumeNDJSON: the NDJSON watch carries each state's tag, and
// ?resume_tag= resumes from it.
func TestResumeNDJSON(t *testing.T) {
	t.Parallel()
	e, clk := resumeEnv(t)
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})
	etag := etagOf(t, e, b.ID)

	resp := restDo(t, e, "/v1/batches/"+b.ID+"/watch", nil)
	br := bufio.NewReader(resp.Body)
	snap := restNextLineTagged(t, br)
	if snap.Type != "snapshot" || snap.Tag != etag || wire.TagJSON(snap.Batch) != etag {
		t.Fatalf("first line %+v, want the snapshot tagged %s (the ETag)", snap, etag)
	}
	_ = resp.Body.Close()

	resp = restDo(t, e, "/v1/batches/"+b.ID+"/watch?resume_tag="+snap.Tag, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br = bufio.NewReader(resp.Body)
	if hb := restNextLineTagged(t, br); hb.Type != "heartbeat" || hb.Tag != "" || hb.Batch != nil || hb.Sequence != "1" {
		t.Fatalf("first resumed line %+v, want an untagged heartbeat numbered 1", hb)
	}
	clk.Advance(phase)
	ch := restNextLineTagged(t, br)
	if ch.Type != "change" || ch.Tag == etag || ch.Tag != wire.TagJSON(ch.Batch) || !strings.Contains(string(ch.Batch), `"status":"in_progress"`) {
		t.Fatalf("line %+v, want the in_progress change with its own tag", ch)
	}
	_ = resp.Body.Close()

	// A terminal batch resumed in its terminal state: an empty 200.
	tag := etagOf(t, e, simulator.DemoCompleted)
	resp = restDo(t, e, "/v1/batches/"+simulator.DemoCompleted+"/watch?resume_tag="+tag, nil)
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("resumed terminal watch: %d %q %v, want an empty 200", resp.StatusCode, body, err)
	}
}

// TestResumeSSE: SSE events carry the tag as id (heartbeats none), and
// Last-Event-ID, what EventSource sends when it reconnects, resumes.
func TestResumeSSE(t *testing.T) {
	t.Parallel()
	e, clk := resumeEnv(t)
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})
	etag := etagOf(t, e, b.ID)
	sse := http.Header{"Accept": {"text/event-stream"}}

	resp := restDo(t, e, "/v1/batches/"+b.ID+"/watch", sse)
	br := bufio.NewReader(resp.Body)
	if ev := restNextSSE(t, br); ev["event"] != "snapshot" || ev["id"] != etag {
		t.Fatalf("first event %v, want the snapshot with id %s (the ETag)", ev, etag)
	}
	_ = resp.Body.Close()

	// A stale resume_tag in the URL (the page was loaded with it) loses
	// to the Last-Event-ID EventSource adds on reconnecting.
	resp = restDo(t, e, "/v1/batches/"+b.ID+"/watch?resume_tag=bt1_stale", http.Header{"Accept": {"text/event-stream"}, "Last-Event-ID": {etag}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br = bufio.NewReader(resp.Body)
	if ev := restNextSSE(t, br); ev["event"] != "heartbeat" {
		t.Fatalf("first resumed event %v, want a heartbeat", ev)
	} else if _, ok := ev["id"]; ok {
		t.Fatalf("heartbeat %v has an id: EventSource would forget the tag", ev)
	}
	clk.Advance(phase)
	ev := restNextSSE(t, br)
	if ev["event"] != "change" || ev["id"] == etag || ev["id"] != wire.TagJSON([]byte(ev["data"])) {
		t.Fatalf("event %v, want the change with its own tag as id", ev)
	}
	_ = resp.Body.Close()

	// A terminal batch resumed in its terminal state: just the end.
	tag := etagOf(t, e, simulator.DemoCompleted)
	resp = restDo(t, e, "/v1/batches/"+simulator.DemoCompleted+"/watch", http.Header{"Accept": {"text/event-stream"}, "Last-Event-ID": {tag}})
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "event: end\ndata: {}\n\n" {
		t.Fatalf("resumed terminal watch: %d %q %v, want 200 and just the end event", resp.StatusCode, body, err)
	}
}

// TestGetBatchConditional: If-None-Match with the current ETag is a 304
// without a body; once the batch changed, a 200 with the new ETag.
func TestGetBatchConditional(t *testing.T) {
	t.Parallel()
	e, clk := resumeEnv(t)
	b := e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"})
	etag := etagOf(t, e, b.ID)

	for _, inm := range []string{`"` + etag + `"`, `W/"` + etag + `"`, `"bt1_other", "` + etag + `"`, "*"} {
		resp := restDo(t, e, "/v1/batches/"+b.ID, http.Header{"If-None-Match": {inm}})
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != `"`+etag+`"` {
			t.Fatalf("If-None-Match %s: %d %q ETag %q, want an empty 304 with the ETag", inm, resp.StatusCode, body, resp.Header.Get("ETag"))
		}
	}
	if resp := restDo(t, e, "/v1/batches/"+b.ID, http.Header{"If-None-Match": {`"bt1_other"`}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("another tag: %d, want 200", resp.StatusCode)
	}

	clk.Advance(phase)
	waitFor(t, "a new ETag", func() bool {
		resp := restDo(t, e, "/v1/batches/"+b.ID, http.Header{"If-None-Match": {`"` + etag + `"`}})
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK && resp.Header.Get("ETag") != `"`+etag+`"`
	})
}

// TestTagSameAcrossGateways: two gateways in front of one upstream give
// a state the same tag everywhere (ETag, gRPC, NDJSON, SSE), and so do
// two simulators holding the same state: the tag depends on the content
// only, so a client may reconnect to any replica, or after a restart.
func TestTagSameAcrossGateways(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, restFastPolls)
	b := startWith(t, gatewaytest.Options{Upstream: a.Sim}, restFastPolls)
	c := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, restFastPolls)

	for _, id := range []string{simulator.DemoCompleted, simulator.DemoFailed, simulator.DemoProgress} {
		want := etagOf(t, a, id)
		for name, g := range map[string]*env{"same upstream": b, "same state": c} {
			if got := etagOf(t, g, id); got != want {
				t.Errorf("%s, %s: ETag %q, want %q", id, name, got, want)
			}
			if ev := g.watch(t, id).next(t); ev.GetTag() != want {
				t.Errorf("%s, %s: gRPC tag %q, want %q", id, name, ev.GetTag(), want)
			}
			resp := restDo(t, g, "/v1/batches/"+id+"/watch", nil)
			if ev := restNextLineTagged(t, bufio.NewReader(resp.Body)); ev.Tag != want {
				t.Errorf("%s, %s: NDJSON tag %q, want %q", id, name, ev.Tag, want)
			}
			_ = resp.Body.Close()
			resp = restDo(t, g, "/v1/batches/"+id+"/watch", http.Header{"Accept": {"text/event-stream"}})
			if ev := restNextSSE(t, bufio.NewReader(resp.Body)); ev["id"] != want {
				t.Errorf("%s, %s: SSE id %q, want %q", id, name, ev["id"], want)
			}
			_ = resp.Body.Close()
		}
		// And one gateway resumes a watch begun on the other.
		if id != simulator.DemoProgress {
			if st := b.watchFrom(t, id, want).end(t); st.Code() != codes.OK {
				t.Errorf("%s: resuming on the other gateway ended with %v, want OK at once", id, st)
			}
		}
	}
}

// restTaggedEvent is an NDJSON watch line with its tag.
type restTaggedEvent struct {
	restEvent
	Tag string `json:"tag"`
}

func restNextLineTagged(t *testing.T, br *bufio.Reader) restTaggedEvent {
	t.Helper()
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading an NDJSON line: %q, %v", line, err)
	}
	var ev restTaggedEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return ev
}
