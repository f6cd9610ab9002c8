package apierr

import (
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Envelope codes of the errors the gateway makes itself, in the
// upstream's snake_case style. REST callers (and SDK users) switch on them;
// gRPC callers get them as the ErrorInfo metadata "code". Errors the
// upstream made keep the upstream's own code.
const (
	CodeInvalidBatchID      = "invalid_batch_id"
	CodeInvalidAPIKey       = "invalid_api_key"
	CodeRateLimitExceeded   = "rate_limit_exceeded"
	CodeTooManyWatchers     = "too_many_watchers"
	CodeShuttingDown        = "gateway_shutting_down"
	CodeStreamMaxAge        = "stream_max_age"
	CodeUpstreamUnavailable = "upstream_unavailable"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeUpstreamBadResponse = "upstream_bad_response"
	CodeDeadlineExceeded    = "deadline_exceeded"
	CodeRequestCanceled     = "request_canceled"
	CodeUnknownURL          = "unknown_url"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeInvalidURL          = "invalid_url"
	CodeInternal            = "internal_error"
)

// Error is a failure in the terms callers see: everything a gRPC status
// (code, ErrorInfo, RetryInfo) and a REST answer (HTTP status, envelope,
// Retry-After) are made of. Its Status method is the one constructor of
// the gateway's statuses; FromError is the one funnel from raw errors.
type Error struct {
	// Code is the gRPC code.
	Code codes.Code
	// HTTPStatus is the REST status; zero derives it from Code.
	HTTPStatus int
	// Type is the envelope type, for example "invalid_request_error"; empty
	// derives it from Code.
	Type string
	// ErrCode is the envelope code, for example "invalid_batch_id"; empty
	// sends null.
	ErrCode string
	// Param names the request parameter at fault; empty sends null.
	Param string
	// Reason is the ErrorInfo reason (UPPER_SNAKE_CASE), for gRPC callers.
	Reason string
	// Message is meant for people. It never carries a secret or an
	// upstream body.
	Message string
	// RetryAfter, when positive, becomes a RetryInfo and a Retry-After
	// header.
	RetryAfter time.Duration
}

// Status returns e as a gRPC status with an ErrorInfo in Domain (metadata
// http_status, type and, when set, code and param) and, when RetryAfter is
// positive, a RetryInfo.
func (e Error) Status() *status.Status {
	meta := map[string]string{}
	if e.HTTPStatus != 0 {
		meta[MetaHTTPStatus] = strconv.Itoa(e.HTTPStatus)
	}
	if e.Type != "" {
		meta[MetaType] = e.Type
	}
	if e.ErrCode != "" {
		meta[MetaCode] = e.ErrCode
	}
	if e.Param != "" {
		meta[MetaParam] = e.Param
	}
	st := status.New(e.Code, e.Message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: e.Reason, Domain: Domain, Metadata: meta}}
	if e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return withDetails
}

// Err returns e.Status() as an error.
func (e Error) Err() error { return e.Status().Err() }
