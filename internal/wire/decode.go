package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// ErrMalformed reports upstream JSON that a Decode function cannot read. Errors
// wrapping it carry a short reason that never quotes the input.
var ErrMalformed = errors.New("upstream: malformed response")

// DecodeBatch decodes one upstream batch JSON object (the body of
// GET /v1/batches/{batch_id}) into a batchv1.Batch.
//
// Decoding is tolerant where the upstream is known or likely to vary:
//   - unknown fields are ignored;
//   - null or missing fields stay unset (nil optional scalars, nil
//     messages); "" for output_file_id or error_file_id is read as absent;
//   - integers may be JSON numbers (integral floats such as 1.71e9 too;
//     a fractional part is truncated toward zero), numeric strings such as
//     "1710000000", or null or "" (both read as absent);
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
// example "request_counts": "x") yields an error wrapping ErrMalformed with
// a short reason that never quotes the body.
func DecodeBatch(data []byte) (*batchv1.Batch, error) {
	var w Batch
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, malformed(jsonReason(err))
	}
	if w.ID == "" {
		return nil, malformed(`missing "id"`)
	}
	return w.toProto(), nil
}

// toProto returns w as a batchv1.Batch: status is mapped with
// StatusFromString and kept verbatim in upstream_status, "" file ids are
// absent, and absent integers (see Int) are unset. The result takes over
// w's strings, pointers and metadata map: w must not be used afterwards.
func (w *Batch) toProto() *batchv1.Batch {
	b := &batchv1.Batch{
		Id:               w.ID,
		Object:           w.Object,
		Endpoint:         w.Endpoint,
		InputFileId:      w.InputFileID,
		OutputFileId:     nonEmpty(w.OutputFileID),
		ErrorFileId:      nonEmpty(w.ErrorFileID),
		CompletionWindow: w.CompletionWindow,
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
		Status:           StatusFromString(w.Status),
		UpstreamStatus:   w.Status,
	}
	if rc := w.RequestCounts; rc != nil {
		b.RequestCounts = &batchv1.RequestCounts{
			Total:     rc.Total.val(),
			Completed: rc.Completed.val(),
			Failed:    rc.Failed.val(),
		}
	}
	if w.Metadata != nil {
		b.Metadata = &batchv1.Metadata{Pairs: w.Metadata}
	}
	if e := w.Errors; e != nil {
		be := &batchv1.BatchErrors{Object: e.Object}
		for _, d := range e.Data {
			if d == nil {
				continue
			}
			be.Data = append(be.Data, &batchv1.BatchError{
				Code:    string(d.Code),
				Message: d.Message,
				Param:   d.Param,
				Line:    d.Line.ptr(),
			})
		}
		b.Errors = be
	}
	if u := w.Usage; u != nil {
		bu := &batchv1.Usage{
			InputTokens:  u.InputTokens.val(),
			OutputTokens: u.OutputTokens.val(),
			TotalTokens:  u.TotalTokens.val(),
		}
		if d := u.InputTokensDetails; d != nil {
			bu.InputTokensDetails = &batchv1.InputTokensDetails{CachedTokens: d.CachedTokens.val()}
		}
		if d := u.OutputTokensDetails; d != nil {
			bu.OutputTokensDetails = &batchv1.OutputTokensDetails{ReasoningTokens: d.ReasoningTokens.val()}
		}
		b.Usage = bu
	}
	return b
}

// errNotInteger is what Int reports for a value it cannot read as an
// int64, errNotScalar what Text reports for an object or array, and
// errNotObject what Metadata reports for anything but an object or null.
// They are *json.UnmarshalTypeError so that the decoder fills in the field
// path; neither quotes the value.
var (
	errNotInteger = &json.UnmarshalTypeError{Value: "non-integer", Type: reflect.TypeFor[int64]()}
	errNotScalar  = &json.UnmarshalTypeError{Value: "object or array", Type: reflect.TypeFor[string]()}
	errNotObject  = &json.UnmarshalTypeError{Value: "non-object", Type: reflect.TypeFor[Metadata]()}
)

// Int is an integer of the upstream's JSON. It is written as a JSON number;
// it is read from JSON numbers (integral floats such as 1.71e9 too, a
// fractional part truncated toward zero), strings holding a JSON number
// (" 1710000000 "), and "" (read as absent, like null). math.MinInt64 is
// the marker of that absence and so is itself read as absent.
type Int int64

// absent marks an Int that was "" on the wire.
const absent Int = math.MinInt64

// UnmarshalJSON implements json.Unmarshaler.
func (f *Int) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*f = absent
		return nil
	}
	if v, ok := plainInt(b); ok {
		*f = Int(v)
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return notInteger()
		}
		s = strings.TrimSpace(s)
		if s == "" {
			*f = absent
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
	*f = Int(v)
	return nil
}

// plainInt reads b if it is a plain decimal integer of up to 18 digits
// (so it cannot overflow), optionally negative: the common case, read
// without the allocations of the general path. ok is false otherwise.
func plainInt(b []byte) (v int64, ok bool) {
	digits := b
	if len(b) > 0 && b[0] == '-' {
		digits = b[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if len(digits) < len(b) {
		v = -v
	}
	return v, true
}

// val returns f, or 0 when it is absent.
func (f Int) val() int64 {
	if f == absent {
		return 0
	}
	return int64(f)
}

// ptr returns f as an *int64 (the same memory), or nil when f is nil or
// absent.
func (f *Int) ptr() *int64 {
	if f == nil || *f == absent {
		return nil
	}
	return (*int64)(f)
}

// notInteger returns a fresh copy: the decoder writes the field path into
// the error it is given.
func notInteger() error {
	e := *errNotInteger
	return &e
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

// Text is a string of the upstream's JSON that is also read from a JSON
// number (kept as written) or boolean, and from null (leaving it empty).
type Text string

// UnmarshalJSON implements json.Unmarshaler.
func (f *Text) UnmarshalJSON(b []byte) error {
	s, ok := scalarString(b)
	if !ok {
		e := *errNotScalar
		return &e
	}
	*f = Text(s)
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
		// The decoder has validated raw: with no escape and valid UTF-8,
		// its text is what lies between the quotes.
		if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
			return string(inner), true
		}
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

// Metadata is a batch's metadata object. It is written as an object of
// strings (null when nil). It is read from an object whose values may be
// of any type: strings as they are, numbers as written, booleans as
// "true"/"false", objects and arrays as compact JSON; null values are
// skipped. null leaves it nil, {} makes it empty and non-nil.
type Metadata map[string]string

// UnmarshalJSON implements json.Unmarshaler.
func (m *Metadata) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*m = nil
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		e := *errNotObject
		return &e
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	md := make(Metadata, len(raw))
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		if len(v) == 0 || string(v) == "null" {
			continue
		}
		if s, ok := scalarString(v); ok {
			md[k] = s
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return err
		}
		// Compact keeps string bytes as they were; proto strings must be
		// valid UTF-8.
		md[k] = strings.ToValidUTF8(buf.String(), "\uFFFD")
	}
	*m = md
	return nil
}

func malformed(reason string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, reason)
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

func nonEmpty(p *string) *string {
	if p == nil || *p == "" {
		return nil
	}
	return p
}

// DecodeFile decodes one upstream file object (the body of POST /v1/files
// and GET /v1/files/{file_id}) into a batchv1.File.
//
// It is as tolerant as DecodeBatch: unknown fields are ignored, null or
// missing fields stay unset (bytes and created_at read as 0, expires_at,
// status and status_details as absent; object reads as "file", which is
// also what MarshalFile writes for it), and integers may be JSON numbers
// or numeric strings (see Int). A body that is not a single JSON object,
// lacks a non-empty string "id" or has the wrong JSON type for a field
// yields an error wrapping ErrMalformed that never quotes the body.
func DecodeFile(data []byte) (*batchv1.File, error) {
	var w File
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, malformed(jsonReason(err))
	}
	if w.ID == "" {
		return nil, malformed(`missing "id"`)
	}
	return w.toProto(), nil
}

// DecodeBatchList decodes the upstream's list of batches (the body of
// GET /v1/batches) into a batchv1.ListBatchesResponse. Each item of data
// is decoded as DecodeBatch decodes a batch; an item without id (null
// included) makes the whole list malformed. first_id and last_id may be
// missing, null or empty: then they are taken from the first and last item
// of data (empty for an empty page), as the SDKs page. has_more missing or
// null reads as false.
//
// Errors wrap ErrMalformed and never quote the body.
func DecodeBatchList(data []byte) (*batchv1.ListBatchesResponse, error) {
	var w List[Batch]
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, malformed(jsonReason(err))
	}
	out := &batchv1.ListBatchesResponse{Batches: make([]*batchv1.Batch, 0, len(w.Data)), HasMore: w.HasMore}
	for i := range w.Data {
		if w.Data[i].ID == "" {
			return nil, malformed(fmt.Sprintf(`data item %d: missing "id"`, i))
		}
		out.Batches = append(out.Batches, w.Data[i].toProto())
	}
	out.FirstId, out.LastId = pageIDs(w.FirstID, w.LastID, len(out.Batches), func(i int) string { return out.Batches[i].GetId() })
	return out, nil
}

// DecodeFileList decodes the upstream's list of files (the body of
// GET /v1/files) into a batchv1.ListFilesResponse, each item as DecodeFile
// decodes a file, with the list rules of DecodeBatchList.
func DecodeFileList(data []byte) (*batchv1.ListFilesResponse, error) {
	var w List[File]
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, malformed(jsonReason(err))
	}
	out := &batchv1.ListFilesResponse{Files: make([]*batchv1.File, 0, len(w.Data)), HasMore: w.HasMore}
	for i := range w.Data {
		if w.Data[i].ID == "" {
			return nil, malformed(fmt.Sprintf(`data item %d: missing "id"`, i))
		}
		out.Files = append(out.Files, w.Data[i].toProto())
	}
	out.FirstId, out.LastId = pageIDs(w.FirstID, w.LastID, len(out.Files), func(i int) string { return out.Files[i].GetId() })
	return out, nil
}

// DecodeFileDeleted decodes the answer of DELETE /v1/files/{file_id}
// ({"id","object":"file","deleted":true}) into a
// batchv1.DeleteFileResponse. Unknown fields are ignored and a missing or
// null deleted reads as false; a missing id, or a value of the wrong JSON
// type, yields an error wrapping ErrMalformed that never quotes the body.
func DecodeFileDeleted(data []byte) (*batchv1.DeleteFileResponse, error) {
	var w FileDeleted
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, malformed(jsonReason(err))
	}
	if w.ID == "" {
		return nil, malformed(`missing "id"`)
	}
	return &batchv1.DeleteFileResponse{Id: w.ID, Deleted: w.Deleted}, nil
}

// toProto returns w as a batchv1.File: absent integers (see Int) read as
// 0, or as unset for expires_at, and an empty object as "file". The result takes over w's strings and
// pointers: w must not be used afterwards.
func (w *File) toProto() *batchv1.File {
	if w.Object == "" {
		w.Object = "file"
	}
	return &batchv1.File{
		Id:            w.ID,
		Object:        w.Object,
		Bytes:         w.Bytes.val(),
		CreatedAt:     w.CreatedAt.val(),
		ExpiresAt:     w.ExpiresAt.ptr(),
		Filename:      w.Filename,
		Purpose:       w.Purpose,
		Status:        w.Status,
		StatusDetails: w.StatusDetails,
	}
}

// pageIDs returns a list's first and last ids: the ones it sent, or else
// the ids of its first and last of n items (id(i) is item i's id).
func pageIDs(first, last *string, n int, id func(i int) string) (string, string) {
	f, l := "", ""
	if first != nil {
		f = *first
	}
	if last != nil {
		l = *last
	}
	if n > 0 {
		if f == "" {
			f = id(0)
		}
		if l == "" {
			l = id(n - 1)
		}
	}
	return f, l
}
