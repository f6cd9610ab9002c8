package wire_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

func TestLineReader(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300)
	tests := []struct {
		name    string
		in      string
		max     int
		want    []string
		tooLong []bool
	}{
		{"lines", "a\nb\n", 100, []string{"a", "b"}, []bool{false, false}},
		{"no final newline", "a\nb", 100, []string{"a", "b"}, []bool{false, false}},
		{"CRLF", "a\r\nb\r\n", 100, []string{"a", "b"}, []bool{false, false}},
		{"blank line kept", "a\n\nb\n", 100, []string{"a", "", "b"}, []bool{false, false, false}},
		{"empty", "", 100, nil, nil},
		{"exactly max with newline", long[:99] + "\nz\n", 100, []string{long[:99], "z"}, []bool{false, false}},
		{"too long then more", long + "\nz\n", 100, []string{long, "z"}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lr := wire.NewLineReader(strings.NewReader(tt.in), tt.max)
			var got []string
			var long []bool
			for {
				line, tl, err := lr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(line))
				long = append(long, tl)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("lines %q, want %q", got, tt.want)
			}
			for i := range long {
				if long[i] != tt.tooLong[i] {
					t.Fatalf("tooLong %v, want %v", long, tt.tooLong)
				}
			}
		})
	}
}

// TestLineReaderHuge: a line far over the limit is not held whole; its
// start arrives (MaxRawResult bytes) and the reader goes on after it.
func TestLineReaderHuge(t *testing.T) {
	t.Parallel()
	in := io.MultiReader(strings.NewReader(`{"id":"a"}`+"\n"), io.LimitReader(zeros{}, 40<<20), strings.NewReader("\n"+`{"id":"b"}`+"\n"))
	lr := wire.NewLineReader(in, 1<<20)
	var lines []string
	for {
		line, tooLong, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if tooLong && len(line) != wire.MaxRawResult {
			t.Fatalf("cut line holds %d bytes, want %d", len(line), wire.MaxRawResult)
		}
		lines = append(lines, map[bool]string{true: "LONG", false: string(line)}[tooLong])
	}
	if strings.Join(lines, " ") != `{"id":"a"} LONG {"id":"b"}` {
		t.Fatalf("lines %q", lines)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

func TestDecodeResultLine(t *testing.T) {
	t.Parallel()
	out := batchv1.ResultKind_RESULT_KIND_OUTPUT
	tests := []struct {
		name      string
		in        string
		tooLong   bool
		wantID    string
		wantCode  int32
		wantErr   string // error.code
		parseFail bool
		wantJSON  string // MarshalResult
	}{
		{"answer", `{"id":"batch_req_1","custom_id":"r1","response":{"status_code":200,"request_id":"req_1","body":{"object":"chat.completion","n":1}},"error":null}`, false, "batch_req_1", 200, "", false,
			`{"kind":"output","line":7,"id":"batch_req_1","custom_id":"r1","response":{"status_code":200,"request_id":"req_1","body":{"n":1,"object":"chat.completion"}},"error":null}`},
		{"error line", `{"id":"batch_req_2","custom_id":"r2","response":null,"error":{"code":"invalid_request","message":"bad <model> & more"}}`, false, "batch_req_2", 0, "invalid_request", false,
			`{"kind":"output","line":7,"id":"batch_req_2","custom_id":"r2","response":null,"error":{"code":"invalid_request","message":"bad <model> & more"}}`},
		{"string status and numeric code", `{"id":"x","custom_id":"c","response":{"status_code":"400","request_id":"r","body":null},"error":{"code":400,"message":"m"}}`, false, "x", 400, "400", false,
			`{"kind":"output","line":7,"id":"x","custom_id":"c","response":{"status_code":400,"request_id":"r","body":null},"error":{"code":"400","message":"m"}}`},
		{"not JSON", `{"id": "broken`, false, "", 0, "", true,
			`{"kind":"output","line":7,"id":"","custom_id":"","response":null,"error":null,"raw":"{\"id\": \"broken","parse_error":"the line is not a result object: invalid JSON at byte offset 14"}`},
		{"array body", `{"id":"x","response":{"status_code":200,"body":[1]}}`, false, "", 0, "", true, ""},
		{"bad status", `{"id":"x","response":{"status_code":70000}}`, false, "", 0, "", true, ""},
		{"not an object", `[1,2]`, false, "", 0, "", true, ""},
		{"cut", `{"id":"x"`, true, "", 0, "", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := wire.DecodeResultLine(out, 7, []byte(tt.in), tt.tooLong)
			if r.GetKind() != out || r.GetLine() != 7 {
				t.Fatalf("kind/line %v %d", r.GetKind(), r.GetLine())
			}
			if tt.parseFail {
				if r.GetParseError() == "" || !bytes.Equal(r.GetRaw(), []byte(tt.in)) || r.GetId() != "" || r.GetResponse() != nil {
					t.Fatalf("want a parse error with the raw line, got %v", r)
				}
			} else if r.GetParseError() != "" || r.GetRaw() != nil || r.GetId() != tt.wantID || r.GetResponse().GetStatusCode() != tt.wantCode || r.GetError().GetCode() != tt.wantErr {
				t.Fatalf("got %v", r)
			}
			if tt.wantJSON != "" {
				got, err := wire.MarshalResult(r)
				if err != nil || string(got) != tt.wantJSON {
					t.Fatalf("MarshalResult = %s, %v\nwant %s", got, err, tt.wantJSON)
				}
			}
		})
	}
}

func FuzzDecodeResultLine(f *testing.F) {
	f.Add([]byte(`{"id":"batch_req_1","custom_id":"r1","response":{"status_code":200,"request_id":"req_1","body":{"a":[1,{"b":null}]}},"error":null}`))
	f.Add([]byte(`{"id":"x","error":{"code":1,"message":"\u00e9"}}`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := wire.DecodeResultLine(batchv1.ResultKind_RESULT_KIND_ERRORS, 1, data, false)
		if r.GetParseError() != "" && !bytes.Equal(r.GetRaw(), data[:min(len(data), wire.MaxRawResult)]) {
			t.Fatalf("a parse error without the raw line: %v", r)
		}
		if r.GetParseError() == "" && r.GetRaw() != nil {
			t.Fatalf("raw bytes on a readable line: %v", r)
		}
		if len(r.GetRaw()) > wire.MaxRawResult {
			t.Fatalf("raw of %d bytes", len(r.GetRaw()))
		}
		if _, err := wire.MarshalResult(r); err != nil {
			t.Fatalf("MarshalResult: %v", err)
		}
	})
}

// FuzzLineReader: with a limit above the input's size, the lines read are
// the input split at "\n" (a "\r" before it dropped), so nothing is lost or
// invented; with a small limit, no line is longer than MaxRawResult.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nb\r\n\nc"), 4)
	f.Add([]byte("\n\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		var lines [][]byte
		lr := wire.NewLineReader(bytes.NewReader(data), len(data)+1)
		for {
			line, tooLong, err := lr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil || tooLong {
				t.Fatalf("err %v, tooLong %v under a limit above the input", err, tooLong)
			}
			lines = append(lines, bytes.Clone(line))
		}
		want := bytes.Split(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] == '\n' {
			want = want[:len(want)-1]
		}
		if len(data) == 0 {
			want = nil
		}
		if len(lines) != len(want) {
			t.Fatalf("%d lines, want %d", len(lines), len(want))
		}
		for i := range want {
			if !bytes.Equal(lines[i], bytes.TrimSuffix(want[i], []byte("\r"))) {
				t.Fatalf("line %d = %q, want %q", i, lines[i], want[i])
			}
		}
		small := wire.NewLineReader(bytes.NewReader(data), max%64+1)
		for {
			line, _, err := small.Next()
			if err != nil {
				break
			}
			if len(line) > wire.MaxRawResult {
				t.Fatalf("a line of %d bytes", len(line))
			}
		}
	})
}
