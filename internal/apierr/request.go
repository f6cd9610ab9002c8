package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Envelope codes of the request errors the lifecycle calls raise.
const (
	// CodeInvalidValue: a parameter has a value the gateway or the
	// upstream does not accept (an unknown endpoint, a limit out of range,
	// a reserved metadata key, ...).
	CodeInvalidValue = "invalid_value"
	// CodeMissingParameter: a required parameter is absent.
	CodeMissingParameter = "missing_required_parameter"
	// CodeInvalidFileID: a file id that fails validation.
	CodeInvalidFileID = "invalid_file_id"
	// CodeRequestTooLarge: a body, upload or message over its limit.
	CodeRequestTooLarge = "request_too_large"
	// CodeBatchNotFinished: results asked of a batch that is not terminal.
	CodeBatchNotFinished = "batch_not_finished"
	// CodeNotFound: no such batch or file, or one the caller may not see
	// (the two are never told apart). The upstream's own code for it.
	CodeNotFound = "not_found"
	// CodeInsufficientScope: the caller's token lacks the scope the call
	// needs (read or write).
	CodeInsufficientScope = "insufficient_scope"
)

// ErrorInfo reasons of those errors.
const (
	ReasonInvalidArgument    = "INVALID_ARGUMENT"
	ReasonTooLarge           = "REQUEST_TOO_LARGE"
	ReasonFailedPrecondition = "FAILED_PRECONDITION"
	ReasonNotFound           = "NOT_FOUND"
	ReasonPermissionDenied   = "PERMISSION_DENIED"
)

// Invalid returns the INVALID_ARGUMENT (400) status of a bad request
// parameter: param names it (empty: none), code is the envelope code.
func Invalid(param, code, msg string) *status.Status {
	return Error{Code: codes.InvalidArgument, HTTPStatus: http.StatusBadRequest, Type: "invalid_request_error", ErrCode: code,
		Param: param, Reason: ReasonInvalidArgument, Message: msg}.Status()
}

// TooLarge returns the status of a request over a size limit:
// INVALID_ARGUMENT over gRPC, 413 over REST.
func TooLarge(param, msg string) *status.Status {
	return Error{Code: codes.InvalidArgument, HTTPStatus: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", ErrCode: CodeRequestTooLarge,
		Param: param, Reason: ReasonTooLarge, Message: msg}.Status()
}

// NotFound returns the NOT_FOUND (404) status for a batch or file that does
// not exist or that the caller may not see, worded as the upstream words
// its own: "No batch found with id 'x'." (what is "batch" or "file").
func NotFound(what, id string) *status.Status {
	return Error{Code: codes.NotFound, HTTPStatus: http.StatusNotFound, Type: "invalid_request_error", ErrCode: CodeNotFound,
		Reason: ReasonNotFound, Message: "No " + what + " found with id '" + clean(id, 256) + "'."}.Status()
}

// NotFinished returns the FAILED_PRECONDITION (409) status of results asked
// of a batch that is still running.
func NotFinished(id, upstreamStatus string) *status.Status {
	return Error{Code: codes.FailedPrecondition, HTTPStatus: http.StatusConflict, Type: "invalid_request_error", ErrCode: CodeBatchNotFinished,
		Param: "batch_id", Reason: ReasonFailedPrecondition,
		Message: "batch '" + clean(id, 256) + "' is " + clean(upstreamStatus, 64) + "; its results exist once it is completed, failed, expired or cancelled"}.Status()
}

// MissingScope returns the PERMISSION_DENIED (403) status of a caller whose
// token lacks scope.
func MissingScope(scope string) *status.Status {
	return Error{Code: codes.PermissionDenied, HTTPStatus: http.StatusForbidden, Type: "permission_error", ErrCode: CodeInsufficientScope,
		Reason: ReasonPermissionDenied, Message: "this token lacks the '" + scope + "' scope"}.Status()
}
