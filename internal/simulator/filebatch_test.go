package simulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

var resultIDRE = regexp.MustCompile(`^batch_req_[0-9a-f]{24}$`)

// createFrom creates a batch of the input file id over HTTP, expecting 200.
func (e *env) createFrom(id, extra string) wire.Batch {
	e.t.Helper()
	r := e.do("POST", "/v1/batches", testBearer,
		`{"input_file_id":"`+id+`","endpoint":"/v1/chat/completions","completion_window":"24h"`+extra+`}`)
	var b wire.Batch
	if err := json.Unmarshal(r.body, &b); err != nil || r.status != 200 {
		e.t.Fatalf("create from %s: %d %s", id, r.status, r.body)
	}
	return b
}

// parseResults parses an output or error file, every line of which must be
// a result line.
func parseResults(t *testing.T, data []byte) []wire.ResultLine {
	t.Helper()
	var out []wire.ResultLine
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[len(line)-1] != '\n' {
			t.Errorf("result line %d does not end in a newline", i+1)
		}
		var r wire.ResultLine
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("result line %d: %v: %s", i+1, err, line)
		}
		out = append(out, r)
	}
	return out
}

// customIDs returns the custom_ids of an input file's requests, split by
// whether they fail.
func customIDs(t *testing.T, input string) (ok, failed []string) {
	t.Helper()
	for line := range strings.Lines(input) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var in wire.InputLine
		if err := json.Unmarshal([]byte(line), &in); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(in.CustomID, FailPrefix) {
			failed = append(failed, in.CustomID)
		} else {
			ok = append(ok, in.CustomID)
		}
	}
	return ok, failed
}

// checkResults checks the output and error files of b, which ran the
// first ran requests of input, and returns their sizes.
func checkResults(t *testing.T, e *env, b wire.Batch, input string, ran int) (outBytes, errBytes int) {
	t.Helper()
	var first strings.Builder
	n := 0
	for line := range strings.Lines(input) {
		if strings.TrimSpace(line) != "" && n < ran {
			first.WriteString(line)
			n++
		}
	}
	wantOK, wantFailed := customIDs(t, first.String())
	rc := counts(&b)
	if int(rc.Completed) != len(wantOK) || int(rc.Failed) != len(wantFailed) {
		t.Fatalf("request_counts %+v, want %d completed and %d failed", rc, len(wantOK), len(wantFailed))
	}
	var at *wire.Int
	for _, t := range []*wire.Int{b.CompletedAt, b.ExpiredAt, b.CancelledAt} {
		if t != nil {
			at = t
		}
	}
	seen := map[string]bool{}
	check := func(what string, id *string, want []string, status wire.Int) int {
		t.Helper()
		if (id != nil) != (len(want) > 0) {
			t.Fatalf("%s file id %s with %d results", what, str(id), len(want))
		}
		if id == nil {
			return 0
		}
		data := e.content(*id)
		if stored, ok := e.sim.FileContent(*id); !ok || !bytes.Equal(stored, data) {
			t.Errorf("%s: FileContent differs from the content served", what)
		}
		var f wire.File
		if r := e.do("GET", "/v1/files/"+*id, testBearer, ""); r.status != 200 || json.Unmarshal(r.body, &f) != nil {
			t.Fatalf("%s file: %d %s", what, r.status, r.body)
		}
		if f.ID != *id || f.Object != "file" || int(f.Bytes) != len(data) || f.Purpose != "batch_output" ||
			!eqPtr(&f.CreatedAt, at) || !strings.HasPrefix(f.Filename, b.ID) || !strings.HasSuffix(f.Filename, ".jsonl") {
			t.Errorf("%s file %+v, batch terminal at %s", what, f, str(at))
		}
		results := parseResults(t, data)
		got := make([]string, len(results))
		for i, r := range results {
			got[i] = r.CustomID
			if !resultIDRE.MatchString(r.ID) || seen[r.ID] {
				t.Errorf("%s line %d: id %q malformed or repeated", what, i+1, r.ID)
			}
			seen[r.ID] = true
			if r.Response == nil || r.Response.StatusCode != status || r.Response.RequestID == "" || r.Error != nil {
				t.Fatalf("%s line %d: response %+v error %+v", what, i+1, r.Response, r.Error)
			}
			var body struct {
				Object  string `json:"object"`
				Model   string `json:"model"`
				Choices []struct {
					Message struct{ Role, Content string } `json:"message"`
				} `json:"choices"`
				Error *wire.ErrorObject `json:"error"`
			}
			if err := json.Unmarshal(r.Response.Body, &body); err != nil {
				t.Fatalf("%s line %d: body %s", what, i+1, r.Response.Body)
			}
			if status == 200 && (body.Object != "chat.completion" || body.Model != "gpt-4o-mini" || len(body.Choices) != 1 ||
				body.Choices[0].Message.Role != "assistant" || body.Choices[0].Message.Content == "" || body.Error != nil) {
				t.Errorf("%s line %d: body %s", what, i+1, r.Response.Body)
			}
			if status == 400 && (body.Error == nil || body.Error.Type != "invalid_request_error" || !eqPtr(body.Error.Code, ptr("simulated_failure"))) {
				t.Errorf("%s line %d: body %s", what, i+1, r.Response.Body)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s custom_ids %v, want %v", what, got, want)
		}
		return len(data)
	}
	return check("output", b.OutputFileID, wantOK, 200), check("error", b.ErrorFileID, wantFailed, 400)
}

// TestFileBatch walks batches made from uploaded files through their
// lifecycle and checks the output and error files against the input.
func TestFileBatch(t *testing.T) {
	t.Parallel()
	const phase = 10 * time.Second
	tests := []struct {
		name  string
		input string
		total int64
	}{
		{"all succeed", numberedInput(5, 0), 5},
		{"some fail", numberedInput(60, 7), 60},
		{"all fail", numberedInput(3, 1), 3},
		{"one request", numberedInput(1, 0), 1},
		{"blank lines and CRLF", "\n" + inputLineJSON("a", "gpt-4o-mini") + "\r\n\r\n  \n" + inputLineJSON("fail-b", "gpt-4o-mini") +
			"\n" + inputLineJSON("c", "gpt-4o-mini"), 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{Phase: phase})
			base := e.sim.storedBytes()
			in := e.upload("in.jsonl", tc.input)
			b := e.createFrom(in.ID, "")
			if b.Status != StatusValidating || b.InputFileID != in.ID || counts(&b).Total != wire.Int(tc.total) {
				t.Fatalf("created %+v", b)
			}
			if used := e.sim.storedBytes(); used <= base+int64(len(tc.input)) {
				t.Errorf("no room reserved for the results: store holds %d bytes", used)
			}
			var statuses []string
			var prev wire.RequestCounts
			for step := range 41 {
				e.clock.Set(t0.Add(time.Duration(step) * phase / 10))
				b, _ = e.get(b.ID)
				if len(statuses) == 0 || statuses[len(statuses)-1] != b.Status {
					statuses = append(statuses, b.Status)
				}
				rc := counts(&b)
				if rc.Total != wire.Int(tc.total) || rc.Completed < prev.Completed || rc.Failed < prev.Failed || rc.Completed+rc.Failed > rc.Total {
					t.Fatalf("step %d: counts %+v after %+v", step, rc, prev)
				}
				if b.Status != StatusCompleted && (b.OutputFileID != nil || b.ErrorFileID != nil) {
					t.Fatalf("step %d: %s with files", step, b.Status)
				}
				prev = rc
			}
			if want := []string{"validating", "in_progress", "finalizing", "completed"}; !slices.Equal(statuses, want) {
				t.Errorf("statuses %v, want %v", statuses, want)
			}
			if !eqPtr(b.CompletedAt, unix(t0.Add(3*phase))) || b.Errors != nil || b.FailedAt != nil {
				t.Errorf("completed batch %+v", b)
			}
			outBytes, errBytes := checkResults(t, e, b, tc.input, int(tc.total))
			if used, want := e.sim.storedBytes(), base+int64(len(tc.input)+outBytes+errBytes); used != want {
				t.Errorf("store holds %d bytes, want %d (input and results)", used, want)
			}
			var outputs []string
			for _, f := range e.listFiles("&purpose=batch_output", 100) {
				outputs = append(outputs, f.ID)
			}
			for _, id := range []*string{b.OutputFileID, b.ErrorFileID} {
				if id != nil && !slices.Contains(outputs, *id) {
					t.Errorf("%s not listed among %v", *id, outputs)
				}
			}
			// Completed is terminal: nothing changes later.
			before := e.do("GET", "/v1/batches/"+b.ID, testBearer, "").body
			e.clock.Advance(1000 * time.Hour)
			if after := e.do("GET", "/v1/batches/"+b.ID, testBearer, "").body; !bytes.Equal(after, before) {
				t.Errorf("completed batch changed:\n%s\nwas\n%s", after, before)
			}
		})
	}
}

// TestFileBatchInvalid: an input file that does not validate fails its
// batch one Phase in, with errors.data naming the lines.
func TestFileBatchInvalid(t *testing.T) {
	t.Parallel()
	const phase = 10 * time.Second
	ok := inputLineJSON("ok", "m")
	line := func(fields string) string { return `{"method":"POST","url":"/v1/chat/completions",` + fields + `}` }
	type wantErr struct {
		code  string
		line  int // 0: null
		param string
	}
	many := strings.Repeat("nope\n", 150)
	tooMany := numberedInput(MaxInputLines+1, 0)
	tests := []struct {
		name  string
		input string
		want  []wantErr
		count int // when set, len(errors.data); want lists its first entries
	}{
		{"not JSON", ok + "\n" + `{"custom_id":"b"`, []wantErr{{"invalid_json_line", 2, ""}}, 0},
		{"array", "[1,2]", []wantErr{{"invalid_request", 1, ""}}, 0},
		{"null line", "null", []wantErr{{"invalid_request", 1, ""}}, 0},
		{"custom_id a number", line(`"custom_id":1,"body":{}`), []wantErr{{"invalid_request", 1, ""}}, 0},
		{"missing custom_id", line(`"body":{}`), []wantErr{{"missing_required_parameter", 1, "custom_id"}}, 0},
		{"other url", `{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{}}`, []wantErr{{"invalid_value", 1, "url"}}, 0},
		{"other method", `{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{}}`, []wantErr{{"invalid_value", 1, "method"}}, 0},
		{"missing body", line(`"custom_id":"a"`), []wantErr{{"missing_required_parameter", 1, "body"}}, 0},
		{"null body", line(`"custom_id":"a","body":null`), []wantErr{{"missing_required_parameter", 1, "body"}}, 0},
		{"body a string", line(`"custom_id":"a","body":"x"`), []wantErr{{"invalid_value", 1, "body"}}, 0},
		{"model a number", line(`"custom_id":"a","body":{"model":1}`), []wantErr{{"invalid_value", 1, "body"}}, 0},
		{"duplicate custom_id", ok + "\n" + inputLineJSON("b", "m") + "\n" + ok, []wantErr{{"duplicate_custom_id", 3, "custom_id"}}, 0},
		{"blank lines are counted", "\n" + ok + "\n\nnope\n" + ok + "x\n", []wantErr{{"invalid_json_line", 4, ""}, {"invalid_json_line", 5, ""}}, 0},
		{"only blank lines", "\n \r\n\t\n", []wantErr{{"empty_file", 0, ""}}, 0},
		{"errors capped", many, []wantErr{{"invalid_json_line", 1, ""}, {"invalid_json_line", 2, ""}}, maxBatchErrors},
		{"too many requests", tooMany, []wantErr{{"too_many_requests", MaxInputLines + 1, ""}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{Phase: phase})
			in := e.sim.PutFile("in.jsonl", "batch", []byte(tc.input))
			used := e.sim.storedBytes()
			b := e.createFrom(in.ID, "")
			if b.Status != StatusValidating || b.RequestCounts == nil || *b.RequestCounts != (wire.RequestCounts{}) || b.Errors != nil {
				t.Fatalf("created %+v", b)
			}
			e.clock.Set(t0.Add(phase - time.Nanosecond))
			if b, _ := e.get(b.ID); b.Status != StatusValidating || b.Errors != nil {
				t.Fatalf("before a phase: %s errors %s", b.Status, str(b.Errors))
			}
			e.clock.Set(t0.Add(phase))
			b, m := e.get(b.ID)
			if b.Status != StatusFailed || !eqPtr(b.FailedAt, unix(t0.Add(phase))) || b.InProgressAt != nil ||
				b.OutputFileID != nil || b.ErrorFileID != nil || *b.RequestCounts != (wire.RequestCounts{}) {
				t.Fatalf("after a phase: %s", e.do("GET", "/v1/batches/"+b.ID, testBearer, "").body)
			}
			errs, _ := m["errors"].(map[string]any)
			data, _ := errs["data"].([]any)
			if errs["object"] != "list" || len(data) == 0 {
				t.Fatalf("errors %v", m["errors"])
			}
			if want := max(tc.count, len(tc.want)); len(data) != want {
				t.Errorf("%d errors, want %d: %v", len(data), want, data[:min(len(data), 3)])
			}
			for i, w := range tc.want {
				d, _ := data[i].(map[string]any)
				var wantLine, wantParam any
				if w.line > 0 {
					wantLine = float64(w.line)
				}
				if w.param != "" {
					wantParam = w.param
				}
				msg, _ := d["message"].(string)
				if d["code"] != w.code || d["line"] != wantLine || d["param"] != wantParam || msg == "" || len(d) != 4 {
					t.Errorf("errors.data[%d] = %v, want %+v", i, d, w)
				}
				if w.line > 0 && !strings.HasPrefix(msg, fmt.Sprintf("Line %d", w.line)) && w.code != "too_many_requests" {
					t.Errorf("errors.data[%d].message %q does not name line %d", i, msg, w.line)
				}
			}
			if got := e.sim.storedBytes(); got != used {
				t.Errorf("a failed batch holds room in the store: %d bytes, was %d", got, used)
			}
			e.clock.Advance(100 * phase)
			if later, _ := e.get(b.ID); !reflectEqual(later, b) {
				t.Errorf("failed batch changed: %+v", later)
			}
		})
	}
}

// TestFileBatchPartial: a batch cancelled or expired part way has output
// and error files with the results of the requests it ran, and gives the
// rest of its room in the store back.
func TestFileBatchPartial(t *testing.T) {
	t.Parallel()
	input := numberedInput(100, 10)
	tests := []struct {
		name   string
		phase  time.Duration
		stop   func(e *env, id string) // stops the batch part way
		status string
		ran    int
	}{
		{"cancelled in progress", 10 * time.Second, func(e *env, id string) {
			e.clock.Set(t0.Add(15 * time.Second)) // half way through in_progress
			if r := e.do("POST", "/v1/batches/"+id+"/cancel", testBearer, ""); r.status != 200 {
				e.t.Fatalf("cancel: %d %s", r.status, r.body)
			}
			e.clock.Advance(5 * time.Second) // cancelling: frozen
			if b, _ := e.get(id); b.Status != StatusCancelling || b.OutputFileID != nil {
				e.t.Fatalf("cancelling: %+v", b)
			}
			e.clock.Advance(5 * time.Second)
		}, StatusCancelled, 50},
		{"cancelled while validating", 10 * time.Second, func(e *env, id string) {
			e.do("POST", "/v1/batches/"+id+"/cancel", testBearer, "")
			e.clock.Advance(10 * time.Second)
		}, StatusCancelled, 0},
		{"cancelled while finalizing", 10 * time.Second, func(e *env, id string) {
			e.clock.Set(t0.Add(25 * time.Second))
			e.do("POST", "/v1/batches/"+id+"/cancel", testBearer, "")
			e.clock.Advance(10 * time.Second)
		}, StatusCancelled, 100},
		{"expired", 20 * time.Hour, func(e *env, _ string) {
			e.clock.Set(t0.Add(24 * time.Hour)) // 4h of a 20h in_progress
		}, StatusExpired, 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{Phase: tc.phase})
			base := e.sim.storedBytes()
			in := e.upload("in.jsonl", input)
			id := e.createFrom(in.ID, "").ID
			tc.stop(e, id)
			b, _ := e.get(id)
			if b.Status != tc.status {
				t.Fatalf("status %s, want %s", b.Status, tc.status)
			}
			if rc := counts(&b); int(rc.Completed+rc.Failed) != tc.ran || rc.Total != 100 {
				t.Fatalf("counts %+v, want %d run", rc, tc.ran)
			}
			outBytes, errBytes := checkResults(t, e, b, input, tc.ran)
			if used, want := e.sim.storedBytes(), base+int64(len(input)+outBytes+errBytes); used != want {
				t.Errorf("store holds %d bytes, want %d", used, want)
			}
		})
	}
}

// TestFileBatchStore: a batch's results take room in the store from its
// create; a batch whose results do not fit fails validation.
func TestFileBatchStore(t *testing.T) {
	t.Parallel()
	const phase = 10 * time.Second
	input := numberedInput(10, 5)

	// Learn the size of the results.
	probe := newEnv(t, Options{Phase: phase})
	in := probe.upload("in.jsonl", input)
	before := probe.sim.storedBytes()
	probe.createFrom(in.ID, "")
	reserved := probe.sim.storedBytes() - before

	t.Run("reserved at create", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase, MaxStoreBytes: int64(len(input)) + reserved + 10})
		in := e.upload("in.jsonl", input)
		b := e.createFrom(in.ID, "")
		r := e.send("POST", "/v1/files", multipartType, multipartBody(t, part{"purpose", "", "batch"}, part{"file", "x", strings.Repeat("x", 11)}))
		checkEnvelope(t, r, 400, "invalid_request_error", "storage_full")
		e.clock.Advance(3 * phase)
		b, _ = e.get(b.ID)
		if b.Status != StatusCompleted {
			t.Fatalf("status %s", b.Status)
		}
		for _, id := range []*string{b.OutputFileID, b.ErrorFileID, &in.ID} {
			if r := e.do("DELETE", "/v1/files/"+*id, testBearer, ""); r.status != 200 {
				t.Fatalf("delete %s: %d", *id, r.status)
			}
		}
		e.upload("x", strings.Repeat("x", 11))
	})

	t.Run("no room for the results", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase, MaxStoreBytes: int64(len(input)) + reserved - 1})
		in := e.upload("in.jsonl", input)
		b := e.createFrom(in.ID, "")
		e.clock.Advance(phase)
		b, _ = e.get(b.ID)
		if b.Status != StatusFailed || b.Errors == nil || len(b.Errors.Data) != 1 || b.Errors.Data[0].Code != "storage_full" {
			t.Fatalf("%+v", b)
		}
		if got := e.sim.storedBytes(); got != int64(len(input)) {
			t.Errorf("store holds %d bytes", got)
		}
	})

	t.Run("replacing a running batch with Put frees its room", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{Phase: phase})
		in := e.upload("in.jsonl", input)
		used := e.sim.storedBytes()
		b := e.createFrom(in.ID, "")
		e.sim.Put(wire.Batch{ID: b.ID, Object: "batch", Status: StatusCompleted})
		e.clock.Advance(4 * phase)
		if got := e.sim.storedBytes(); got != used {
			t.Errorf("store holds %d bytes, want %d", got, used)
		}
		for _, f := range e.listFiles("&purpose=batch_output", 100) {
			if strings.HasPrefix(f.Filename, b.ID) {
				t.Errorf("output file %+v of a replaced batch", f)
			}
		}
	})
}

// TestFileBatchOutputExpiry: output_expires_after sets the expires_at of
// the output and error files.
func TestFileBatchOutputExpiry(t *testing.T) {
	t.Parallel()
	const phase = 10 * time.Second
	e := newEnv(t, Options{Phase: phase})
	in := e.upload("in.jsonl", numberedInput(4, 2))
	b := e.createFrom(in.ID, `,"output_expires_after":{"anchor":"created_at","seconds":7200}`)
	e.clock.Advance(3 * phase)
	b, _ = e.get(b.ID)
	for _, id := range []*string{b.OutputFileID, b.ErrorFileID} {
		m := decodeMap(t, e.do("GET", "/v1/files/"+*id, testBearer, "").body)
		if m["expires_at"] != m["created_at"].(float64)+7200 {
			t.Errorf("%s: created_at %v expires_at %v", *id, m["created_at"], m["expires_at"])
		}
	}
	if m := decodeMap(t, e.do("GET", "/v1/files/"+in.ID, testBearer, "").body); m["expires_at"] != nil {
		t.Errorf("input file expires_at %v", m["expires_at"])
	}
}

// TestCreateFromFile: Create runs the requests of a stored batch file, and
// synthetic ones for any other input_file_id.
func TestCreateFromFile(t *testing.T) {
	t.Parallel()
	const phase = 10 * time.Second
	e := newEnv(t, Options{Phase: phase})
	input := numberedInput(7, 3)
	in := e.sim.PutFile("in.jsonl", "batch", []byte(input))
	out := e.sim.PutFile("out.jsonl", "batch_output", []byte(input))
	fromFile := e.sim.Create(CreateRequest{InputFileID: in.ID})
	fromOutput := e.sim.Create(CreateRequest{InputFileID: out.ID})
	unknown := e.sim.Create(CreateRequest{InputFileID: "file_in"})
	// The input file may go once the batch is made.
	if r := e.do("DELETE", "/v1/files/"+in.ID, testBearer, ""); r.status != 200 {
		t.Fatal(r.status)
	}
	for _, tc := range []struct {
		b     wire.Batch
		total wire.Int
	}{{fromFile, 7}, {fromOutput, CreatedBatchTotal}, {unknown, CreatedBatchTotal}} {
		if counts(&tc.b).Total != tc.total {
			t.Errorf("%s: total %d, want %d", tc.b.InputFileID, counts(&tc.b).Total, tc.total)
		}
	}
	e.clock.Advance(3 * phase)
	b, _ := e.get(fromFile.ID)
	checkResults(t, e, b, input, 7)
}

// FuzzReadInput: readInput never panics, either accepts a file or names
// why not, and the results it leads to are valid result lines.
func FuzzReadInput(f *testing.F) {
	f.Add([]byte(numberedInput(3, 2)))
	f.Add([]byte("\n\r\n" + inputLineJSON("a", "m") + "\n" + inputLineJSON("a", "m")))
	f.Add([]byte(`{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{}}`))
	f.Add([]byte(`{"custom_id":"\ud800","method":"POST","url":"/v1/chat/completions","body":{"model":"<&>"}}`))
	f.Add([]byte("nope\n[]\nnull\n\"s\"\n{}"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, errs := readInput(data, SupportedEndpoint)
		if (len(lines) == 0) == (len(errs) == 0) {
			t.Fatalf("%d requests and %d errors", len(lines), len(errs))
		}
		if len(errs) > maxBatchErrors {
			t.Fatalf("%d errors", len(errs))
		}
		nLines := bytes.Count(data, []byte("\n")) + 1
		for _, e := range errs {
			if e == nil || e.Code == "" || e.Message == "" || e.Line != nil && (*e.Line < 1 || int(*e.Line) > nLines) {
				t.Fatalf("error %+v in a file of %d lines", e, nLines)
			}
		}
		if errs != nil {
			return
		}
		nonBlank := 0
		for line := range bytes.Lines(data) {
			if len(bytes.TrimSpace(line)) > 0 {
				nonBlank++
			}
		}
		if len(lines) != nonBlank {
			t.Fatalf("%d requests from %d non-blank lines", len(lines), nonBlank)
		}
		seen := map[string]bool{}
		for i, in := range lines {
			if in.customID == "" || seen[in.customID] {
				t.Fatalf("custom_id %q empty or repeated", in.customID)
			}
			seen[in.customID] = true
			out := appendResult(nil, in, i+1, 1710000000, newResultIDs(), fails(in.customID))
			if bytes.Count(out, []byte("\n")) != 1 || out[len(out)-1] != '\n' {
				t.Fatalf("result is not one line: %q", out)
			}
			var r wire.ResultLine
			if err := json.Unmarshal(out, &r); err != nil || r.CustomID != in.customID || r.Response == nil {
				t.Fatalf("result %s: %v", out, err)
			}
		}
	})
}

// TestConcurrentFiles mixes the file endpoints and file-backed batches
// from several goroutines; run it with -race. The store's accounting must
// come out exact.
func TestConcurrentFiles(t *testing.T) {
	t.Parallel()
	const phase = time.Second
	e := newEnv(t, Options{Phase: phase})
	base := e.sim.storedBytes()
	const workers, rounds = 4, 12
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				in := e.upload(fmt.Sprintf("w%d-%d.jsonl", w, i), numberedInput(20+i, 4))
				b := e.createFrom(in.ID, "")
				if i%3 == 0 {
					e.do("POST", "/v1/batches/"+b.ID+"/cancel", testBearer, "")
				}
				e.clock.Advance(phase / 2)
				e.listFiles("&purpose=batch_output", 7)
				b, _ = e.get(b.ID)
				for _, id := range []*string{b.OutputFileID, b.ErrorFileID} {
					if id == nil {
						continue
					}
					e.content(*id)
					if r := e.do("DELETE", "/v1/files/"+*id, testBearer, ""); r.status != 200 {
						t.Errorf("delete %s: %d %s", *id, r.status, r.body)
					}
				}
				if r := e.do("DELETE", "/v1/files/"+in.ID, testBearer, ""); r.status != 200 {
					t.Errorf("delete %s: %d %s", in.ID, r.status, r.body)
				}
			}
		})
	}
	wg.Wait()
	// Let every batch end, then delete what is left: the store is empty.
	e.clock.Advance(10 * phase)
	for _, f := range e.listFiles("&purpose=batch_output", 100) {
		if strings.HasPrefix(f.Filename, "batch_demo") {
			continue
		}
		if r := e.do("DELETE", "/v1/files/"+f.ID, testBearer, ""); r.status != 200 {
			t.Errorf("delete %s: %d", f.ID, r.status)
		}
	}
	if got := e.sim.storedBytes(); got != base {
		t.Errorf("store holds %d bytes, want %d", got, base)
	}
}
