package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Limits of result lines.
const (
	// MaxResultLine is the longest line of an output or error file read as
	// a result; a longer one arrives as a parse error.
	MaxResultLine = 16 << 20
	// MaxRawResult is how much of an unreadable line a result carries.
	MaxRawResult = 64 << 10
)

// LineReader reads the lines of a JSONL file, each at most max bytes. Lines
// longer than that are not held whole: Next returns their first
// MaxRawResult bytes with tooLong set and skips the rest.
type LineReader struct {
	r   *bufio.Reader
	max int
}

// NewLineReader returns a LineReader of r with lines of at most max bytes
// (MaxResultLine when max <= 0).
func NewLineReader(r io.Reader, max int) *LineReader {
	if max <= 0 {
		max = MaxResultLine
	}
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next line without its line ending ("\n" or "\r\n").
// tooLong reports a line over the limit, of which line holds only the
// start. At the end it returns io.EOF; a final line without a newline is a
// line. Other errors are the underlying reader's. The returned slice is
// valid until the next call.
func (l *LineReader) Next() (line []byte, tooLong bool, err error) {
	var buf []byte
	n := 0
	for {
		chunk, err := l.r.ReadSlice('\n')
		n += len(chunk)
		if len(buf) < MaxRawResult || (!tooLong && n <= l.max) {
			buf = append(buf, chunk...)
		}
		if n > l.max && !tooLong {
			tooLong = true
			if len(buf) > MaxRawResult {
				buf = buf[:MaxRawResult]
			}
		}
		switch {
		case err == nil:
			return trimEOL(buf), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && n > 0:
			return trimEOL(buf), tooLong, nil
		default:
			return nil, false, err
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

// DecodeResultLine reads one line of an output or error file into a
// BatchResult of kind, numbered line. It never fails: a line that is not a
// JSON object, has the wrong types, or was cut (tooLong) arrives with Raw
// (at most MaxRawResult bytes) and ParseError set. response.body becomes a
// Struct when it is a JSON object; any other body (a string, an array) is a
// parse error too, since the proto cannot carry it.
func DecodeResultLine(kind batchv1.ResultKind, line int64, data []byte, tooLong bool) *batchv1.BatchResult {
	r := &batchv1.BatchResult{Kind: kind, Line: line}
	fail := func(why string) *batchv1.BatchResult {
		r.Id, r.CustomId, r.Response, r.Error = "", "", nil, nil
		r.Raw = bytes.Clone(data[:min(len(data), MaxRawResult)])
		r.ParseError = why
		return r
	}
	if tooLong {
		return fail("the line is longer than 16 MiB")
	}
	var w ResultLine
	if err := json.Unmarshal(data, &w); err != nil {
		return fail("the line is not a result object: " + jsonReason(err))
	}
	r.Id, r.CustomId = w.ID, w.CustomID
	if w.Response != nil {
		code := w.Response.StatusCode.val()
		if code < 0 || code > 999 {
			return fail("response.status_code is not an HTTP status")
		}
		r.Response = &batchv1.BatchResponse{StatusCode: int32(code), RequestId: w.Response.RequestID}
		if body := bytes.TrimSpace(w.Response.Body); len(body) > 0 && !bytes.Equal(body, []byte("null")) {
			s := &structpb.Struct{}
			if err := protojson.Unmarshal(body, s); err != nil {
				return fail("response.body is not a JSON object")
			}
			r.Response.Body = s
		}
	}
	if w.Error != nil {
		r.Error = &batchv1.BatchResultError{Code: string(w.Error.Code), Message: w.Error.Message}
	}
	return r
}

// ResultJSON is a BatchResult as the REST results endpoint writes it, one
// a line: the result line's own fields plus where it came from, and raw and
// parse_error only for a line that could not be read.
type ResultJSON struct {
	// Kind is "output" or "errors".
	Kind string `json:"kind"`
	// Line is the line's 1-based number in its file.
	Line int64 `json:"line"`
	// ID, CustomID, Response and Error are the line's, as the upstream
	// wrote them (response and error null when absent).
	ID       string          `json:"id"`
	CustomID string          `json:"custom_id"`
	Response *ResultResponse `json:"response"`
	Error    *ResultError    `json:"error"`
	// Raw is the unreadable line's bytes as a string (invalid UTF-8
	// replaced by U+FFFD); omitted for readable lines.
	Raw string `json:"raw,omitempty"`
	// ParseError says why the line could not be read; omitted otherwise.
	ParseError string `json:"parse_error,omitempty"`
}

// MarshalResult returns r as one line of the REST results stream (without
// the newline).
func MarshalResult(r *batchv1.BatchResult) ([]byte, error) {
	out := ResultJSON{
		Kind:       strings.ToLower(strings.TrimPrefix(r.GetKind().String(), "RESULT_KIND_")),
		Line:       r.GetLine(),
		ID:         r.GetId(),
		CustomID:   r.GetCustomId(),
		ParseError: r.GetParseError(),
	}
	if raw := r.GetRaw(); len(raw) > 0 || r.GetParseError() != "" {
		out.Raw = strings.ToValidUTF8(string(raw), string(utf8.RuneError))
	}
	if resp := r.GetResponse(); resp != nil {
		out.Response = &ResultResponse{StatusCode: Int(resp.GetStatusCode()), RequestID: resp.GetRequestId(), Body: json.RawMessage("null")}
		if resp.GetBody() != nil {
			body, err := protojson.Marshal(resp.GetBody())
			if err != nil {
				return nil, err
			}
			out.Response.Body = body
		}
	}
	if e := r.GetError(); e != nil {
		out.Error = &ResultError{Code: Text(e.GetCode()), Message: e.GetMessage()}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&out); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
