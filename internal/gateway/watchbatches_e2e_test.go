package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/wire"
)

// multiBatches creates, on e's simulator, one batch that is already
// completed (done) and two that run (a, b) until clk advances 3 phases.
func multiBatches(e *env, clk *clock) (a, b, done string) {
	done = e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"}).ID
	clk.Advance(3 * phase)
	a = e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"}).ID
	b = e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"}).ID
	return a, b, done
}

// TestWatchBatchesGRPC: a multi-watch of a running, an already terminal and
// an unknown batch (and a duplicate), with one of them also watched alone:
// one upstream poll per batch per interval, whoever watches it, and the
// stream ends OK when every batch has had its last event.
func TestWatchBatchesGRPC(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, fastWatch, quietHeartbeat)
	a, b, done := multiBatches(e, clk)

	single := e.watch(t, a)
	if ev := single.next(t); ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
		t.Fatalf("single watch: %v", ev)
	}
	stream, err := e.Client.WatchBatches(t.Context(), &batchv1.WatchBatchesRequest{BatchIds: []string{a, "batch_nope", b, done, a}})
	if err != nil {
		t.Fatal(err)
	}
	events, end := testutil.Pump(stream, 64)
	next := func() *batchv1.WatchBatchesResponse {
		t.Helper()
		ev, err := testutil.Next(events, end, waitLimit)
		if err != nil {
			t.Fatalf("stream ended (%v) while an event was expected", err)
		}
		return ev
	}
	first := map[string]*batchv1.WatchBatchesResponse{}
	for len(first) < 4 {
		ev := next()
		if _, dup := first[ev.GetBatchId()]; dup {
			t.Fatalf("second event %v before every batch had its first", ev)
		}
		first[ev.GetBatchId()] = ev
		if ev.GetSequence() != uint64(len(first)) {
			t.Fatalf("event %v: sequence %d, want %d", ev, ev.GetSequence(), len(first))
		}
	}
	for _, id := range []string{a, b} {
		if ev := first[id]; ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || ev.GetTerminal() || ev.GetBatch().GetId() != id {
			t.Errorf("%s: first event %v", id, ev)
		} else if tag := wire.Tag(ev.GetBatch()); ev.GetTag() != tag {
			t.Errorf("%s: tag %q, want the state's %q", id, ev.GetTag(), tag)
		}
	}
	if ev := first[done]; ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || !ev.GetTerminal() ||
		ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_COMPLETED {
		t.Errorf("terminal batch: %v", ev)
	}
	if ev := first["batch_nope"]; ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_ERROR || !ev.GetTerminal() ||
		codes.Code(ev.GetError().GetCode()) != codes.NotFound || ev.GetError().GetHttpStatus() != 404 || ev.GetError().GetErrorCode() == "" {
		t.Errorf("unknown batch: %v", ev)
	}

	// a is watched twice (alone and in the multi-watch), b once: one
	// poller each, and the upstream sees one request per poll.
	waitFor(t, "2 pollers and 3 watchers", func() bool {
		st := e.GW.HubStats()
		return st.Pollers == 2 && st.Watchers == 3
	})
	polls0, reqsA0, reqsB0 := e.GW.HubStats().Polls, e.Sim.BatchRequests(a), e.Sim.BatchRequests(b)
	waitFor(t, "ten polls", func() bool { return e.GW.HubStats().Polls >= polls0+10 })
	polls := int64(e.GW.HubStats().Polls - polls0)
	reqsA, reqsB := e.Sim.BatchRequests(a)-reqsA0, e.Sim.BatchRequests(b)-reqsB0
	if reqsA+reqsB < polls-2 || reqsA+reqsB > polls+2 || reqsA > reqsB+2 || reqsB > reqsA+2 {
		t.Fatalf("%d and %d upstream requests for %d polls: a batch watched twice must cost one poll per interval", reqsA, reqsB, polls)
	}

	// Both running batches end: their terminal events, then OK.
	clk.Advance(3 * phase)
	terminal := map[string]bool{}
	for len(terminal) < 2 {
		ev := next()
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE || (ev.GetBatchId() != a && ev.GetBatchId() != b) {
			t.Fatalf("event %v", ev)
		}
		if ev.GetTerminal() {
			terminal[ev.GetBatchId()] = true
		}
	}
	if ev, err := testutil.Next(events, end, waitLimit); err == nil {
		t.Fatalf("event %v after every batch ended", ev)
	} else if !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want OK", err)
	}
	if ev := single.next(t); !ev.GetTerminal() {
		t.Fatalf("single watch: %v", ev)
	}
}

// multiURL is the REST multi-watch of ids.
func multiURL(e *env, ids ...string) string {
	q := url.Values{"batch_id": ids}
	return e.BaseURL + "/v1/batches:watch?" + q.Encode()
}

// restMultiWatch opens a REST multi-watch with the given Accept header.
func restMultiWatch(t *testing.T, e *env, u, accept string) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), restWatchGuard)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

// multiLine is one NDJSON multi-watch line.
type multiLine struct {
	Type       string          `json:"type"`
	BatchID    string          `json:"batch_id"`
	Sequence   uint64          `json:"sequence"`
	Terminal   bool            `json:"terminal"`
	Batch      json.RawMessage `json:"batch"`
	Error      json.RawMessage `json:"error"`
	HTTPStatus int             `json:"http_status"`
}

// checkMultiEnd checks the last events of a REST multi-watch: every batch
// of want ended (terminal) with the given type, and nothing came after.
func checkMultiEnd(t *testing.T, got []multiLine, want map[string]string) {
	t.Helper()
	ended := map[string]string{}
	for i, l := range got {
		if l.Sequence != uint64(i+1) {
			t.Fatalf("line %d: %+v", i, l)
		}
		if _, ok := ended[l.BatchID]; ok {
			t.Fatalf("event %+v after the end of its batch", l)
		}
		if l.Terminal {
			ended[l.BatchID] = l.Type
		}
	}
	for id, typ := range want {
		if ended[id] != typ {
			t.Errorf("%s ended with %q, want %q", id, ended[id], typ)
		}
	}
}

func TestWatchBatchesREST(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}}, restFastPolls)
	a, b, done := multiBatches(e, clk)
	want := map[string]string{a: "change", b: "change", done: "snapshot", "batch_nope": "error"}

	t.Run("ndjson", func(t *testing.T) {
		resp, br := restMultiWatch(t, e, multiURL(e, a, "batch_nope", done)+"&batch_ids="+b+","+a, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var got []multiLine
		for len(got) < 4 {
			got = append(got, readMultiLine(t, br))
		}
		for _, l := range got {
			if l.Type == "error" && (l.BatchID != "batch_nope" || l.HTTPStatus != 404 || !strings.Contains(string(l.Error), `"code":"not_found"`)) {
				t.Fatalf("error line %+v %s", l, l.Error)
			}
		}
		clk.Advance(3 * phase)
		for {
			line, err := br.ReadBytes('\n')
			if errors.Is(err, io.EOF) && len(line) == 0 {
				break
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var l multiLine
			if err := json.Unmarshal(line, &l); err != nil {
				t.Fatal(err)
			}
			got = append(got, l)
		}
		checkMultiEnd(t, got, want)
	})

	t.Run("sse", func(t *testing.T) {
		// The batches are terminal by now (ndjson ran first): snapshots
		// and the error, then the end.
		resp, br := restMultiWatch(t, e, multiURL(e, a, b, done, "batch_nope"), "text/event-stream")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		body, err := io.ReadAll(br)
		if err != nil {
			t.Fatal(err)
		}
		events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
		if len(events) != 5 || events[4] != "event: end\ndata: {}" {
			t.Fatalf("events %q, want 4 and the end", events)
		}
		var got []multiLine
		for i, ev := range events[:4] {
			lines := strings.Split(ev, "\n")
			if len(lines) != 3 || lines[0] != fmt.Sprintf("id: %d", i+1) {
				t.Fatalf("event %q", ev)
			}
			typ, data := strings.TrimPrefix(lines[1], "event: "), strings.TrimPrefix(lines[2], "data: ")
			l := multiLine{Type: typ, Sequence: uint64(i + 1), Terminal: true}
			switch typ {
			case "snapshot":
				var batch struct{ ID string }
				if err := json.Unmarshal([]byte(data), &batch); err != nil {
					t.Fatal(err)
				}
				l.BatchID = batch.ID
			case "error":
				if err := json.Unmarshal([]byte(data), &l); err != nil || l.HTTPStatus != 404 {
					t.Fatalf("error data %s: %v", data, err)
				}
			default:
				t.Fatalf("event %q", ev)
			}
			got = append(got, l)
		}
		checkMultiEnd(t, got, map[string]string{a: "snapshot", b: "snapshot", done: "snapshot", "batch_nope": "error"})
	})

	t.Run("errors before the first event", func(t *testing.T) {
		for _, tc := range []struct {
			u    string
			code int
			msg  string
		}{
			{e.BaseURL + "/v1/batches:watch", http.StatusBadRequest, "missing_required_parameter"},
			{multiURL(e, a, "bad id"), http.StatusBadRequest, "batch_ids[1]"},
		} {
			resp, br := restMultiWatch(t, e, tc.u, "")
			body, _ := io.ReadAll(br)
			if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.msg) {
				t.Errorf("%s: %d %s, want %d with %q", tc.u, resp.StatusCode, body, tc.code, tc.msg)
			}
		}
	})
}

func readMultiLine(t *testing.T, br *bufio.Reader) multiLine {
	t.Helper()
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var l multiLine
	if err := json.Unmarshal(line, &l); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return l
}

// TestWatchBatchesLimits: each batch of a multi-watch counts as a watcher.
func TestWatchBatchesLimits(t *testing.T) {
	t.Parallel()
	e := start(t, quietHeartbeat, func(c *config.Config) { c.Limits.MaxWatchersPerCaller = 10 })
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"}).ID
	}
	stream, err := e.Client.WatchBatches(t.Context(), &batchv1.WatchBatchesRequest{BatchIds: ids})
	if err == nil {
		_, err = stream.Recv()
	}
	st := status.Convert(err)
	if code := apierr.ToEnvelope(st).Error.Code; st.Code() != codes.ResourceExhausted || code == nil || *code != apierr.CodeTooManyWatchers {
		t.Fatalf("20 batches with -max-watchers-per-caller 10: %v, want RESOURCE_EXHAUSTED too_many_watchers", err)
	}
	resp, br := restMultiWatch(t, e, multiURL(e, ids...), "")
	body, _ := io.ReadAll(br)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), `"code":"too_many_watchers"`) {
		t.Fatalf("REST: %d %s", resp.StatusCode, body)
	}
	// 10 fit.
	stream, err = e.Client.WatchBatches(t.Context(), &batchv1.WatchBatchesRequest{BatchIds: ids[:10]})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
		t.Fatalf("10 batches: %v %v", ev, err)
	}
}
