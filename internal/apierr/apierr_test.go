package apierr_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

func TestFromError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		code       codes.Code
		httpStatus int
		typ        string
		retryAfter time.Duration
	}{
		{"400", &upstream.Error{HTTPStatus: 400, Type: "invalid_request_error"}, codes.InvalidArgument, 400, "invalid_request_error", 0},
		{"401", &upstream.Error{HTTPStatus: 401, Type: "invalid_api_key", Code: "401"}, codes.Unauthenticated, 401, "invalid_api_key", 0},
		{"402", &upstream.Error{HTTPStatus: 402, Type: "insufficient_balance"}, codes.FailedPrecondition, 402, "insufficient_balance", 0},
		{"403", &upstream.Error{HTTPStatus: 403}, codes.PermissionDenied, 403, "permission_error", 0},
		{"404", &upstream.Error{HTTPStatus: 404, Type: "not_found_error"}, codes.NotFound, 404, "not_found_error", 0},
		{"408", &upstream.Error{HTTPStatus: 408}, codes.DeadlineExceeded, 408, "api_error", 0},
		{"409", &upstream.Error{HTTPStatus: 409}, codes.Aborted, 409, "api_error", 0},
		{"418 other 4xx", &upstream.Error{HTTPStatus: 418}, codes.FailedPrecondition, 418, "invalid_request_error", 0},
		{"429 with retry-after", &upstream.Error{HTTPStatus: 429, Type: "rate_limit_error", RetryAfter: 3 * time.Second}, codes.ResourceExhausted, 429, "rate_limit_error", 3 * time.Second},
		{"500", &upstream.Error{HTTPStatus: 500, Type: "api_error"}, codes.Unavailable, 500, "api_error", 0},
		{"501", &upstream.Error{HTTPStatus: 501}, codes.Unimplemented, 501, "api_error", 0},
		{"502", &upstream.Error{HTTPStatus: 502}, codes.Unavailable, 502, "api_error", 0},
		{"503 with retry-after", &upstream.Error{HTTPStatus: 503, RetryAfter: 1500 * time.Millisecond}, codes.Unavailable, 503, "api_error", 1500 * time.Millisecond},
		{"wrapped upstream error", fmt.Errorf("ctx: %w", &upstream.Error{HTTPStatus: 404}), codes.NotFound, 404, "not_found_error", 0},
		{"invalid id", fmt.Errorf("%w: contains '/'", upstream.ErrInvalidBatchID), codes.InvalidArgument, 400, "invalid_request_error", 0},
		{"unreachable", fmt.Errorf("%w: connection refused", upstream.ErrUnreachable), codes.Unavailable, 502, "api_error", 0},
		{"attempt timeout", upstream.ErrTimeout, codes.DeadlineExceeded, 504, "api_error", 0},
		{"caller deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded, 504, "api_error", 0},
		{"canceled", context.Canceled, codes.Canceled, 499, "api_error", 0},
		{"malformed", fmt.Errorf("%w: bad json", upstream.ErrMalformedResponse), codes.Internal, 502, "api_error", 0},
		{"too large", upstream.ErrResponseTooLarge, codes.Internal, 502, "api_error", 0},
		{"status passes through", status.Error(codes.ResourceExhausted, "too many watchers"), codes.ResourceExhausted, 429, "rate_limit_error", 0},
		{"unknown error", errors.New("boom with secret sk-123"), codes.Internal, 500, "api_error", 0},
		{"redirect", &upstream.Error{HTTPStatus: 302}, codes.Internal, 502, "api_error", 0},
		{"no content", &upstream.Error{HTTPStatus: 204}, codes.Internal, 502, "api_error", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := apierr.FromError(tt.err)
			if st.Code() != tt.code {
				t.Fatalf("code = %v, want %v", st.Code(), tt.code)
			}
			if got := apierr.HTTPStatus(st); got != tt.httpStatus {
				t.Errorf("HTTPStatus = %d, want %d", got, tt.httpStatus)
			}
			env := apierr.ToEnvelope(st)
			if env.Error.Type != tt.typ {
				t.Errorf("envelope type = %q, want %q", env.Error.Type, tt.typ)
			}
			if env.Error.Message == "" || strings.Contains(env.Error.Message, "sk-") {
				t.Errorf("envelope message = %q: empty or leaks a secret", env.Error.Message)
			}
			if got := apierr.RetryAfter(st); got != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", got, tt.retryAfter)
			}
		})
	}
}

func TestFromErrorNil(t *testing.T) {
	t.Parallel()
	if st := apierr.FromError(nil); st != nil {
		t.Fatalf("FromError(nil) = %v, want nil", st)
	}
	if got := apierr.HTTPStatus(nil); got != http.StatusOK {
		t.Fatalf("HTTPStatus(nil) = %d, want 200", got)
	}
}

func TestFromErrorUpstreamDetails(t *testing.T) {
	t.Parallel()
	ue := &upstream.Error{
		HTTPStatus: 400, Type: "invalid_request_error", Code: "bad\x00param\u00e9", Param: "batch_id",
		Message: "Incorrect API key provided: sk-secret",
	}
	st := apierr.FromError(ue)
	if strings.Contains(st.Message(), "sk-secret") || strings.Contains(st.Message(), "Incorrect") {
		t.Errorf("message %q passes the upstream's message through", st.Message())
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil {
		t.Fatal("no ErrorInfo detail")
	}
	want := map[string]string{"http_status": "400", "type": "invalid_request_error", "code": "badparam", "param": "batch_id"}
	for k, v := range want {
		if info.Metadata[k] != v {
			t.Errorf("metadata[%q] = %q, want %q", k, info.Metadata[k], v)
		}
	}
	if info.Domain != apierr.Domain || info.Reason != apierr.ReasonUpstreamError {
		t.Errorf("domain/reason = %q/%q", info.Domain, info.Reason)
	}
}

func TestWriteHTTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		st         *status.Status
		wantStatus int
		wantRetry  string
		wantCode   any
		wantParam  any
	}{
		{"429 retry-after rounds up", apierr.FromError(&upstream.Error{HTTPStatus: 429, Type: "rate_limit_error", Code: "rate_limited", RetryAfter: 1200 * time.Millisecond}), 429, "2", "rate_limited", nil},
		{"invalid id has param", apierr.FromError(upstream.ErrInvalidBatchID), 400, "", "invalid_batch_id", "batch_id"},
		{"foreign status: its code in snake_case", status.New(codes.NotFound, "no such thing"), 404, "", "not_found", nil},
		{"foreign internal status", status.New(codes.Internal, "boom"), 500, "", "internal", nil},
		{"upstream error without a code keeps null", apierr.FromError(&upstream.Error{HTTPStatus: 404, Type: "invalid_request_error"}), 404, "", nil, nil},
		{"shutdown", apierr.FromError(watch.ErrShutdown), 503, "1", "gateway_shutting_down", nil},
		{"stream max age", apierr.FromError(apierr.ErrStreamMaxAge), 503, "", "stream_max_age", nil},
		{"failure budget over unreachable", apierr.FromError(fmt.Errorf("%w: %w", watch.ErrFailureBudget, upstream.ErrUnreachable)), 502, "", "upstream_unavailable", nil},
		{"failure budget over malformed", apierr.FromError(fmt.Errorf("%w: %w", watch.ErrFailureBudget, upstream.ErrMalformedResponse)), 503, "", "upstream_unavailable", nil},
		{"upstream timeout", apierr.FromError(upstream.ErrTimeout), 504, "", "upstream_timeout", nil},
		{"malformed", apierr.FromError(upstream.ErrMalformedResponse), 502, "", "upstream_bad_response", nil},
		{"redirect", apierr.FromError(&upstream.Error{HTTPStatus: 302}), 502, "", "upstream_bad_response", nil},
		{"caller deadline", apierr.FromError(context.DeadlineExceeded), 504, "", "deadline_exceeded", nil},
		{"unknown error", apierr.FromError(errors.New("secret detail")), 500, "", "internal_error", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			apierr.WriteHTTP(rec, tt.st)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var body struct {
				Error map[string]any `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			for _, k := range []string{"message", "type", "param", "code"} {
				if _, ok := body.Error[k]; !ok {
					t.Errorf("envelope lacks %q: %s", k, rec.Body)
				}
			}
			if body.Error["code"] != tt.wantCode || body.Error["param"] != tt.wantParam {
				t.Errorf("code/param = %v/%v, want %v/%v", body.Error["code"], body.Error["param"], tt.wantCode, tt.wantParam)
			}
		})
	}
}
