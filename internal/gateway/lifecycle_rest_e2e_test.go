package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
)

// lcPart is one part of a multipart upload body.
type lcPart struct {
	name, filename string // filename set: a file part
	data           []byte
}

// lcMultipart returns a multipart/form-data body of parts, in order, and
// its Content-Type.
func lcMultipart(t *testing.T, parts ...lcPart) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			w, err = mw.CreateFormFile(p.name, p.filename)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

// lcRESTUpload uploads data over REST with the parts in the given order
// and returns the answer's status and JSON.
func lcRESTUpload(t *testing.T, e *env, authz string, fileFirst bool, data []byte) (int, map[string]any) {
	t.Helper()
	file, purpose := lcPart{"file", "input.jsonl", data}, lcPart{"purpose", "", []byte("batch")}
	parts := []lcPart{purpose, file}
	if fileFirst {
		parts = []lcPart{file, purpose}
	}
	body, ct := lcMultipart(t, parts...)
	resp, out := restRequest(t, e, http.MethodPost, "/v1/files", authz, http.Header{"Content-Type": {ct}}, body)
	return resp.StatusCode, lcJSON(t, out)
}

// lcRESTJSON sends a request with an optional JSON body and returns the
// answer's status and JSON object.
func lcRESTJSON(t *testing.T, e *env, method, path, authz string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	hdr := http.Header{}
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
		hdr.Set("Content-Type", "application/json")
	}
	resp, out := restRequest(t, e, method, path, authz, hdr, r)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, lcJSON(t, out)
}

// lcCreateBody is a valid create body for file.
func lcCreateBody(file string) map[string]any {
	return map[string]any{"input_file_id": file, "endpoint": lcEndpoint, "completion_window": "24h"}
}

// lcNDJSON splits an NDJSON body into its JSON objects.
func lcNDJSON(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, lcJSON(t, sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// lcEnvelope checks that m is the upstream's error envelope.
func lcEnvelope(t *testing.T, what string, m map[string]any) {
	t.Helper()
	env, ok := m["error"].(map[string]any)
	if !ok {
		t.Errorf("%s: no error envelope: %v", what, m)
		return
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := env[k]; !ok {
			t.Errorf("%s: envelope lacks %q: %v", what, k, env)
		}
	}
}

// lcInt reads a JSON integer (decoded with UseNumber).
func lcInt(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a JSON number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v is not an integer", v)
	}
	return i
}

// lcRESTStatus polls GET /v1/batches/{id} until its status is want.
func lcRESTStatus(t *testing.T, e *env, authz, id, want string) map[string]any {
	t.Helper()
	var b map[string]any
	waitFor(t, "batch "+id+" "+want, func() bool {
		var code int
		code, b = lcRESTJSON(t, e, http.MethodGet, "/v1/batches/"+id, authz, nil)
		return code == http.StatusOK && b["status"] == want
	})
	return b
}

func TestLifecycleREST(t *testing.T) {
	t.Parallel()
	t.Run("flow", func(t *testing.T) {
		t.Parallel()
		clk := newClock()
		e := lcStart(t, clk)
		input := lcInput(lcCustomIDs...)

		var fileIDs []string
		for _, fileFirst := range []bool{false, true} {
			code, f := lcRESTUpload(t, e, "", fileFirst, input)
			if code != http.StatusOK {
				t.Fatalf("upload (file first %v): %d %v", fileFirst, code, f)
			}
			if f["object"] != "file" || f["purpose"] != "batch" || f["filename"] != "input.jsonl" || lcInt(t, f["bytes"]) != int64(len(input)) {
				t.Errorf("uploaded file %v", f)
			}
			lcInt(t, f["created_at"])
			id, _ := f["id"].(string)
			if got, _ := e.Sim.FileContent(id); !bytes.Equal(got, input) {
				t.Errorf("the upstream stores %q for %s", got, id)
			}
			fileIDs = append(fileIDs, id)
		}
		code, f := lcRESTJSON(t, e, http.MethodGet, "/v1/files/"+fileIDs[0], "", nil)
		if code != http.StatusOK || f["id"] != fileIDs[0] || lcInt(t, f["bytes"]) != int64(len(input)) {
			t.Errorf("GET file: %d %v", code, f)
		}

		body := lcCreateBody(fileIDs[0])
		body["metadata"] = map[string]string{"purpose": "e2e"}
		code, b := lcRESTJSON(t, e, http.MethodPost, "/v1/batches", "", body)
		if code != http.StatusOK || b["object"] != "batch" || b["status"] != "validating" || b["input_file_id"] != fileIDs[0] {
			t.Fatalf("create: %d %v", code, b)
		}
		if md, _ := b["metadata"].(map[string]any); md["purpose"] != "e2e" {
			t.Errorf("metadata %v", b["metadata"])
		}
		id := b["id"].(string)
		resp, data := restRequest(t, e, http.MethodGet, "/v1/batches/"+id+"/results", "", nil, nil)
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusPreconditionFailed {
			t.Errorf("results of a running batch: %d %s", resp.StatusCode, data)
		}
		lcEnvelope(t, "results of a running batch", lcJSON(t, data))

		clk.Advance(3*phase + time.Second)
		done := lcRESTStatus(t, e, "", id, "completed")
		outID, _ := done["output_file_id"].(string)
		errID, _ := done["error_file_id"].(string)
		if outID == "" || errID == "" {
			t.Fatalf("completed batch %v lacks its files", done)
		}
		rc, _ := done["request_counts"].(map[string]any)
		if lcInt(t, rc["total"]) != 3 || lcInt(t, rc["completed"]) != 2 || lcInt(t, rc["failed"]) != 1 {
			t.Errorf("request_counts %v", rc)
		}

		resp, data = restRequest(t, e, http.MethodGet, "/v1/batches/"+id+"/results", "", nil, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("results: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
		}
		lines := lcNDJSON(t, data)
		var kinds, ids []string
		for _, l := range lines {
			kinds = append(kinds, l["kind"].(string))
			ids = append(ids, l["custom_id"].(string))
			if _, bad := l["parse_error"]; bad {
				t.Errorf("unreadable line %v", l)
			}
		}
		if !slices.Equal(kinds, []string{"output", "output", "errors"}) || !slices.Equal(ids, []string{"req-1", "req-3", "fail-2"}) {
			t.Errorf("results kinds %v custom_ids %v", kinds, ids)
		}
		for k := range len(lines) + 1 {
			_, data := restRequest(t, e, http.MethodGet, fmt.Sprintf("/v1/batches/%s/results?start_line=%d", id, k+1), "", nil, nil)
			rest := lcNDJSON(t, data)
			if len(rest) != len(lines)-k {
				t.Errorf("start_line %d: %d lines, want %d", k+1, len(rest), len(lines)-k)
				continue
			}
			for i, l := range rest {
				if l["custom_id"] != lines[k+i]["custom_id"] || l["line"].(json.Number) != lines[k+i]["line"].(json.Number) {
					t.Errorf("start_line %d: line %d is %v, want %v", k+1, i, l, lines[k+i])
				}
			}
		}
		_, data = restRequest(t, e, http.MethodGet, "/v1/batches/"+id+"/results?kind=errors", "", nil, nil)
		if errs := lcNDJSON(t, data); len(errs) != 1 || errs[0]["custom_id"] != "fail-2" {
			t.Errorf("kind=errors: %v", errs)
		}

		for _, fid := range []string{outID, errID} {
			want, _ := e.Sim.FileContent(fid)
			resp, got := restRequest(t, e, http.MethodGet, "/v1/files/"+fid+"/content", "", nil, nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) || len(want) == 0 {
				t.Errorf("content of %s: %d %q, want %q", fid, resp.StatusCode, got, want)
			}
		}

		mine := []string{id}
		for range 3 {
			clk.Advance(time.Second)
			code, b := lcRESTJSON(t, e, http.MethodPost, "/v1/batches", "", lcCreateBody(fileIDs[1]))
			if code != http.StatusOK {
				t.Fatalf("create: %d %v", code, b)
			}
			mine = append(mine, b["id"].(string))
		}
		var listed []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatal("the listing never ends")
			}
			path := "/v1/batches?limit=2"
			if after != "" {
				path += "&after=" + after
			}
			code, page := lcRESTJSON(t, e, http.MethodGet, path, "", nil)
			data, ok := page["data"].([]any)
			if code != http.StatusOK || page["object"] != "list" || !ok || len(data) > 2 {
				t.Fatalf("%s: %d %v", path, code, page)
			}
			for _, k := range []string{"first_id", "last_id", "has_more"} {
				if _, ok := page[k]; !ok {
					t.Errorf("%s: no %q in %v", path, k, page)
				}
			}
			for _, d := range data {
				b := d.(map[string]any)
				if b["object"] != "batch" {
					t.Errorf("list item %v", b)
				}
				listed = append(listed, b["id"].(string))
			}
			if len(data) > 0 && (page["first_id"] != data[0].(map[string]any)["id"] || page["last_id"] != data[len(data)-1].(map[string]any)["id"]) {
				t.Errorf("%s: first_id/last_id do not match the page", path)
			}
			if page["has_more"] != true {
				break
			}
			after = page["last_id"].(string)
		}
		lcCheckListing(t, listed, mine)

		code, c := lcRESTJSON(t, e, http.MethodPost, "/v1/batches/"+mine[3]+"/cancel", "", nil)
		if code != http.StatusOK || c["status"] != "cancelling" || c["id"] != mine[3] {
			t.Errorf("cancel: %d %v", code, c)
		}
		code, c = lcRESTJSON(t, e, http.MethodPost, "/v1/batches/"+id+"/cancel", "", nil)
		if code != http.StatusOK || c["status"] != "completed" {
			t.Errorf("cancel of a completed batch: %d %v", code, c)
		}

		code, d := lcRESTJSON(t, e, http.MethodDelete, "/v1/files/"+fileIDs[0], "", nil)
		if code != http.StatusOK || d["id"] != fileIDs[0] || d["deleted"] != true || d["object"] != "file" {
			t.Errorf("delete: %d %v", code, d)
		}
		code, d = lcRESTJSON(t, e, http.MethodGet, "/v1/files/"+fileIDs[0], "", nil)
		if code != http.StatusNotFound {
			t.Errorf("GET deleted file: %d %v", code, d)
		}
		lcEnvelope(t, "GET deleted file", d)
	})

	t.Run("bad input", func(t *testing.T) {
		t.Parallel()
		e := lcStart(t, newClock(), func(c *config.Config) { c.Files.MaxUploadBytes = 1000 })
		input := lcInput("a")
		upload := func(parts ...lcPart) func() (string, http.Header, io.Reader) {
			return func() (string, http.Header, io.Reader) {
				body, ct := lcMultipart(t, parts...)
				return "/v1/files", http.Header{"Content-Type": {ct}}, body
			}
		}
		jsonBody := func(path string, v any) func() (string, http.Header, io.Reader) {
			return func() (string, http.Header, io.Reader) {
				data, _ := json.Marshal(v)
				return path, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(data)
			}
		}
		get := func(path string) func() (string, http.Header, io.Reader) {
			return func() (string, http.Header, io.Reader) { return path, nil, nil }
		}
		withBody := func(b map[string]any, k string, v any) map[string]any {
			b[k] = v
			return b
		}
		tests := []struct {
			name   string
			method string
			req    func() (string, http.Header, io.Reader)
			status int
			param  string // the envelope's param, when checked
			defect string // set: a known product defect, skipped
		}{
			{"upload not multipart", http.MethodPost, func() (string, http.Header, io.Reader) {
				return "/v1/files", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"purpose":"batch"}`)
			}, 400, "", ""},
			{"upload without file part", http.MethodPost, upload(lcPart{"purpose", "", []byte("batch")}), 400, "file", ""},
			{"upload without purpose", http.MethodPost, upload(lcPart{"file", "a.jsonl", input}), 400, "purpose", ""},
			{"upload purpose fine-tune", http.MethodPost, upload(lcPart{"purpose", "", []byte("fine-tune")}, lcPart{"file", "a.jsonl", input}), 400, "purpose", ""},
			{"upload purpose fine-tune after file", http.MethodPost, upload(lcPart{"file", "a.jsonl", input}, lcPart{"purpose", "", []byte("fine-tune")}), 400, "purpose", ""},
			{"upload too large", http.MethodPost, upload(lcPart{"purpose", "", []byte("batch")}, lcPart{"file", "a.jsonl", bytes.Repeat(input, 1000/len(input)+1)}), 413, "", ""},
			{"upload too large body", http.MethodPost, upload(lcPart{"purpose", "", []byte("batch")}, lcPart{"file", "a.jsonl", bytes.Repeat([]byte("x"), 2<<20)}), 413, "", ""},
			{"list limit 0", http.MethodGet, get("/v1/batches?limit=0"), 400, "limit", ""},
			{"files limit 0", http.MethodGet, get("/v1/files?limit=0"), 400, "limit", ""},
			{"list limit 101", http.MethodGet, get("/v1/batches?limit=101"), 400, "limit", ""},
			{"list limit not a number", http.MethodGet, get("/v1/batches?limit=x"), 400, "", ""},
			{"list after bad id", http.MethodGet, get("/v1/batches?after=a.b"), 400, "after", ""},
			{"create unknown endpoint", http.MethodPost, jsonBody("/v1/batches", withBody(lcCreateBody(simulator.DemoInputFile), "endpoint", "/v1/images")), 400, "endpoint", ""},
			{"create 48h", http.MethodPost, jsonBody("/v1/batches", withBody(lcCreateBody(simulator.DemoInputFile), "completion_window", "48h")), 400, "completion_window", ""},
			{"create reserved metadata", http.MethodPost, jsonBody("/v1/batches", withBody(lcCreateBody(simulator.DemoInputFile), "metadata", map[string]string{"batchgate_x": "1"})), 400, "metadata", ""},
			{"create no file", http.MethodPost, jsonBody("/v1/batches", map[string]any{"endpoint": lcEndpoint, "completion_window": "24h"}), 400, "input_file_id", ""},
			{"create bad file id", http.MethodPost, jsonBody("/v1/batches", lcCreateBody("a.b")), 400, "input_file_id", ""},
			{"create not JSON", http.MethodPost, func() (string, http.Header, io.Reader) {
				return "/v1/batches", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"input_file_id":`)
			}, 400, "", ""},
			{"get bad batch id", http.MethodGet, get("/v1/batches/a.b"), 400, "", ""},
			{"cancel bad batch id", http.MethodPost, get("/v1/batches/a.b/cancel"), 400, "", ""},
			{"results bad batch id", http.MethodGet, get("/v1/batches/a.b/results"), 400, "", ""},
			{"results bad kind", http.MethodGet, get("/v1/batches/" + simulator.DemoCompleted + "/results?kind=x"), 400, "kind", ""},
			{"results bad start_line", http.MethodGet, get("/v1/batches/" + simulator.DemoCompleted + "/results?start_line=-1"), 400, "start_line", ""},
			{"get bad file id", http.MethodGet, get("/v1/files/a.b"), 400, "", ""},
			{"content bad file id", http.MethodGet, get("/v1/files/a.b/content"), 400, "", ""},
			{"delete bad file id", http.MethodDelete, get("/v1/files/a.b"), 400, "", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.defect != "" {
					t.Skip("defect: " + tt.defect)
				}
				path, hdr, body := tt.req()
				resp, data := restRequest(t, e, tt.method, path, "", hdr, body)
				if resp.StatusCode != tt.status {
					t.Errorf("%s %s: %d %s, want %d", tt.method, path, resp.StatusCode, data, tt.status)
				}
				m := lcJSON(t, data)
				lcEnvelope(t, tt.name, m)
				if env, _ := m["error"].(map[string]any); tt.param != "" && env["param"] != tt.param {
					t.Errorf("param %v, want %q", env["param"], tt.param)
				}
			})
		}
		if n := e.Sim.Creates(); n != 0 {
			t.Errorf("the upstream made %d batches of bad requests", n)
		}
		code, list := lcRESTJSON(t, e, http.MethodGet, "/v1/files", "", nil)
		data, _ := list["data"].([]any)
		for _, d := range data {
			if f := d.(map[string]any); f["filename"] == "a.jsonl" {
				t.Errorf("a refused upload was stored: %v", f)
			}
		}
		if code != http.StatusOK || len(data) == 0 {
			t.Errorf("files: %d %v", code, list)
		}
	})
}
