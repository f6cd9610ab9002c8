package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/batchgate/batchgate/internal/wire"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// Error is a non-2xx answer from the upstream. Its fields come from the
// status line, the upstream's error envelope
// `{"error":{"message","type","param","code"}}` and the Retry-After /
// Retry-After-Ms headers. Fields the upstream did not send are zero.
//
// Message is the upstream's own text and may echo request data; it is
// never logged or returned to callers without sanitising.
type Error struct {
	// HTTPStatus is the upstream's HTTP status code, for example 404.
	HTTPStatus int
	// Type is the envelope's error type, for example "not_found_error".
	Type string
	// Code is the envelope's error code, as a string even when the
	// upstream sent a number.
	Code string
	// Param is the envelope's param, when set.
	Param string
	// Message is the envelope's message, when set.
	Message string
	// RetryAfter is how long the upstream asked callers to wait before
	// retrying, from Retry-After (seconds or HTTP date) or Retry-After-Ms;
	// zero when it did not say.
	RetryAfter time.Duration
}

// Error returns a short description without the upstream's message, so that
// it is safe to log.
func (e *Error) Error() string {
	s := fmt.Sprintf("upstream: HTTP %d", e.HTTPStatus)
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Code != "" {
		s += " (code " + e.Code + ")"
	}
	return s
}

// Sentinel errors returned, wrapped, by Client. Test them with errors.Is.
var (
	// ErrInvalidBatchID reports a batch id that failed validation; the
	// upstream was not called.
	ErrInvalidBatchID = errors.New("invalid batch id")
	// ErrInvalidFileID reports a file id that failed validation; the
	// upstream was not called.
	ErrInvalidFileID = errors.New("invalid file id")
	// ErrInvalidFilename reports an upload's filename that UploadFile does
	// not send (empty, not UTF-8, or holding control characters); the
	// upstream was not called.
	ErrInvalidFilename = errors.New("invalid upload filename")
	// ErrMalformedResponse reports a 2xx answer whose body is not a valid
	// answer (a batch, file, list or deletion object: bad JSON, wrong
	// types, truncated, no id, or about another id than the one asked
	// for). It is wire.ErrMalformed, which the decoders wrap.
	ErrMalformedResponse = wire.ErrMalformed
	// ErrResponseTooLarge reports an answer whose body exceeded the
	// configured cap.
	ErrResponseTooLarge = errors.New("upstream: response body too large")
	// ErrUnreachable reports a connection-level failure (refused, reset,
	// DNS, TLS, EOF mid-body) on the last attempt, or while reading the
	// body FileContent returned.
	ErrUnreachable = errors.New("upstream: unreachable")
	// ErrTimeout reports that the last attempt hit the per-attempt timeout
	// (not the caller's deadline, which surfaces as
	// context.DeadlineExceeded).
	ErrTimeout = errors.New("upstream: attempt timed out")
)

// maxErrorBodyBytes caps how much of a non-2xx body is read to look for the
// error envelope; a longer body is drained (bounded) and its envelope
// ignored.
const maxErrorBodyBytes = 64 << 10

// maxEnvelopeFieldLen caps the envelope's type, code and param, which end up
// in error strings and gRPC error details.
const maxEnvelopeFieldLen = 128

// newStatusError builds the *Error for a non-2xx answer. body may be nil
// (unread, too large or unreadable): then only the status and Retry-After
// are set. Any occurrence of one of secrets in the envelope is redacted.
func newStatusError(status int, h http.Header, body []byte, now time.Time, maxRetryAfter time.Duration, secrets ...string) *Error {
	e := &Error{
		HTTPStatus: status,
		RetryAfter: parseRetryAfter(h, now, maxRetryAfter),
	}
	if len(body) == 0 {
		return e
	}
	msg, typ, param, code, ok := wire.DecodeError(body)
	if !ok {
		return e
	}
	e.Message = redact(msg, secrets...)
	e.Type = envelopeField(typ, secrets...)
	e.Code = envelopeField(code, secrets...)
	e.Param = envelopeField(param, secrets...)
	return e
}

// envelopeField returns a scalar envelope field as short, printable text:
// numbers keep their decimal text, null and objects give "", control
// characters are dropped, and the result is at most maxEnvelopeFieldLen
// bytes.
func envelopeField(s string, secrets ...string) string {
	if s == "" {
		return ""
	}
	s = redact(s, secrets...)
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > maxEnvelopeFieldLen {
		s = strings.ToValidUTF8(s[:maxEnvelopeFieldLen], "")
	}
	return s
}

// redact replaces every occurrence of each non-empty secret in s.
func redact(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// chainError is an error with a fixed, already-sanitised message that
// unwraps to several errors (a sentinel and, possibly, the cause).
type chainError struct {
	msg  string
	errs []error
}

func (e *chainError) Error() string   { return e.msg }
func (e *chainError) Unwrap() []error { return e.errs }

// unreachableError wraps ErrUnreachable around a connection-level cause.
// The message is redacted of secrets. The cause is kept for errors.Is/As
// unless it would match context.DeadlineExceeded or context.Canceled (as
// net's dial timeouts do): those are reserved for the caller's own context.
func unreachableError(cause error, secrets ...string) error {
	e := &chainError{
		msg:  "upstream: unreachable: " + redact(cause.Error(), secrets...),
		errs: []error{ErrUnreachable},
	}
	if !isContextErr(cause) {
		e.errs = append(e.errs, cause)
	}
	return e
}

// timeoutError wraps ErrTimeout. It deliberately does not wrap the
// per-attempt context's DeadlineExceeded.
func timeoutError(attemptTimeout time.Duration) error {
	return &chainError{
		msg:  fmt.Sprintf("upstream: attempt timed out (per-attempt timeout %s)", attemptTimeout),
		errs: []error{ErrTimeout},
	}
}

// callerContextError wraps the caller's ctx.Err(), mentioning (not
// wrapping) the last upstream failure, if any.
func callerContextError(ctxErr, last error, secrets ...string) error {
	if last == nil {
		return fmt.Errorf("upstream: %w", ctxErr)
	}
	return fmt.Errorf("upstream: %w (last failure: %s)", ctxErr, redact(last.Error(), secrets...))
}

func isContextErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// errNoEffect marks the error of a call that cannot have taken effect
// upstream: nothing of it was sent (its connection could not be made, its
// key was unusable, the caller's context ended before an attempt), or what
// was sent cannot be acted on (an upload whose content failed). Classify
// reads it for Outcome.MayHaveApplied; nothing else does.
var errNoEffect = errors.New("upstream: the call cannot have taken effect")

// noEffectError is an error marked with errNoEffect; its message is the
// error's own.
type noEffectError struct{ err error }

func (e *noEffectError) Error() string   { return e.err.Error() }
func (e *noEffectError) Unwrap() []error { return []error{e.err, errNoEffect} }

// noEffect marks err with errNoEffect.
func noEffect(err error) error { return &noEffectError{err} }

// isConnectError reports whether err, a failed request's transport error,
// happened while connecting, before any of the request was written: a dial
// failure (connection refused, DNS, unreachable network; net/http reports
// it as a *net.OpError with Op "dial", or "proxyconnect" through a proxy)
// or a TLS certificate the client rejected. Anything else (a reset, an
// EOF, a timeout while waiting) may have come after the request was sent.
func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect") {
		return true
	}
	var cv *tls.CertificateVerificationError
	return errors.As(err, &cv)
}

// errUploadContent marks the error of an upload whose content failed to
// read: the caller's failure, which says nothing of the upstream.
var errUploadContent = errors.New("upstream: reading the upload's content failed")

// uploadContentError is the error of an upload whose content failed with
// cause: it wraps cause, errUploadContent and errNoEffect (the upstream
// cannot act on a truncated upload). Its message is redacted of secrets.
func uploadContentError(cause error, secrets ...string) error {
	return &chainError{
		msg:  "upstream: reading the file to upload: " + redact(cause.Error(), secrets...),
		errs: []error{cause, errUploadContent, errNoEffect},
	}
}
