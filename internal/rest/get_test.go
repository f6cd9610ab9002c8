package rest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// getWith runs GET /v1/batches/batch_01abc with the given If-None-Match
// values against a service answering the provider's sample batch.
func getWith(t *testing.T, ifNoneMatch ...string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	b := decodeGolden(t, "provider_sample")
	req := httptest.NewRequest(http.MethodGet, "/v1/batches/batch_01abc", nil)
	for _, v := range ifNoneMatch {
		req.Header.Add("If-None-Match", v)
	}
	return serveRequest(t, &fakeService{resp: &batchv1.GetBatchResponse{Batch: b}}, req), wire.Tag(b)
}

// TestGetBatchETag: a 200 carries the state's tag as a strong ETag (the
// tag of exactly the body's bytes) and must be revalidated.
func TestGetBatchETag(t *testing.T) {
	t.Parallel()
	rec, tag := getWith(t)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("ETag"); got != `"`+tag+`"` {
		t.Errorf("ETag = %q, want %q", got, `"`+tag+`"`)
	}
	if got := wire.TagJSON(rec.Body.Bytes()); got != tag {
		t.Errorf("the body's tag is %q, the ETag's %q", got, tag)
	}
	if got := rec.Header().Get("Cache-Control"); got != "private, no-cache" {
		t.Errorf("Cache-Control = %q", got)
	}
	if compact(t, rec.Body.Bytes()) != compact(t, readGolden(t, "provider_sample", "gateway")) {
		t.Errorf("body %s is not the golden gateway output", rec.Body)
	}
}

// TestGetBatchEncodesStateOnce: GETs answered with the same batch state
// (the hub hands out one pointer per state) share one encoding and tag.
// The test breaks the rule that a state is not modified once published,
// to see it: the second answer is still the first state's.
func TestGetBatchEncodesStateOnce(t *testing.T) {
	t.Parallel()
	b := decodeGolden(t, "provider_sample")
	svc := &fakeService{resp: &batchv1.GetBatchResponse{Batch: b}}
	get := func() *httptest.ResponseRecorder {
		return serveRequest(t, svc, httptest.NewRequest(http.MethodGet, "/v1/batches/batch_01abc", nil))
	}
	first := get()
	b.UpstreamStatus, b.Status = "cancelled", batchv1.BatchStatus_BATCH_STATUS_CANCELLED
	second := get()
	if first.Code != http.StatusOK || second.Code != http.StatusOK {
		t.Fatalf("statuses %d, %d", first.Code, second.Code)
	}
	if second.Body.String() != first.Body.String() || second.Header().Get("ETag") != first.Header().Get("ETag") {
		t.Errorf("the same state was encoded again:\n%s\n%s", first.Body, second.Body)
	}
}

// TestGetBatchNotModified: If-None-Match naming the current tag, in any
// form RFC 9110 allows, is a 304 with no body and the same ETag; one that
// names other tags is a 200.
func TestGetBatchNotModified(t *testing.T) {
	t.Parallel()
	tag := wire.Tag(decodeGolden(t, "provider_sample"))
	q := `"` + tag + `"`
	tests := []struct {
		name   string
		values []string
		want   int
	}{
		{"exact", []string{q}, http.StatusNotModified},
		{"weak", []string{"W/" + q}, http.StatusNotModified},
		{"star", []string{"*"}, http.StatusNotModified},
		{"in a list", []string{`"bt1_other", ` + q + `, W/"x"`}, http.StatusNotModified},
		{"list without spaces", []string{`"a",W/"b",` + q}, http.StatusNotModified},
		{"in a second field line", []string{`"a"`, q}, http.StatusNotModified},
		{"a comma inside a tag", []string{`"a,b", ` + q}, http.StatusNotModified},
		{"other tag", []string{`"bt1_AAAAAAAAAAAAAAAAAAAAAA"`}, http.StatusOK},
		{"older list", []string{`"a", W/"b"`}, http.StatusOK},
		{"unquoted", []string{tag}, http.StatusOK},
		{"prefix only", []string{`"` + tag[:len(tag)-1] + `"`}, http.StatusOK},
		{"malformed before", []string{`junk ` + q}, http.StatusOK},
		{"unterminated", []string{`"` + tag}, http.StatusOK},
		{"empty", []string{""}, http.StatusOK},
		{"lowercase weak", []string{"w/" + q}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec, _ := getWith(t, tt.values...)
			if rec.Code != tt.want {
				t.Fatalf("If-None-Match %q: status %d, want %d", tt.values, rec.Code, tt.want)
			}
			if got := rec.Header().Get("ETag"); got != q {
				t.Errorf("ETag = %q, want %q", got, q)
			}
			if got := rec.Header().Get("Cache-Control"); got != "private, no-cache" {
				t.Errorf("Cache-Control = %q", got)
			}
			if tt.want == http.StatusNotModified {
				if rec.Body.Len() != 0 {
					t.Errorf("a 304 with a body: %q", rec.Body)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "" {
					t.Errorf("a 304 with Content-Type %q", ct)
				}
			} else if rec.Body.Len() == 0 {
				t.Error("a 200 without the batch")
			}
		})
	}
}

// TestGetBatchErrorsHaveNoETag: errors take the one error path and carry
// no ETag, If-None-Match or not.
func TestGetBatchErrorsHaveNoETag(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest(http.MethodGet, "/v1/batches/batch_01abc", nil)
	req.Header.Set("If-None-Match", "*")
	rec := serveRequest(t, &fakeService{resp: &batchv1.GetBatchResponse{}}, req) // no batch: ErrNilBatch
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	envelope(t, rec)
	if rec.Header().Get("ETag") != "" {
		t.Errorf("an error with ETag %q", rec.Header().Get("ETag"))
	}
}

func TestRegisterGetBatchHandlerNil(t *testing.T) {
	t.Parallel()
	if err := RegisterGetBatchHandler(nil, nil); err == nil {
		t.Error("no error for a nil mux")
	}
	if err := RegisterGetBatchHandler(runtime.NewServeMux(), nil); err == nil {
		t.Error("no error for a nil caller")
	}
}
