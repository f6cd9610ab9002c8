package apierr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// Domain is the ErrorInfo domain of every error the gateway returns.
const Domain = "batchgate"

// ErrorInfo metadata keys. REST callers get them back as the fields of the
// upstream-style error envelope.
const (
	// MetaHTTPStatus is the HTTP status the upstream answered (or the one
	// the gateway chose), as a decimal string.
	MetaHTTPStatus = "http_status"
	// MetaType is the upstream error type, for example "not_found_error".
	MetaType = "type"
	// MetaCode is the upstream error code, when it sent one.
	MetaCode = "code"
	// MetaParam is the request parameter the error is about, when known.
	MetaParam = "param"
)

// ErrorInfo reasons.
const (
	ReasonInvalidBatchID      = "INVALID_BATCH_ID"
	ReasonUpstreamError       = "UPSTREAM_ERROR"
	ReasonUpstreamUnreachable = "UPSTREAM_UNREACHABLE"
	ReasonUpstreamTimeout     = "UPSTREAM_TIMEOUT"
	ReasonUpstreamMalformed   = "UPSTREAM_MALFORMED_RESPONSE"
	ReasonInternal            = "INTERNAL"
	ReasonShuttingDown        = "SHUTTING_DOWN"
	ReasonStreamMaxAge        = "STREAM_MAX_AGE"
	ReasonCanceled            = "CANCELED"
)

// upstreamCodes maps upstream HTTP statuses to gRPC codes. Statuses not
// listed fall back by class in upstreamCode.
var upstreamCodes = map[int]codes.Code{
	http.StatusBadRequest:            codes.InvalidArgument,
	http.StatusUnauthorized:          codes.Unauthenticated,
	http.StatusPaymentRequired:       codes.FailedPrecondition, // insufficient balance: fix the account, do not retry
	http.StatusForbidden:             codes.PermissionDenied,
	http.StatusNotFound:              codes.NotFound,
	http.StatusRequestTimeout:        codes.DeadlineExceeded,
	http.StatusConflict:              codes.Aborted,
	http.StatusRequestEntityTooLarge: codes.InvalidArgument,
	http.StatusUnprocessableEntity:   codes.InvalidArgument,
	http.StatusTooManyRequests:       codes.ResourceExhausted,
	http.StatusNotImplemented:        codes.Unimplemented,
	http.StatusGatewayTimeout:        codes.Unavailable,
}

func upstreamCode(httpStatus int) codes.Code {
	if c, ok := upstreamCodes[httpStatus]; ok {
		return c
	}
	switch {
	case httpStatus >= 500:
		return codes.Unavailable
	case httpStatus >= 400:
		return codes.FailedPrecondition
	default:
		return codes.Unknown
	}
}

// ErrStreamMaxAge ends a watch stream that reached its maximum age.
var ErrStreamMaxAge = errors.New("stream reached its maximum age")

// FromError turns err into a gRPC status. It is the one funnel from raw
// errors to codes:
//
//   - a *status.Status-carrying error is returned as is;
//   - upstream.ErrInvalidBatchID: InvalidArgument (invalid_batch_id);
//   - *upstream.Error: by HTTP status (see the README's table), with an
//     ErrorInfo carrying the upstream status, type, code and param, and a
//     RetryInfo when the upstream sent Retry-After;
//   - upstream.ErrUnreachable: Unavailable; upstream.ErrTimeout:
//     DeadlineExceeded; upstream.ErrMalformedResponse and
//     upstream.ErrResponseTooLarge: Internal;
//   - watch.ErrShutdown: Unavailable (gateway_shutting_down, retry in 1 s);
//     ErrStreamMaxAge: Unavailable (stream_max_age); watch.ErrFailureBudget:
//     the last upstream failure when that is Unavailable, else Unavailable
//     (upstream_unavailable);
//   - context.DeadlineExceeded: DeadlineExceeded; context.Canceled: Canceled;
//   - anything else: Internal, with a generic message.
//
// Messages never carry the upstream's body or a credential. A nil err gives
// a nil status.
func FromError(err error) *status.Status {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	switch {
	case errors.Is(err, watch.ErrShutdown):
		return Error{Code: codes.Unavailable, HTTPStatus: http.StatusServiceUnavailable, Type: "api_error", ErrCode: CodeShuttingDown,
			Reason: ReasonShuttingDown, Message: "the gateway is shutting down; reconnect", RetryAfter: time.Second}.Status()
	case errors.Is(err, ErrStreamMaxAge):
		return Error{Code: codes.Unavailable, HTTPStatus: http.StatusServiceUnavailable, Type: "api_error", ErrCode: CodeStreamMaxAge,
			Reason: ReasonStreamMaxAge, Message: "the stream reached its maximum age; reconnect"}.Status()
	case errors.Is(err, watch.ErrFailureBudget):
		if st := fromCause(err); st.Code() == codes.Unavailable {
			return st
		}
		return Error{Code: codes.Unavailable, HTTPStatus: http.StatusServiceUnavailable, Type: "api_error", ErrCode: CodeUpstreamUnavailable,
			Reason: ReasonUpstreamError, Message: "the upstream kept failing; giving up on this watch"}.Status()
	}
	return fromCause(err)
}

// fromCause is FromError for the causes a watch's end can wrap.
func fromCause(err error) *status.Status {
	var ue *upstream.Error
	switch {
	case errors.As(err, &ue):
		return fromUpstream(ue)
	case errors.Is(err, upstream.ErrInvalidBatchID):
		return Error{Code: codes.InvalidArgument, HTTPStatus: http.StatusBadRequest, Type: "invalid_request_error", ErrCode: CodeInvalidBatchID,
			Param: "batch_id", Reason: ReasonInvalidBatchID, Message: err.Error()}.Status()
	case errors.Is(err, upstream.ErrInvalidFileID):
		return Invalid("file_id", CodeInvalidFileID, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return Error{Code: codes.DeadlineExceeded, HTTPStatus: http.StatusGatewayTimeout, Type: "api_error", ErrCode: CodeDeadlineExceeded,
			Reason: ReasonUpstreamTimeout, Message: "deadline exceeded waiting for the upstream"}.Status()
	case errors.Is(err, context.Canceled):
		return Error{Code: codes.Canceled, HTTPStatus: 499, Type: "api_error", ErrCode: CodeRequestCanceled,
			Reason: ReasonCanceled, Message: "request canceled"}.Status()
	case errors.Is(err, upstream.ErrTimeout):
		return Error{Code: codes.DeadlineExceeded, HTTPStatus: http.StatusGatewayTimeout, Type: "api_error", ErrCode: CodeUpstreamTimeout,
			Reason: ReasonUpstreamTimeout, Message: "the upstream did not answer in time"}.Status()
	case errors.Is(err, upstream.ErrUnreachable):
		return Error{Code: codes.Unavailable, HTTPStatus: http.StatusBadGateway, Type: "api_error", ErrCode: CodeUpstreamUnavailable,
			Reason: ReasonUpstreamUnreachable, Message: "the upstream is unreachable"}.Status()
	case errors.Is(err, upstream.ErrMalformedResponse), errors.Is(err, upstream.ErrResponseTooLarge):
		return badResponse("the upstream sent a response the gateway cannot read")
	default:
		return Internal("internal error")
	}
}

// Internal returns an INTERNAL status of the gateway's own with msg, which
// must not carry details of the failure.
func Internal(msg string) *status.Status {
	return Error{Code: codes.Internal, HTTPStatus: http.StatusInternalServerError, Type: "api_error", ErrCode: CodeInternal,
		Reason: ReasonInternal, Message: msg}.Status()
}

func badResponse(msg string) *status.Status {
	return Error{Code: codes.Internal, HTTPStatus: http.StatusBadGateway, Type: "api_error", ErrCode: CodeUpstreamBadResponse,
		Reason: ReasonUpstreamMalformed, Message: msg}.Status()
}

func fromUpstream(ue *upstream.Error) *status.Status {
	if ue.HTTPStatus < 400 {
		// A redirect or another answer that is neither a batch nor an
		// error: the upstream is misbehaving; callers get a bad gateway.
		return badResponse(fmt.Sprintf("the upstream answered HTTP %d, which the gateway does not follow", ue.HTTPStatus))
	}
	e := Error{
		Code:       upstreamCode(ue.HTTPStatus),
		HTTPStatus: ue.HTTPStatus,
		Type:       clean(ue.Type, 64),
		ErrCode:    clean(ue.Code, 64),
		Param:      clean(ue.Param, 64),
		Reason:     ReasonUpstreamError,
		Message:    fmt.Sprintf("upstream answered HTTP %d", ue.HTTPStatus),
		RetryAfter: ue.RetryAfter,
	}
	if e.Type != "" {
		e.Message += " " + e.Type
	}
	return e.Status()
}

// clean keeps s short and printable: upstream-controlled strings end up in
// metadata and headers.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
	}
	return s
}
