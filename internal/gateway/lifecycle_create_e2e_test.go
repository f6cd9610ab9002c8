package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
)

// lcTransport creates a batch of the demo's input file with an
// idempotency key ("" for none) and returns its id, or fails the test.
type lcTransport struct {
	name   string
	create func(t *testing.T, e *env, key string) string
}

var lcTransports = []lcTransport{
	{"grpc", func(t *testing.T, e *env, key string) string {
		t.Helper()
		resp, err := e.Client.CreateBatch(t.Context(), &batchv1.CreateBatchRequest{
			InputFileId: simulator.DemoInputFile, Endpoint: lcEndpoint, CompletionWindow: "24h", IdempotencyKey: key,
		})
		if err != nil {
			t.Fatalf("CreateBatch: %v", err)
		}
		return resp.GetBatch().GetId()
	}},
	{"grpc header", func(t *testing.T, e *env, key string) string {
		t.Helper()
		ctx := t.Context()
		if key != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "idempotency-key", key)
		}
		resp, err := e.Client.CreateBatch(ctx, &batchv1.CreateBatchRequest{
			InputFileId: simulator.DemoInputFile, Endpoint: lcEndpoint, CompletionWindow: "24h",
		})
		if err != nil {
			t.Fatalf("CreateBatch: %v", err)
		}
		return resp.GetBatch().GetId()
	}},
	{"rest", func(t *testing.T, e *env, key string) string {
		t.Helper()
		data, _ := json.Marshal(lcCreateBody(simulator.DemoInputFile))
		hdr := http.Header{"Content-Type": {"application/json"}}
		if key != "" {
			hdr.Set("Idempotency-Key", key)
		}
		resp, body := restRequest(t, e, http.MethodPost, "/v1/batches", "", hdr, bytes.NewReader(data))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /v1/batches: %d %s", resp.StatusCode, body)
		}
		id, _ := lcJSON(t, body)["id"].(string)
		return id
	}},
}

func TestCreateNoDuplicates(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name  string
		fault simulator.Fault
	}{
		{"500 after the create", simulator.Fault{Status: 500, AfterApply: true}},
		{"503 after the create", simulator.Fault{Status: 503, AfterApply: true}},
		{"reset after the create", simulator.Fault{Reset: true, AfterApply: true}},
		{"answer lost past the attempt timeout", simulator.Fault{Delay: time.Minute, AfterApply: true}},
	}
	for _, tr := range lcTransports {
		for _, f := range faults {
			t.Run(tr.name+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				e := start(t, func(c *config.Config) { c.Upstream.AttemptTimeout = 300 * time.Millisecond })
				e.Sim.InjectCreateFaults(f.fault)
				id := tr.create(t, e, "")
				if n := e.Sim.Creates(); n != 1 {
					t.Fatalf("the upstream made %d batches, want 1", n)
				}
				if _, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: id}); err != nil {
					t.Fatalf("the batch returned (%q) is not the one made: %v", id, err)
				}
			})
		}
		t.Run(tr.name+"/same key twice", func(t *testing.T) {
			t.Parallel()
			e := start(t)
			a := tr.create(t, e, "key-"+tr.name)
			b := tr.create(t, e, "key-"+tr.name)
			if a != b || e.Sim.Creates() != 1 {
				t.Fatalf("ids %q and %q with %d upstream creates, want one batch", a, b, e.Sim.Creates())
			}
			if c := tr.create(t, e, "other-"+tr.name); c == a || e.Sim.Creates() != 2 {
				t.Fatalf("another key gave %q (creates %d), want a new batch", c, e.Sim.Creates())
			}
		})
	}
	t.Run("same key across transports", func(t *testing.T) {
		t.Parallel()
		e := start(t)
		var ids []string
		for _, tr := range lcTransports {
			ids = append(ids, tr.create(t, e, "shared-key"))
		}
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Fatalf("ids %v, want one batch", ids)
			}
		}
		if n := e.Sim.Creates(); n != 1 {
			t.Fatalf("the upstream made %d batches, want 1", n)
		}
	})
	t.Run("same key after a fault", func(t *testing.T) {
		t.Parallel()
		e := start(t)
		e.Sim.InjectCreateFaults(simulator.Fault{Status: 500, AfterApply: true})
		a := lcTransports[0].create(t, e, "k")
		b := lcTransports[2].create(t, e, "k")
		if a != b || e.Sim.Creates() != 1 {
			t.Fatalf("ids %q and %q with %d creates, want one batch", a, b, e.Sim.Creates())
		}
	})
}

func TestResultsMalformedAndResume(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := t.Context()
	out, _ := e.Sim.FileContent(simulator.DemoExpiredOutputFile)
	outLines := bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
	errData, _ := e.Sim.FileContent(simulator.DemoExpiredErrorFile)
	nErr := bytes.Count(errData, []byte("\n"))

	all, err := lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: simulator.DemoExpired})
	if err != nil {
		t.Fatalf("StreamBatchResults: %v", err)
	}
	if len(all) != len(outLines)+nErr || len(outLines) != 320 || nErr != 4 {
		t.Fatalf("%d results of %d output and %d error lines", len(all), len(outLines), nErr)
	}
	bad := 0
	for i, r := range all {
		if r.GetParseError() == "" {
			if len(r.GetRaw()) != 0 || r.GetCustomId() == "" {
				t.Errorf("result %d: %v", i, r)
			}
			continue
		}
		bad++
		if r.GetKind() != batchv1.ResultKind_RESULT_KIND_OUTPUT || r.GetLine() != 2 || !bytes.Equal(r.GetRaw(), outLines[1]) {
			t.Errorf("unreadable result %v, want output line 2 with raw %q", r, outLines[1])
		}
	}
	if bad != 1 {
		t.Errorf("%d unreadable results, want 1", bad)
	}
	if last := all[len(all)-1]; last.GetKind() != batchv1.ResultKind_RESULT_KIND_ERRORS || last.GetCustomId() != "request-324" {
		t.Errorf("last result %v", last)
	}

	restAll := func(start int) []map[string]any {
		path := "/v1/batches/" + simulator.DemoExpired + "/results"
		if start > 0 {
			path += fmt.Sprintf("?start_line=%d", start)
		}
		resp, data := restRequest(t, e, http.MethodGet, path, "", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, data)
		}
		return lcNDJSON(t, data)
	}
	lines := restAll(0)
	if len(lines) != len(all) {
		t.Fatalf("REST: %d lines, want %d", len(lines), len(all))
	}
	if l := lines[1]; l["parse_error"] == nil || l["parse_error"] == "" || l["raw"] != string(outLines[1]) || l["kind"] != "output" {
		t.Errorf("REST unreadable line %v, want raw %q", l, outLines[1])
	}
	for _, k := range []int{1, 2, 3, 100, 319, 320, 321, len(all) - 1, len(all)} {
		got, err := lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: simulator.DemoExpired, StartLine: int64(k + 1)})
		if err != nil {
			t.Fatalf("start_line %d: %v", k+1, err)
		}
		if len(got) != len(all)-k {
			t.Errorf("gRPC start_line %d: %d results, want %d", k+1, len(got), len(all)-k)
			continue
		}
		for i := range got {
			if !proto.Equal(got[i], all[k+i]) {
				t.Errorf("gRPC start_line %d: result %d is %v, want %v", k+1, i, got[i], all[k+i])
				break
			}
		}
		rest := restAll(k + 1)
		if len(rest) != len(all)-k {
			t.Errorf("REST start_line %d: %d lines, want %d", k+1, len(rest), len(all)-k)
			continue
		}
		for i := range rest {
			a, _ := json.Marshal(rest[i])
			b, _ := json.Marshal(lines[k+i])
			if !bytes.Equal(a, b) {
				t.Errorf("REST start_line %d: line %d is %s, want %s", k+1, i, a, b)
				break
			}
		}
	}
	for _, start := range []int64{0, 1} {
		got, err := lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: simulator.DemoExpired, StartLine: start})
		if err != nil || len(got) != len(all) {
			t.Errorf("start_line %d: %d results (%v), want all %d", start, len(got), err, len(all))
		}
	}
}
