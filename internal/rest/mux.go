package rest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/apierr"
)

// ErrorInfo reasons of the errors the HTTP port raises itself, before any
// RPC runs.
const (
	reasonUnknownURL       = "UNKNOWN_URL"
	reasonMethodNotAllowed = "METHOD_NOT_ALLOWED"
	reasonInvalidURL       = "INVALID_URL"
)

// maxPathInMessage bounds how much of a request path an error message
// echoes.
const maxPathInMessage = 256

// ServeMuxOptions returns the options that make a runtime.ServeMux answer
// like the upstream: the Marshaler for every MIME type, and error and
// routing-error handlers that write the upstream's error envelope through
// apierr.WriteHTTP (so the HTTP status, the envelope and Retry-After come
// from the one error funnel). grpc-gateway's fallback that serves a
// form-encoded POST as the GET of the same path is off: a POST to a
// GET-only path is a 405. Header matchers are grpc-gateway's defaults.
func ServeMuxOptions() []runtime.ServeMuxOption {
	return []runtime.ServeMuxOption{
		runtime.WithDisablePathLengthFallback(),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &Marshaler{}),
		runtime.WithErrorHandler(handleError),
		runtime.WithRoutingErrorHandler(handleRoutingError),
		runtime.WithIncomingHeaderMatcher(headerMatcher),
	}
}

// headerMatcher is grpc-gateway's default header matcher, plus the
// Idempotency-Key header the OpenAI SDKs send on a create when their
// caller sets one (service.IdempotencyHeader).
func headerMatcher(key string) (string, bool) {
	if strings.EqualFold(key, "Idempotency-Key") {
		return "idempotency-key", true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// NewServeMux returns a runtime.ServeMux with ServeMuxOptions followed by
// extra; an option in extra overrides the matching one of ServeMuxOptions.
func NewServeMux(extra ...runtime.ServeMuxOption) *runtime.ServeMux {
	return runtime.NewServeMux(append(ServeMuxOptions(), extra...)...)
}

// handleError is the runtime.ErrorHandlerFunc: any error of a handler
// (a gRPC status from the service, a marshaling failure, ...) goes through
// apierr.FromError. grpc-gateway raises a *runtime.HTTPStatusError only for
// a request path it cannot unescape; that one is a 4xx invalid URL error.
func handleError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if n, ok := bodyTooLarge(r); ok {
		writeStatus(w, tooLarge(n))
		return
	}
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) && hse.HTTPStatus >= 400 && hse.HTTPStatus < 500 {
		writeStatus(w, localStatus(codes.InvalidArgument, hse.HTTPStatus, "Invalid request URL: "+requestTarget(r), reasonInvalidURL, apierr.CodeInvalidURL))
		return
	}
	if hse != nil {
		err = hse.Err
	}
	writeStatus(w, apierr.FromError(err))
}

// handleRoutingError is the runtime.RoutingErrorHandlerFunc: an unknown
// path is a 404, a known path with the wrong method a 405, a path that is
// not a path a 400, each as an invalid_request_error naming the request.
func handleRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	target := requestTarget(r)
	var st *status.Status
	switch httpStatus {
	case http.StatusNotFound:
		st = localStatus(codes.NotFound, httpStatus, "Unknown request URL: "+target, reasonUnknownURL, apierr.CodeUnknownURL)
	case http.StatusMethodNotAllowed:
		st = localStatus(codes.Unimplemented, httpStatus, "Method not allowed for URL: "+target, reasonMethodNotAllowed, apierr.CodeMethodNotAllowed)
	case http.StatusBadRequest:
		st = localStatus(codes.InvalidArgument, httpStatus, "Invalid request URL: "+target, reasonInvalidURL, apierr.CodeInvalidURL)
	default: // grpc-gateway documents no other routing status
		st = apierr.Internal("internal error")
	}
	writeStatus(w, st)
}

// writeStatus writes st with apierr.WriteHTTP. A response that failed
// half-way may have announced trailers or a length; the envelope has
// neither.
func writeStatus(w http.ResponseWriter, st *status.Status) {
	h := w.Header()
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Del("Content-Length")
	apierr.WriteHTTP(w, st)
}

// localStatus builds an invalid_request_error of the REST layer.
func localStatus(code codes.Code, httpStatus int, msg, reason, errCode string) *status.Status {
	return apierr.Error{Code: code, HTTPStatus: httpStatus, Type: "invalid_request_error", ErrCode: errCode, Reason: reason, Message: msg}.Status()
}

// requestTarget returns "METHOD /escaped/path" for error messages, the path
// cut at maxPathInMessage bytes (it is ASCII once escaped).
func requestTarget(r *http.Request) string {
	p := r.URL.EscapedPath()
	if len(p) > maxPathInMessage {
		p = p[:maxPathInMessage] + "..."
	}
	return r.Method + " " + p
}

// tooLarge is the status of a request body over n bytes.
func tooLarge(n int64) *status.Status {
	return apierr.TooLarge("", "the request body is larger than "+strconv.FormatInt(n, 10)+" bytes")
}
