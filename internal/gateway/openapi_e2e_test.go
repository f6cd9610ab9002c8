package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/wire"
	"github.com/batchgate/batchgate/openapi"
)

// TestOpenAPIEveryOperation calls every operation of
// openapi/batchgate.yaml, and the errors around them, through e.HTTP,
// whose transport fails the test for any response that does not conform
// to the document (gatewaytest.OpenAPITransport).
func TestOpenAPIEveryOperation(t *testing.T) {
	t.Parallel()
	e := start(t)
	do := func(method, path string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, e.BaseURL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := e.HTTP.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp, data
	}
	expect := func(method, path string, hdr http.Header, body io.Reader, status int) []byte {
		t.Helper()
		resp, data := do(method, path, hdr, body)
		if resp.StatusCode != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, data, status)
		}
		return data
	}
	id := func(data []byte) string {
		t.Helper()
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(data, &v); err != nil || v.ID == "" {
			t.Fatalf("no id in %s (%v)", data, err)
		}
		return v.ID
	}
	jsonHdr := http.Header{"Content-Type": {"application/json"}}

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		expect(http.MethodGet, path, nil, nil, http.StatusOK)
	}
	if got := expect(http.MethodGet, "/openapi.yaml", nil, nil, http.StatusOK); !bytes.Equal(got, openapi.Document()) {
		t.Error("GET /openapi.yaml is not openapi/batchgate.yaml")
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "input.jsonl")
	_, _ = fw.Write([]byte(`{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}` + "\n"))
	_ = mw.WriteField("purpose", "batch")
	_ = mw.Close()
	file := id(expect(http.MethodPost, "/v1/files", http.Header{"Content-Type": {mw.FormDataContentType()}}, &body, http.StatusOK))
	expect(http.MethodGet, "/v1/files?limit=2", nil, nil, http.StatusOK)
	expect(http.MethodGet, "/v1/files?purpose=batch_output", nil, nil, http.StatusOK)
	expect(http.MethodGet, "/v1/files/"+file, nil, nil, http.StatusOK)

	create := `{"input_file_id":"` + file + `","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"team":"ml"}}`
	batch := id(expect(http.MethodPost, "/v1/batches", http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"oapi-1"}},
		strings.NewReader(create), http.StatusOK))
	expect(http.MethodGet, "/v1/batches/"+batch, nil, nil, http.StatusOK)
	expect(http.MethodGet, "/v1/batches?limit=2", nil, nil, http.StatusOK)
	expect(http.MethodGet, "/v1/batches?limit=100&after="+batch, nil, nil, http.StatusOK)
	expect(http.MethodGet, "/v1/batches/"+batch+"/results", nil, nil, http.StatusConflict)
	expect(http.MethodPost, "/v1/batches/"+batch+"/cancel", nil, nil, http.StatusOK)

	// Streams: NDJSON and SSE watches of a terminal batch (one event, then
	// the end), one of a running batch left after its first event, results
	// with unreadable lines, raw content.
	for _, accept := range []string{"", "text/event-stream"} {
		data := expect(http.MethodGet, "/v1/batches/"+simulator.DemoCompleted+"/watch", http.Header{"Accept": {accept}}, nil, http.StatusOK)
		if len(data) == 0 {
			t.Errorf("watch (Accept %q): empty", accept)
		}
	}
	for _, accept := range []string{"", "text/event-stream"} {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.BaseURL+"/v1/batches/"+simulator.DemoProgress+"/watch", nil)
		req.Header.Set("Accept", accept)
		resp, err := e.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("watch of a running batch (Accept %q): %d %q %v", accept, resp.StatusCode, line, err)
		}
		cancel()
		_ = resp.Body.Close()
	}
	for _, q := range []string{"", "?kind=errors", "?kind=output&start_line=2"} {
		expect(http.MethodGet, "/v1/batches/"+simulator.DemoExpired+"/results"+q, nil, nil, http.StatusOK)
	}
	if got := expect(http.MethodGet, "/v1/files/"+simulator.DemoOutputFile+"/content", nil, nil, http.StatusOK); len(got) == 0 {
		t.Error("the demo output file is empty")
	}
	expect(http.MethodDelete, "/v1/files/"+file, nil, nil, http.StatusOK)

	// Errors, in the envelope.
	for _, tt := range []struct {
		method, path string
		hdr          http.Header
		body         string
		status       int
	}{
		{http.MethodGet, "/v1/batches/a.b", nil, "", http.StatusBadRequest},
		{http.MethodGet, "/v1/batches/batch_nope", nil, "", http.StatusNotFound},
		{http.MethodGet, "/v1/batches/batch_nope/watch", nil, "", http.StatusNotFound},
		{http.MethodGet, "/v1/batches/" + simulator.DemoCompleted + "/results?kind=x", nil, "", http.StatusBadRequest},
		{http.MethodGet, "/v1/batches?limit=101", nil, "", http.StatusBadRequest},
		{http.MethodGet, "/v1/batches?limit=x", nil, "", http.StatusBadRequest},
		{http.MethodPost, "/v1/batches", jsonHdr, `{"input_file_id":`, http.StatusBadRequest},
		{http.MethodPost, "/v1/batches", jsonHdr, `{"input_file_id":"` + strings.Repeat("f", 70_000) + `"}`, http.StatusRequestEntityTooLarge},
		{http.MethodPost, "/v1/files", jsonHdr, `{}`, http.StatusBadRequest},
		{http.MethodGet, "/v1/files/" + file, nil, "", http.StatusNotFound},
		{http.MethodGet, "/v1/files/nope/content", nil, "", http.StatusNotFound},
		{http.MethodDelete, "/v1/files/a.b", nil, "", http.StatusBadRequest},
		{http.MethodGet, "/v1/nothing-here", nil, "", http.StatusNotFound},
		{http.MethodPut, "/v1/files", nil, "", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/v1/batches/" + simulator.DemoCompleted, nil, "", http.StatusMethodNotAllowed},
		{http.MethodHead, "/v1/batches/" + simulator.DemoCompleted + "/watch", nil, "", http.StatusMethodNotAllowed},
		{http.MethodHead, "/v1/batches/" + simulator.DemoCompleted, nil, "", http.StatusOK},
		{http.MethodGet, "/v1/batches/" + simulator.DemoCompleted, http.Header{"X-Junk": {strings.Repeat("h", 200_000)}}, "", http.StatusRequestHeaderFieldsTooLarge},
	} {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		expect(tt.method, tt.path, tt.hdr, body, tt.status)
	}
}

// recordingTB is a testing.TB whose Errorf is recorded instead of failing
// the test.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := r.errs
	r.errs = nil
	return errs
}

// TestOpenAPITransportCatchesNonconformingResponses: the checking
// transport reports answers in the proto shape, without the envelope,
// with a wrapped stream line, without X-Request-Id or without ETag, and
// passes conforming ones (a 304 included).
func TestOpenAPITransportCatchesNonconformingResponses(t *testing.T) {
	t.Parallel()
	const batch = `{"id":"b","object":"batch","endpoint":"/v1/chat/completions","status":"completed","input_file_id":"f",` +
		`"output_file_id":null,"error_file_id":null,"completion_window":"24h","metadata":null,"errors":null}`
	answers := map[string]func(w http.ResponseWriter){
		"/v1/batches/good": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("ETag", `"`+wire.TagJSON([]byte(batch))+`"`)
			w.Header().Set("Cache-Control", "private, no-cache")
			_, _ = io.WriteString(w, batch)
		},
		"/v1/batches/not_modified": func(w http.ResponseWriter) {
			w.Header().Set("ETag", `"`+wire.TagJSON([]byte(batch))+`"`)
			w.Header().Set("Cache-Control", "private, no-cache")
			w.WriteHeader(http.StatusNotModified)
		},
		"/v1/batches/no_etag": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "private, no-cache")
			_, _ = io.WriteString(w, batch)
		},
		"/v1/batches/int64_string": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, strings.Replace(batch, `"metadata"`, `"created_at":"1710000000","metadata"`, 1))
		},
		"/v1/batches/rpc_status": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"code":5,"message":"not found","details":[]}`)
		},
		"/v1/batches/plain_error": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "bad gateway")
		},
		"/v1/batches/good/watch": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("X-Accel-Buffering", "no")
			_, _ = io.WriteString(w, `{"type":"snapshot","sequence":1,"terminal":true,"observed_at_ms":1,"batch":`+batch+"}\n")
		},
		"/v1/batches/wrapped/watch": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("X-Accel-Buffering", "no")
			_, _ = io.WriteString(w, `{"result":{"type":"WATCH_EVENT_TYPE_SNAPSHOT","sequence":"1"}}`+"\n")
		},
		"/v1/batches/bad_sse/watch": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("X-Accel-Buffering", "no")
			_, _ = io.WriteString(w, "id: 1\nevent: snapshot\ndata: {\"batch\":{}}\n\n")
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/batches/no_request_id" {
			w.Header().Set("X-Request-Id", "req-1")
		} else {
			r.URL.Path = "/v1/batches/good"
		}
		answers[r.URL.Path](w)
	}))
	t.Cleanup(srv.Close)
	rec := &recordingTB{TB: t}
	hc := &http.Client{Transport: gatewaytest.OpenAPITransport(rec, srv.Client().Transport)}
	for _, tt := range []struct {
		path string
		bad  bool
	}{
		{"/v1/batches/good", false},
		{"/v1/batches/not_modified", false},
		{"/v1/batches/no_etag", true},
		{"/v1/batches/good/watch", false},
		{"/v1/batches/int64_string", true},
		{"/v1/batches/rpc_status", true},
		{"/v1/batches/plain_error", true},
		{"/v1/batches/no_request_id", true},
		{"/v1/batches/wrapped/watch", true},
		{"/v1/batches/bad_sse/watch", true},
	} {
		resp, err := hc.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if errs := rec.take(); (len(errs) > 0) != tt.bad {
			t.Errorf("GET %s: reported %q, want a report: %v", tt.path, errs, tt.bad)
		}
	}
}
