package apierr

import (
	"encoding/json"
	"github.com/batchgate/batchgate/internal/wire"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// codeTypes gives the envelope type for a status that carries none.
var codeTypes = map[codes.Code]string{
	codes.InvalidArgument:    "invalid_request_error",
	codes.OutOfRange:         "invalid_request_error",
	codes.FailedPrecondition: "invalid_request_error",
	codes.Unauthenticated:    "invalid_api_key",
	codes.PermissionDenied:   "permission_error",
	codes.NotFound:           "not_found_error",
	codes.ResourceExhausted:  "rate_limit_error",
}

// HTTPStatus returns the HTTP status for st: the upstream's own status when
// the ErrorInfo carries one (so a 402 stays a 402), otherwise grpc-gateway's
// standard code table. A nil or OK status gives 200.
func HTTPStatus(st *status.Status) int {
	if st == nil || st.Code() == codes.OK {
		return http.StatusOK
	}
	if info := errorInfo(st); info != nil {
		if n, err := strconv.Atoi(info.GetMetadata()[MetaHTTPStatus]); err == nil && n >= 400 && n <= 599 {
			return n
		}
	}
	return runtime.HTTPStatusFromCode(st.Code())
}

// ToEnvelope returns the upstream-style error body for st.
func ToEnvelope(st *status.Status) wire.ErrorEnvelope {
	e := wire.ErrorObject{Message: st.Message(), Type: "api_error"}
	if t, ok := codeTypes[st.Code()]; ok {
		e.Type = t
	}
	if info := errorInfo(st); info != nil {
		md := info.GetMetadata()
		if t := md[MetaType]; t != "" {
			e.Type = t
		}
		if p := md[MetaParam]; p != "" {
			e.Param = &p
		}
		if c := md[MetaCode]; c != "" {
			e.Code = &c
		}
	}
	if e.Code == nil && errorInfo(st) == nil {
		// A status from outside the funnel (grpc-gateway, a library):
		// its gRPC code in the upstream's snake_case style.
		c := snakeCase(st.Code().String())
		e.Code = &c
	}
	return wire.ErrorEnvelope{Error: e}
}

// RetryAfter returns the RetryInfo delay of st, or zero.
func RetryAfter(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// WriteHTTP writes st to w as an upstream-style error response: the status
// from HTTPStatus, a Retry-After header (whole seconds, rounded up) when st
// carries a RetryInfo, and the JSON Envelope.
func WriteHTTP(w http.ResponseWriter, st *status.Status) {
	body, err := json.Marshal(ToEnvelope(st))
	if err != nil { // cannot happen: the envelope holds only strings
		body = []byte(`{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if d := RetryAfter(st); d > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(HTTPStatus(st))
	_, _ = w.Write(append(body, '\n'))
}

// snakeCase turns a gRPC code name such as "InvalidArgument" into
// "invalid_argument".
func snakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
