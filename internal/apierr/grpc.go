package apierr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/batchgate/batchgate/internal/upstream"
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

// FromError turns err into a gRPC status. It is the one place that maps
// upstream failures to codes:
//
//   - a *status.Status-carrying error is returned as is;
//   - upstream.ErrInvalidBatchID: InvalidArgument;
//   - *upstream.Error: by HTTP status (see the README's table), with an
//     ErrorInfo carrying the upstream status, type, code and param, and a
//     RetryInfo when the upstream sent Retry-After;
//   - upstream.ErrUnreachable: Unavailable; upstream.ErrTimeout:
//     DeadlineExceeded; upstream.ErrMalformedResponse and
//     upstream.ErrResponseTooLarge: Internal;
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
	var ue *upstream.Error
	switch {
	case errors.As(err, &ue):
		return fromUpstream(ue)
	case errors.Is(err, upstream.ErrInvalidBatchID):
		return build(codes.InvalidArgument, err.Error(), ReasonInvalidBatchID, map[string]string{
			MetaHTTPStatus: "400", MetaType: "invalid_request_error", MetaParam: "batch_id",
		}, 0)
	case errors.Is(err, context.DeadlineExceeded):
		return build(codes.DeadlineExceeded, "deadline exceeded waiting for the upstream", ReasonUpstreamTimeout, nil, 0)
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	case errors.Is(err, upstream.ErrTimeout):
		return build(codes.DeadlineExceeded, "the upstream did not answer in time", ReasonUpstreamTimeout,
			map[string]string{MetaHTTPStatus: "504", MetaType: "api_error"}, 0)
	case errors.Is(err, upstream.ErrUnreachable):
		return build(codes.Unavailable, "the upstream is unreachable", ReasonUpstreamUnreachable,
			map[string]string{MetaHTTPStatus: "502", MetaType: "api_error"}, 0)
	case errors.Is(err, upstream.ErrMalformedResponse), errors.Is(err, upstream.ErrResponseTooLarge):
		return build(codes.Internal, "the upstream sent a response the gateway cannot read", ReasonUpstreamMalformed,
			map[string]string{MetaHTTPStatus: "502", MetaType: "api_error"}, 0)
	default:
		return build(codes.Internal, "internal error", ReasonInternal, nil, 0)
	}
}

func fromUpstream(ue *upstream.Error) *status.Status {
	if ue.HTTPStatus < 400 {
		// A redirect or another answer that is neither a batch nor an
		// error: the upstream is misbehaving; callers get a bad gateway.
		return build(codes.Internal, fmt.Sprintf("the upstream answered HTTP %d, which the gateway does not follow", ue.HTTPStatus),
			ReasonUpstreamMalformed, map[string]string{MetaHTTPStatus: "502", MetaType: "api_error"}, 0)
	}
	code := upstreamCode(ue.HTTPStatus)
	meta := map[string]string{MetaHTTPStatus: strconv.Itoa(ue.HTTPStatus)}
	if ue.Type != "" {
		meta[MetaType] = clean(ue.Type, 64)
	}
	if ue.Code != "" {
		meta[MetaCode] = clean(ue.Code, 64)
	}
	if ue.Param != "" {
		meta[MetaParam] = clean(ue.Param, 64)
	}
	msg := fmt.Sprintf("upstream answered HTTP %d", ue.HTTPStatus)
	if t := meta[MetaType]; t != "" {
		msg += " " + t
	}
	return build(code, msg, ReasonUpstreamError, meta, ue.RetryAfter)
}

func build(code codes.Code, msg, reason string, meta map[string]string, retryAfter time.Duration) *status.Status {
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: meta}}
	if retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return withDetails
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

// Unavailable returns an UNAVAILABLE status of the gateway's own (not the
// upstream's), with an ErrorInfo of the given reason and, when retryAfter
// is positive, a RetryInfo. Over REST it becomes a 503.
func Unavailable(msg, reason string, retryAfter time.Duration) *status.Status {
	return build(codes.Unavailable, msg, reason, map[string]string{MetaHTTPStatus: "503", MetaType: "api_error"}, retryAfter)
}
