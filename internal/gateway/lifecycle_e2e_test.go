package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
)

// This file tests the batch lifecycle end to end, as clients see it: a
// file uploaded, a batch made of it, watched to its end, its results and
// files read back, listed, cancelled and deleted, over gRPC, plain HTTP
// and the OpenAI Go SDK, with the callers of key mode kept apart.

// lcEndpoint is the endpoint the lifecycle tests' batches use.
const lcEndpoint = "/v1/chat/completions"

// lcInput returns a JSONL input file with one request per custom id.
func lcInput(customIDs ...string) []byte {
	var b bytes.Buffer
	for _, id := range customIDs {
		fmt.Fprintf(&b, `{"custom_id":%q,"method":"POST","url":%q,"body":{"model":"m","messages":[{"role":"user","content":"hi %s"}]}}`+"\n", id, lcEndpoint, id)
	}
	return b.Bytes()
}

// lcCustomIDs are the requests of the lifecycle tests' input file: one
// of them fails (the simulator's fail rule).
var lcCustomIDs = []string{"req-1", "fail-2", "req-3"}

// lcStart starts a gateway in front of a simulator on clock (nothing
// moves until the test advances it) with a Phase of phase, polling every
// 100 ms unless mutate says otherwise.
func lcStart(t *testing.T, clk *clock, mutate ...func(*config.Config)) *env {
	t.Helper()
	fast := func(c *config.Config) { c.Watch.PollInterval = 100 * time.Millisecond }
	return startWith(t, gatewaytest.Options{Sim: simulator.Options{Now: clk.Now, Phase: phase}},
		append([]func(*config.Config){fast}, mutate...)...)
}

// lcUpload uploads data over gRPC in chunks of chunk bytes.
func lcUpload(ctx context.Context, t *testing.T, e *env, name string, data []byte, chunk int) *batchv1.File {
	t.Helper()
	f, err := lcTryUpload(ctx, e, name, "batch", data, chunk)
	if err != nil {
		t.Fatalf("UploadFile: %v", err)
	}
	return f
}

func lcTryUpload(ctx context.Context, e *env, name, purpose string, data []byte, chunk int) (*batchv1.File, error) {
	stream, err := batchv1.NewFileServiceClient(e.Conn).UploadFile(ctx)
	if err != nil {
		return nil, err
	}
	err = stream.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Metadata{
		Metadata: &batchv1.UploadFileMetadata{Filename: name, Purpose: purpose}}})
	for rest := data; err == nil && len(rest) > 0; {
		n := min(chunk, len(rest))
		err = stream.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Chunk{Chunk: rest[:n]}})
		rest = rest[n:]
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return stream.CloseAndRecv()
}

// lcCreate creates a batch of file over gRPC.
func lcCreate(ctx context.Context, t *testing.T, e *env, fileID string) *batchv1.Batch {
	t.Helper()
	resp, err := e.Client.CreateBatch(ctx, &batchv1.CreateBatchRequest{
		InputFileId: fileID, Endpoint: lcEndpoint, CompletionWindow: "24h",
		Metadata: map[string]string{"purpose": "e2e"},
	})
	if err != nil {
		t.Fatalf("CreateBatch: %v", err)
	}
	return resp.GetBatch()
}

// lcResults reads a whole StreamBatchResults stream.
func lcResults(ctx context.Context, e *env, req *batchv1.StreamBatchResultsRequest) ([]*batchv1.BatchResult, error) {
	stream, err := e.Client.StreamBatchResults(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*batchv1.BatchResult
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

// lcContent reads a whole GetFileContent stream.
func lcContent(ctx context.Context, e *env, id string) ([]byte, error) {
	stream, err := batchv1.NewFileServiceClient(e.Conn).GetFileContent(ctx, &batchv1.GetFileContentRequest{FileId: id})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m.GetData()...)
	}
}

// lcWatchTerminal reads w's events, skipping heartbeats, until the
// terminal one, and returns it.
func lcWatchTerminal(t *testing.T, w *watcher) *batchv1.Batch {
	t.Helper()
	for {
		ev := w.next(t)
		if ev.GetTerminal() {
			if st := w.end(t); st.Code() != codes.OK {
				t.Fatalf("watch ended with %v after its terminal event", st)
			}
			return ev.GetBatch()
		}
	}
}

// lcCheckResults checks an ALL stream of the lifecycle input: the output
// lines, then the error lines, each numbered in its file, each custom id
// once, the "fail" ones among the errors.
func lcCheckResults(t *testing.T, rs []*batchv1.BatchResult, customIDs []string) {
	t.Helper()
	seen := map[string]int{}
	lastKind, line := batchv1.ResultKind_RESULT_KIND_OUTPUT, int64(0)
	for _, r := range rs {
		if r.GetParseError() != "" {
			t.Errorf("line %d of %v unreadable: %s", r.GetLine(), r.GetKind(), r.GetParseError())
		}
		if r.GetKind() != lastKind {
			if lastKind != batchv1.ResultKind_RESULT_KIND_OUTPUT || r.GetKind() != batchv1.ResultKind_RESULT_KIND_ERRORS {
				t.Fatalf("kind %v after %v: output lines must come first", r.GetKind(), lastKind)
			}
			lastKind, line = r.GetKind(), 0
		}
		if line++; r.GetLine() != line {
			t.Errorf("%v line %d, want %d", r.GetKind(), r.GetLine(), line)
		}
		seen[r.GetCustomId()]++
		failing := strings.HasPrefix(r.GetCustomId(), simulator.FailPrefix)
		if failing != (r.GetKind() == batchv1.ResultKind_RESULT_KIND_ERRORS) {
			t.Errorf("custom_id %q in %v", r.GetCustomId(), r.GetKind())
		}
		if !failing && r.GetResponse().GetStatusCode() != 200 {
			t.Errorf("custom_id %q: response %v", r.GetCustomId(), r.GetResponse())
		}
	}
	for _, id := range customIDs {
		if seen[id] != 1 {
			t.Errorf("custom_id %q seen %d times, want once", id, seen[id])
		}
	}
	if len(rs) != len(customIDs) {
		t.Errorf("%d results, want %d", len(rs), len(customIDs))
	}
}

func lcCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

// lcListAll pages through ListBatches with limit and returns every batch,
// checking each page's shape.
func lcListAll(ctx context.Context, t *testing.T, e *env, limit int32) []*batchv1.Batch {
	t.Helper()
	var all []*batchv1.Batch
	after := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("ListBatches never ends")
		}
		page, err := e.Client.ListBatches(ctx, &batchv1.ListBatchesRequest{After: after, Limit: limit})
		if err != nil {
			t.Fatalf("ListBatches(after=%q): %v", after, err)
		}
		bs := page.GetBatches()
		if len(bs) > int(limit) {
			t.Fatalf("page of %d batches with limit %d", len(bs), limit)
		}
		if len(bs) > 0 && (page.GetFirstId() != bs[0].GetId() || page.GetLastId() != bs[len(bs)-1].GetId()) {
			t.Errorf("first_id %q last_id %q do not match the page", page.GetFirstId(), page.GetLastId())
		}
		all = append(all, bs...)
		if !page.GetHasMore() {
			return all
		}
		if page.GetLastId() == "" {
			t.Fatal("has_more with no last_id")
		}
		after = page.GetLastId()
	}
}

// lcIDs returns the ids of bs.
func lcIDs(bs []*batchv1.Batch) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.GetId()
	}
	return out
}

// lcCheckListing checks that ids lists each batch once and that mine (in
// creation order) appear newest first.
func lcCheckListing(t *testing.T, ids, mine []string) {
	t.Helper()
	pos := map[string]int{}
	for i, id := range ids {
		if _, dup := pos[id]; dup {
			t.Errorf("batch %s listed twice", id)
		}
		pos[id] = i
	}
	for i, id := range mine {
		p, ok := pos[id]
		if !ok {
			t.Errorf("batch %s not listed", id)
			continue
		}
		if i > 0 {
			if q, ok := pos[mine[i-1]]; ok && q < p {
				t.Errorf("batch %s listed before the newer %s", mine[i-1], id)
			}
		}
	}
}

func TestLifecycleGRPC(t *testing.T) {
	t.Parallel()
	t.Run("flow", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		clk := newClock()
		e := lcStart(t, clk)
		files := batchv1.NewFileServiceClient(e.Conn)
		input := lcInput(lcCustomIDs...)

		f := lcUpload(ctx, t, e, "input.jsonl", input, 7)
		if f.GetObject() != "file" || f.GetBytes() != int64(len(input)) || f.GetPurpose() != "batch" || f.GetFilename() != "input.jsonl" {
			t.Fatalf("uploaded file %v", f)
		}
		if got, _ := e.Sim.FileContent(f.GetId()); !bytes.Equal(got, input) {
			t.Fatalf("the upstream stores %q, want %q", got, input)
		}
		got, err := files.GetFile(ctx, &batchv1.GetFileRequest{FileId: f.GetId()})
		if err != nil || got.GetId() != f.GetId() || got.GetBytes() != f.GetBytes() {
			t.Fatalf("GetFile: %v %v", got, err)
		}

		b := lcCreate(ctx, t, e, f.GetId())
		if b.GetStatus() != batchv1.BatchStatus_BATCH_STATUS_VALIDATING || b.GetInputFileId() != f.GetId() || b.GetEndpoint() != lcEndpoint {
			t.Fatalf("created %v", b)
		}
		if md := b.GetMetadata().GetPairs(); md["purpose"] != "e2e" || md["batchgate_idempotency_key"] == "" {
			t.Errorf("metadata %v: want the caller's pair and an idempotency key", md)
		}
		_, err = lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: b.GetId()})
		lcCode(t, "results of a running batch", err, codes.FailedPrecondition)

		w := e.watch(t, b.GetId())
		if ev := w.next(t); ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || ev.GetBatch().GetId() != b.GetId() {
			t.Fatalf("first event %v", ev)
		}
		clk.Advance(3*phase + time.Second)
		done := lcWatchTerminal(t, w)
		if done.GetStatus() != batchv1.BatchStatus_BATCH_STATUS_COMPLETED || done.GetOutputFileId() == "" || done.GetErrorFileId() == "" {
			t.Fatalf("terminal batch %v: want completed with output and error files", done)
		}
		if rc := done.GetRequestCounts(); rc.GetTotal() != 3 || rc.GetCompleted() != 2 || rc.GetFailed() != 1 {
			t.Errorf("request_counts %v", rc)
		}

		for _, kind := range []batchv1.ResultKind{batchv1.ResultKind_RESULT_KIND_ALL, batchv1.ResultKind_RESULT_KIND_UNSPECIFIED} {
			rs, err := lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: b.GetId(), Kind: kind})
			if err != nil {
				t.Fatalf("StreamBatchResults(%v): %v", kind, err)
			}
			lcCheckResults(t, rs, lcCustomIDs)
		}
		errs, err := lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: b.GetId(), Kind: batchv1.ResultKind_RESULT_KIND_ERRORS})
		if err != nil || len(errs) != 1 || errs[0].GetCustomId() != "fail-2" || errs[0].GetLine() != 1 {
			t.Errorf("errors only: %v %v", errs, err)
		}

		for _, id := range []string{done.GetOutputFileId(), done.GetErrorFileId()} {
			want, ok := e.Sim.FileContent(id)
			if !ok {
				t.Fatalf("the simulator has no file %s", id)
			}
			got, err := lcContent(ctx, e, id)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("GetFileContent(%s) = %q, %v; want %q", id, got, err, want)
			}
		}

		// More batches, a second apart, so that the listing has an order.
		mine := []string{b.GetId()}
		for range 4 {
			clk.Advance(time.Second)
			mine = append(mine, lcCreate(ctx, t, e, f.GetId()).GetId())
		}
		all := lcListAll(ctx, t, e, 2)
		lcCheckListing(t, lcIDs(all), mine)
		for i := 1; i < len(all); i++ {
			if all[i].GetCreatedAt() > all[i-1].GetCreatedAt() {
				t.Errorf("%s (created %d) listed after %s (created %d): not newest first",
					all[i].GetId(), all[i].GetCreatedAt(), all[i-1].GetId(), all[i-1].GetCreatedAt())
			}
		}
		first, err := e.Client.ListBatches(ctx, &batchv1.ListBatchesRequest{Limit: 2})
		if err != nil || !slices.Equal(lcIDs(first.GetBatches()), []string{mine[4], mine[3]}) || !first.GetHasMore() {
			t.Errorf("first page %v (%v), want [%s %s] and has_more", lcIDs(first.GetBatches()), err, mine[4], mine[3])
		}

		del, err := files.DeleteFile(ctx, &batchv1.DeleteFileRequest{FileId: f.GetId()})
		if err != nil || !del.GetDeleted() || del.GetId() != f.GetId() {
			t.Fatalf("DeleteFile: %v %v", del, err)
		}
		_, err = files.GetFile(ctx, &batchv1.GetFileRequest{FileId: f.GetId()})
		lcCode(t, "GetFile after DeleteFile", err, codes.NotFound)
		if _, ok := e.Sim.FileContent(f.GetId()); ok {
			t.Error("the upstream still has the deleted file")
		}
	})

	t.Run("cancel pokes watchers", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		clk := newClock()
		// Polls an hour apart: only the cancel's poke can bring the
		// change within the watcher's wait.
		e := lcStart(t, clk, slowPolls, quietHeartbeat)
		f := lcUpload(ctx, t, e, "input.jsonl", lcInput(lcCustomIDs...), 1<<20)
		b := lcCreate(ctx, t, e, f.GetId())
		clk.Advance(phase + time.Second) // in_progress
		w := e.watch(t, b.GetId())
		if ev := w.next(t); ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS {
			t.Fatalf("first event %v, want in_progress", ev)
		}
		resp, err := e.Client.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: b.GetId()})
		if err != nil || resp.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_CANCELLING {
			t.Fatalf("CancelBatch: %v %v", resp, err)
		}
		ev := w.next(t) // waitLimit is far below the hour between polls
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE || ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_CANCELLING {
			t.Fatalf("event after the cancel %v, want a change to cancelling", ev)
		}
		// Repeating the cancel is safe.
		if _, err := e.Client.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: b.GetId()}); err != nil {
			t.Errorf("second CancelBatch: %v", err)
		}
		clk.Advance(phase + time.Second)
		if _, err := e.Client.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: b.GetId()}); err != nil {
			t.Errorf("CancelBatch of a cancelled batch: %v", err)
		}
		if ev := w.next(t); ev.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_CANCELLED || !ev.GetTerminal() {
			t.Fatalf("event after the batch was cancelled %v", ev)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		e := lcStart(t, newClock(), func(c *config.Config) { c.Files.MaxUploadBytes = 100 })
		files := batchv1.NewFileServiceClient(e.Conn)
		_, err := lcTryUpload(ctx, e, "x.jsonl", "fine-tune", lcInput("a"), 1<<20)
		lcCode(t, "purpose fine-tune", err, codes.InvalidArgument)
		_, err = lcTryUpload(ctx, e, "a/b.jsonl", "batch", lcInput("a"), 1<<20)
		lcCode(t, "filename with a slash", err, codes.InvalidArgument)
		_, err = lcTryUpload(ctx, e, "big.jsonl", "batch", bytes.Repeat([]byte("x"), 101), 10)
		lcCode(t, "upload over the limit", err, codes.InvalidArgument)
		for _, tt := range []struct {
			name string
			req  *batchv1.CreateBatchRequest
		}{
			{"no file", &batchv1.CreateBatchRequest{Endpoint: lcEndpoint, CompletionWindow: "24h"}},
			{"bad file id", &batchv1.CreateBatchRequest{InputFileId: "a.b", Endpoint: lcEndpoint, CompletionWindow: "24h"}},
			{"unknown endpoint", &batchv1.CreateBatchRequest{InputFileId: simulator.DemoInputFile, Endpoint: "/v1/images", CompletionWindow: "24h"}},
			{"48h", &batchv1.CreateBatchRequest{InputFileId: simulator.DemoInputFile, Endpoint: lcEndpoint, CompletionWindow: "48h"}},
			{"reserved metadata", &batchv1.CreateBatchRequest{InputFileId: simulator.DemoInputFile, Endpoint: lcEndpoint, CompletionWindow: "24h",
				Metadata: map[string]string{"batchgate_x": "1"}}},
		} {
			_, err := e.Client.CreateBatch(ctx, tt.req)
			lcCode(t, "CreateBatch "+tt.name, err, codes.InvalidArgument)
		}
		for _, limit := range []int32{-1, 101} {
			_, err := e.Client.ListBatches(ctx, &batchv1.ListBatchesRequest{Limit: limit})
			lcCode(t, fmt.Sprintf("ListBatches limit %d", limit), err, codes.InvalidArgument)
		}
		_, err = files.GetFile(ctx, &batchv1.GetFileRequest{FileId: "no/such"})
		lcCode(t, "GetFile bad id", err, codes.InvalidArgument)
		_, err = e.Client.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: "bad.id"})
		lcCode(t, "CancelBatch bad id", err, codes.InvalidArgument)
		_, err = lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: simulator.DemoCompleted, StartLine: -1})
		lcCode(t, "results start_line -1", err, codes.InvalidArgument)
		if n := e.Sim.Creates(); n != 0 {
			t.Errorf("the upstream made %d batches of bad requests", n)
		}
	})
}

// lcJSON decodes data as a JSON object, failing the test otherwise.
func lcJSON(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", data, err)
	}
	return m
}
