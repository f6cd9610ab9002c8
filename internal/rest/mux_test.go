package rest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/inproc"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/wire"
)

// fakeService answers GetBatch with its fields.
type fakeService struct {
	batchv1.UnimplementedBatchServiceServer
	resp *batchv1.GetBatchResponse
	err  error
}

func (f *fakeService) GetBatch(context.Context, *batchv1.GetBatchRequest) (*batchv1.GetBatchResponse, error) {
	return f.resp, f.err
}

// serve runs one request through NewServeMux with the generated handlers
// registered for svc, and RegisterGetBatchHandler in front of svc in
// process (as the gateway has it).
func serve(t *testing.T, svc batchv1.BatchServiceServer, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	return serveRequest(t, svc, httptest.NewRequest(method, target, nil))
}

// serveRequest is serve for a request of the test's making.
func serveRequest(t *testing.T, svc batchv1.BatchServiceServer, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	mux := NewServeMux()
	if err := batchv1.RegisterBatchServiceHandlerServer(t.Context(), mux, svc); err != nil {
		t.Fatal(err)
	}
	conn := inproc.New(nil, nil)
	batchv1.RegisterBatchServiceServer(conn, svc)
	if err := RegisterGetBatchHandler(mux, conn); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

// envelope decodes an upstream-style error body, checking its exact key
// set.
func envelope(t *testing.T, rec *httptest.ResponseRecorder) wire.ErrorObject {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("body %s is not an error envelope: %v", rec.Body, err)
	}
	if len(raw) != 1 || len(raw["error"]) != 4 {
		t.Errorf("body %s: want exactly {\"error\":{message,type,param,code}}", rec.Body)
	}
	var env wire.ErrorEnvelope
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatal(err)
	}
	return env.Error
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

func TestGetBatchOK(t *testing.T) {
	t.Parallel()
	want := decodeGolden(t, "provider_sample")
	rec := serve(t, &fakeService{resp: &batchv1.GetBatchResponse{Batch: want}}, http.MethodGet, "/v1/batches/batch_01abc")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := compact(t, rec.Body.Bytes()); got != compact(t, readGolden(t, "provider_sample", "gateway")) {
		t.Errorf("body %s is not the golden gateway output", got)
	}
	got, err := wire.DecodeBatch(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("the upstream decoder cannot read the body: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("body decodes to %v, want %v", got, want)
	}
}

func TestErrorHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		svc        *fakeService
		wantStatus int
		wantType   string
		wantCode   string
		wantParam  string
		wantMsg    string
		wantRetry  string
	}{
		{
			name: "rate limited upstream keeps its status, type, code and Retry-After",
			svc: &fakeService{err: apierr.FromError(&upstream.Error{
				HTTPStatus: 429, Type: "rate_limit_error", Code: "rate_limit_exceeded", RetryAfter: 1500 * time.Millisecond,
			}).Err()},
			wantStatus: 429, wantType: "rate_limit_error", wantCode: "rate_limit_exceeded", wantParam: "<null>",
			wantMsg: "upstream answered HTTP 429 rate_limit_error", wantRetry: "2",
		},
		{
			name:       "insufficient balance stays a 402",
			svc:        &fakeService{err: apierr.FromError(&upstream.Error{HTTPStatus: 402, Type: "insufficient_balance", Code: "402"}).Err()},
			wantStatus: 402, wantType: "insufficient_balance", wantCode: "402", wantParam: "<null>",
			wantMsg: "upstream answered HTTP 402 insufficient_balance",
		},
		{
			name:       "unknown batch",
			svc:        &fakeService{err: apierr.FromError(&upstream.Error{HTTPStatus: 404, Type: "not_found_error"}).Err()},
			wantStatus: 404, wantType: "not_found_error", wantCode: "<null>", wantParam: "<null>",
			wantMsg: "upstream answered HTTP 404 not_found_error",
		},
		{
			name:       "invalid batch id names the param",
			svc:        &fakeService{err: apierr.FromError(upstream.ErrInvalidBatchID).Err()},
			wantStatus: 400, wantType: "invalid_request_error", wantCode: "invalid_batch_id", wantParam: "batch_id",
			wantMsg: "invalid batch id",
		},
		{
			name:       "unreachable upstream",
			svc:        &fakeService{err: apierr.FromError(upstream.ErrUnreachable).Err()},
			wantStatus: 502, wantType: "api_error", wantCode: "upstream_unavailable", wantParam: "<null>",
			wantMsg: "the upstream is unreachable",
		},
		{
			name:       "a bare status without details",
			svc:        &fakeService{err: status.Error(codes.Unauthenticated, "missing credential")},
			wantStatus: 401, wantType: "invalid_api_key", wantCode: "unauthenticated", wantParam: "<null>",
			wantMsg: "missing credential",
		},
		{
			name:       "a plain error is an internal error that leaks nothing",
			svc:        &fakeService{err: errors.New("dial tcp 10.0.0.7:443: secret detail")},
			wantStatus: 500, wantType: "api_error", wantCode: "internal_error", wantParam: "<null>",
			wantMsg: "internal error",
		},
		{
			name:       "a nil batch fails to marshal: internal error",
			svc:        &fakeService{resp: &batchv1.GetBatchResponse{}},
			wantStatus: 500, wantType: "api_error", wantCode: "internal_error", wantParam: "<null>",
			wantMsg: "internal error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(t, tt.svc, http.MethodGet, "/v1/batches/batch_01abc")
			if rec.Code != tt.wantStatus {
				t.Errorf("HTTP status = %d, want %d", rec.Code, tt.wantStatus)
			}
			e := envelope(t, rec)
			if e.Type != tt.wantType || str(e.Code) != tt.wantCode || str(e.Param) != tt.wantParam || e.Message != tt.wantMsg {
				t.Errorf("envelope = {message %q, type %q, code %s, param %s}, want {%q, %q, %s, %s}",
					e.Message, e.Type, str(e.Code), str(e.Param), tt.wantMsg, tt.wantType, tt.wantCode, tt.wantParam)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("body leaks the error: %s", rec.Body)
			}
		})
	}
}

func TestRoutingErrors(t *testing.T) {
	t.Parallel()
	long := "/v1/" + strings.Repeat("x", 1000)
	tests := []struct {
		name       string
		method     string
		target     string
		wantStatus int
		wantMsg    string
		wantCode   string
	}{
		{"unknown path", http.MethodGet, "/v1/foo", 404, "Unknown request URL: GET /v1/foo", "unknown_url"},
		{"unknown path under batches", http.MethodGet, "/v1/batches/b1/bogus", 404, "Unknown request URL: GET /v1/batches/b1/bogus", "unknown_url"},
		{"escaped path is echoed escaped", http.MethodGet, "/v1/f%20o%22", 404, `Unknown request URL: GET /v1/f%20o%22`, "unknown_url"},
		{"long path is cut", http.MethodGet, long, 404, "Unknown request URL: GET " + long[:maxPathInMessage] + "...", "unknown_url"},
		{"wrong method", http.MethodPost, "/v1/batches/batch_01abc", 405, "Method not allowed for URL: POST /v1/batches/batch_01abc", "method_not_allowed"},
		{"wrong method on watch", http.MethodDelete, "/v1/batches/batch_01abc/watch", 405, "Method not allowed for URL: DELETE /v1/batches/batch_01abc/watch", "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(t, &fakeService{}, tt.method, tt.target)
			if rec.Code != tt.wantStatus {
				t.Errorf("HTTP status = %d, want %d", rec.Code, tt.wantStatus)
			}
			e := envelope(t, rec)
			if e.Message != tt.wantMsg || e.Type != "invalid_request_error" || str(e.Code) != tt.wantCode || e.Param != nil {
				t.Errorf("envelope = {message %q, type %q, code %s, param %s}", e.Message, e.Type, str(e.Code), str(e.Param))
			}
		})
	}
}

// TestRoutingErrorNotAPath: a request target that is not a path ("*") is a
// 400.
func TestRoutingErrorNotAPath(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodOptions, "/", nil)
	req.URL.Path, req.URL.RawPath = "*", ""
	NewServeMux().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("HTTP status = %d, want 400", rec.Code)
	}
	if e := envelope(t, rec); e.Message != "Invalid request URL: OPTIONS *" || str(e.Code) != "invalid_url" {
		t.Errorf("envelope = %+v", e)
	}
}

// TestErrorHandlerHTTPStatusError: grpc-gateway reports a path it cannot
// unescape as a *runtime.HTTPStatusError; it keeps its 4xx status. A 5xx
// one goes through apierr like any error.
func TestErrorHandlerHTTPStatusError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantMsg    string
	}{
		{"malformed escape", &runtime.HTTPStatusError{HTTPStatus: 400, Err: runtime.MalformedSequenceError("%zz")}, 400, "Invalid request URL: GET /v1/batches/b1"},
		{"server side", &runtime.HTTPStatusError{HTTPStatus: 503, Err: status.Error(codes.Unavailable, "draining")}, 503, "draining"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/v1/batches/b1", nil)
			rec.Header().Set("Transfer-Encoding", "chunked")
			rec.Header().Set("Trailer", "Grpc-Trailer-X")
			handleError(req.Context(), NewServeMux(), &Marshaler{}, rec, req, tt.err)
			if rec.Code != tt.wantStatus {
				t.Errorf("HTTP status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if e := envelope(t, rec); e.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", e.Message, tt.wantMsg)
			}
			if rec.Header().Get("Transfer-Encoding") != "" || rec.Header().Get("Trailer") != "" {
				t.Errorf("stale framing headers kept: %v", rec.Header())
			}
		})
	}
}

// TestNewServeMuxExtraOptionsWin: an extra option overrides the package's.
func TestNewServeMuxExtraOptionsWin(t *testing.T) {
	t.Parallel()
	mux := NewServeMux(runtime.WithRoutingErrorHandler(func(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(http.StatusTeapot)
	}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/foo", nil))
	if rec.Code != http.StatusTeapot {
		t.Errorf("HTTP status = %d, want 418 from the extra option", rec.Code)
	}
}
