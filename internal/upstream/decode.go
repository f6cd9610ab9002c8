package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// DecodeBatch decodes one upstream batch JSON object (the body of
// GET /v1/batches/{batch_id}) into a batchv1.Batch.
//
// Decoding is tolerant where the upstream is known or likely to vary:
//   - unknown fields are ignored;
//   - null or missing fields stay unset (nil optional scalars, nil
//     messages); "" for output_file_id or error_file_id is read as absent;
//   - integers may be JSON numbers (integral floats such as 1.71e9 too;
//     a fractional part is truncated toward zero), numeric strings such as
//     "1710000000", or null;
//   - status maps to a BatchStatus (an unknown string to
//     BATCH_STATUS_UNSPECIFIED) and is always copied to upstream_status;
//   - metadata null leaves Metadata nil, {} gives an empty non-nil
//     Metadata; non-string values are stringified (numbers as written,
//     booleans as "true"/"false", objects and arrays as compact JSON) and
//     null values are skipped;
//   - an error's code may be a number and is then kept as its decimal text.
//
// A body that is not a single JSON object, is truncated, lacks a non-empty
// string "id", or has the wrong JSON type for a structural field (for
// example "request_counts": "x") yields an error wrapping
// ErrMalformedResponse with a short reason that never quotes the body.
func DecodeBatch(data []byte) (*batchv1.Batch, error) {
	var w wireBatch
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, malformed(jsonReason(err))
	}
	if w.ID == nil || *w.ID == "" {
		return nil, malformed(`missing "id"`)
	}
	b := &batchv1.Batch{
		Id:               *w.ID,
		Object:           deref(w.Object),
		Endpoint:         deref(w.Endpoint),
		InputFileId:      deref(w.InputFileID),
		OutputFileId:     nonEmpty(w.OutputFileID),
		ErrorFileId:      nonEmpty(w.ErrorFileID),
		CompletionWindow: deref(w.CompletionWindow),
		CreatedAt:        w.CreatedAt.ptr(),
		InProgressAt:     w.InProgressAt.ptr(),
		FinalizingAt:     w.FinalizingAt.ptr(),
		CompletedAt:      w.CompletedAt.ptr(),
		FailedAt:         w.FailedAt.ptr(),
		ExpiredAt:        w.ExpiredAt.ptr(),
		CancellingAt:     w.CancellingAt.ptr(),
		CancelledAt:      w.CancelledAt.ptr(),
		ExpiresAt:        w.ExpiresAt.ptr(),
		Model:            w.Model,
	}
	if w.Status != nil {
		b.Status = statusFromString(*w.Status)
		b.UpstreamStatus = *w.Status
	}
	if rc := w.RequestCounts; rc != nil {
		b.RequestCounts = &batchv1.RequestCounts{
			Total:     rc.Total.v,
			Completed: rc.Completed.v,
			Failed:    rc.Failed.v,
		}
	}
	if w.Metadata != nil {
		md, err := decodeMetadata(w.Metadata)
		if err != nil {
			return nil, err
		}
		b.Metadata = md
	}
	if e := w.Errors; e != nil {
		be := &batchv1.BatchErrors{Object: deref(e.Object)}
		for _, d := range e.Data {
			if d == nil {
				continue
			}
			be.Data = append(be.Data, &batchv1.BatchError{
				Code:    d.Code.s,
				Message: deref(d.Message),
				Param:   d.Param,
				Line:    d.Line.ptr(),
			})
		}
		b.Errors = be
	}
	if u := w.Usage; u != nil {
		bu := &batchv1.Usage{
			InputTokens:  u.InputTokens.v,
			OutputTokens: u.OutputTokens.v,
			TotalTokens:  u.TotalTokens.v,
		}
		if d := u.InputTokensDetails; d != nil {
			bu.InputTokensDetails = &batchv1.InputTokensDetails{CachedTokens: d.CachedTokens.v}
		}
		if d := u.OutputTokensDetails; d != nil {
			bu.OutputTokensDetails = &batchv1.OutputTokensDetails{ReasoningTokens: d.ReasoningTokens.v}
		}
		b.Usage = bu
	}
	return b, nil
}

// wireBatch is the upstream's batch object as it arrives. Pointer and
// flexInt fields distinguish null/missing from zero values; JSON null leaves
// a pointer nil.
type wireBatch struct {
	ID               *string                     `json:"id"`
	Object           *string                     `json:"object"`
	Endpoint         *string                     `json:"endpoint"`
	Status           *string                     `json:"status"`
	InputFileID      *string                     `json:"input_file_id"`
	OutputFileID     *string                     `json:"output_file_id"`
	ErrorFileID      *string                     `json:"error_file_id"`
	CompletionWindow *string                     `json:"completion_window"`
	RequestCounts    *wireCounts                 `json:"request_counts"`
	CreatedAt        flexInt                     `json:"created_at"`
	InProgressAt     flexInt                     `json:"in_progress_at"`
	FinalizingAt     flexInt                     `json:"finalizing_at"`
	CompletedAt      flexInt                     `json:"completed_at"`
	FailedAt         flexInt                     `json:"failed_at"`
	ExpiredAt        flexInt                     `json:"expired_at"`
	CancellingAt     flexInt                     `json:"cancelling_at"`
	CancelledAt      flexInt                     `json:"cancelled_at"`
	ExpiresAt        flexInt                     `json:"expires_at"`
	Metadata         *map[string]json.RawMessage `json:"metadata"`
	Errors           *wireErrors                 `json:"errors"`
	Model            *string                     `json:"model"`
	Usage            *wireUsage                  `json:"usage"`
}

type wireCounts struct {
	Total     flexInt `json:"total"`
	Completed flexInt `json:"completed"`
	Failed    flexInt `json:"failed"`
}

type wireErrors struct {
	Object *string           `json:"object"`
	Data   []*wireBatchError `json:"data"`
}

type wireBatchError struct {
	Code    flexString `json:"code"`
	Message *string    `json:"message"`
	Param   *string    `json:"param"`
	Line    flexInt    `json:"line"`
}

type wireUsage struct {
	InputTokens        flexInt `json:"input_tokens"`
	InputTokensDetails *struct {
		CachedTokens flexInt `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        flexInt `json:"output_tokens"`
	OutputTokensDetails *struct {
		ReasoningTokens flexInt `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens flexInt `json:"total_tokens"`
}

// errNotInteger is what flexInt reports for a value it cannot read as an
// int64, and errNotScalar what flexString reports for an object or array.
// They are *json.UnmarshalTypeError so that the decoder fills in the field
// path; neither quotes the value.
var (
	errNotInteger = &json.UnmarshalTypeError{Value: "non-integer", Type: reflect.TypeFor[int64]()}
	errNotScalar  = &json.UnmarshalTypeError{Value: "object or array", Type: reflect.TypeFor[string]()}
)

// flexInt is an int64 that also accepts integral (or fractional, truncated)
// JSON floats, strings holding a JSON number ("1710000000"), and null or ""
// (leaving it unset).
type flexInt struct {
	v   int64
	set bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*f = flexInt{}
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return notInteger()
		}
		s = strings.TrimSpace(s)
		if s == "" {
			*f = flexInt{}
			return nil
		}
		// Only JSON number syntax inside the quotes: no "NaN", "Inf",
		// "+1", hex floats or underscores, which strconv would accept.
		if c := s[0]; c != '-' && (c < '0' || c > '9') || !json.Valid([]byte(s)) {
			return notInteger()
		}
	}
	v, ok := parseInt64(s)
	if !ok {
		return notInteger()
	}
	*f = flexInt{v: v, set: true}
	return nil
}

// notInteger returns a fresh copy: the decoder writes the field path into
// the error it is given.
func notInteger() error {
	e := *errNotInteger
	return &e
}

func (f flexInt) ptr() *int64 {
	if !f.set {
		return nil
	}
	v := f.v
	return &v
}

// parseInt64 reads s as a decimal integer, or else as a finite float within
// int64 range, truncated toward zero.
func parseInt64(s string) (int64, bool) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, true
	}
	fl, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(fl) || math.IsInf(fl, 0) {
		return 0, false
	}
	fl = math.Trunc(fl)
	// float64(math.MaxInt64) rounds up to 2^63, which is out of range.
	if fl < math.MinInt64 || fl >= math.MaxInt64 {
		return 0, false
	}
	return int64(fl), true
}

// flexString is a string that also accepts a JSON number (kept as written)
// or boolean, and null (leaving it empty).
type flexString struct {
	s string
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	s, ok := scalarString(b)
	if !ok {
		e := *errNotScalar
		return &e
	}
	f.s = s
	return nil
}

// scalarString returns the text of a JSON string, number or boolean value,
// "" for null, and false for objects and arrays.
func scalarString(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", true
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case 'n':
		return "", true
	case '{', '[':
		return "", false
	default:
		// A number or true/false: already validated by the decoder, and
		// ASCII, so valid UTF-8.
		return string(raw), true
	}
}

func decodeMetadata(m *map[string]json.RawMessage) (*batchv1.Metadata, error) {
	md := &batchv1.Metadata{Pairs: make(map[string]string, len(*m))}
	for k, raw := range *m {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		if s, ok := scalarString(raw); ok {
			md.Pairs[k] = s
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, malformed("metadata value is not valid JSON")
		}
		// Compact keeps string bytes as they were; proto strings must be
		// valid UTF-8.
		md.Pairs[k] = strings.ToValidUTF8(buf.String(), "\uFFFD")
	}
	return md, nil
}

func statusFromString(s string) batchv1.BatchStatus {
	switch s {
	case "validating":
		return batchv1.BatchStatus_BATCH_STATUS_VALIDATING
	case "failed":
		return batchv1.BatchStatus_BATCH_STATUS_FAILED
	case "in_progress":
		return batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS
	case "finalizing":
		return batchv1.BatchStatus_BATCH_STATUS_FINALIZING
	case "completed":
		return batchv1.BatchStatus_BATCH_STATUS_COMPLETED
	case "expired":
		return batchv1.BatchStatus_BATCH_STATUS_EXPIRED
	case "cancelling":
		return batchv1.BatchStatus_BATCH_STATUS_CANCELLING
	case "cancelled":
		return batchv1.BatchStatus_BATCH_STATUS_CANCELLED
	default:
		return batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED
	}
}

func malformed(reason string) error {
	return fmt.Errorf("%w: %s", ErrMalformedResponse, reason)
}

// jsonReason describes a decoding error without quoting the input.
func jsonReason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte offset %d", se.Offset)
	case errors.As(err, &te):
		if te.Field == "" && te.Value != errNotInteger.Value && te.Value != errNotScalar.Value {
			return "body is not a JSON object"
		}
		want := "the wrong JSON type"
		switch te.Value {
		case errNotInteger.Value:
			want = "a value that is not an integer in int64 range"
		case errNotScalar.Value:
			want = "an object or array where a string is expected"
		}
		return fmt.Sprintf("field %s has %s", safeFieldPath(te.Field), want)
	default:
		return "invalid JSON value"
	}
}

// safeFieldPath returns a decoder field path if it is made only of the
// characters our own JSON names use, so it cannot carry input text.
func safeFieldPath(p string) string {
	if len(p) > 64 {
		return "(unnamed)"
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || c == '_' || c == '.') {
			return "(unnamed)"
		}
	}
	return strconv.Quote(p)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func nonEmpty(p *string) *string {
	if p == nil || *p == "" {
		return nil
	}
	return p
}
