package rest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/inproc"
	"github.com/batchgate/batchgate/internal/rest"
	"github.com/batchgate/batchgate/internal/service"
)

// countingFiles is a FileService whose UploadFile counts what arrives,
// checking the metadata as the gateway's service does.
type countingFiles struct {
	batchv1.UnimplementedFileServiceServer
	max int64
}

func (c *countingFiles) UploadFile(stream batchv1.FileService_UploadFileServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	md := first.GetMetadata()
	if err := service.ValidateUpload(md.GetFilename(), md.GetPurpose()); err != nil {
		return err
	}
	var n int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&batchv1.File{Id: "file_1", Object: "file", Bytes: n, Filename: md.GetFilename(), Purpose: md.GetPurpose()})
		}
		if err != nil {
			return err
		}
		n += int64(len(msg.GetChunk()))
	}
}

func uploadServer(t testing.TB, maxBytes int64) *httptest.Server {
	t.Helper()
	conn := inproc.New(nil, nil)
	batchv1.RegisterFileServiceServer(conn, &countingFiles{max: maxBytes})
	mux := rest.NewServeMux()
	srv := httptest.NewServer(rest.UploadHandler(mux, batchv1.NewFileServiceClient(conn), maxBytes))
	t.Cleanup(srv.Close)
	return srv
}

// part is one multipart part of a test upload.
type part struct{ name, filename, data string }

func multipartBody(t testing.TB, parts ...part) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			w, err = mw.CreateFormFile(p.name, p.filename)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(w, p.data)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func TestUploadHandler(t *testing.T) {
	t.Parallel()
	srv := uploadServer(t, 1000)
	data := strings.Repeat("x", 700)
	tests := []struct {
		name        string
		contentType string // "" : the multipart one
		parts       []part
		raw         []byte
		want        int
		wantCode    string
		wantBytes   int64
	}{
		{"purpose first", "", []part{{"purpose", "", "batch"}, {"file", "in.jsonl", data}}, nil, 200, "", 700},
		{"file first, as the SDKs send it", "", []part{{"file", "in.jsonl", data}, {"purpose", "", "batch"}}, nil, 200, "", 700},
		{"unknown parts ignored", "", []part{{"expires_after[anchor]", "", "created_at"}, {"file", "in.jsonl", data}, {"purpose", "", "batch"}}, nil, 200, "", 700},
		{"empty file", "", []part{{"purpose", "", "batch"}, {"file", "in.jsonl", ""}}, nil, 200, "", 0},
		{"no file part", "", []part{{"purpose", "", "batch"}}, nil, 400, "missing_required_parameter", 0},
		{"no purpose", "", []part{{"file", "in.jsonl", data}}, nil, 400, "missing_required_parameter", 0},
		{"other purpose first", "", []part{{"purpose", "", "fine-tune"}, {"file", "in.jsonl", data}}, nil, 400, "invalid_value", 0},
		{"other purpose after the file", "", []part{{"file", "in.jsonl", data}, {"purpose", "", "assistants"}}, nil, 400, "invalid_value", 0},
		{"two files", "", []part{{"purpose", "", "batch"}, {"file", "a.jsonl", "a"}, {"file", "b.jsonl", "b"}}, nil, 400, "invalid_value", 0},
		{"file without a filename", "", []part{{"purpose", "", "batch"}, {"file", "", "abc"}}, nil, 400, "missing_required_parameter", 0},
		{"too large", "", []part{{"purpose", "", "batch"}, {"file", "in.jsonl", strings.Repeat("x", 1001)}}, nil, 413, "request_too_large", 0},
		{"JSON, not multipart", "application/json", nil, []byte(`{"purpose":"batch"}`), 400, "invalid_value", 0},
		{"no content type", "none", nil, []byte(`x`), 400, "invalid_value", 0},
		{"broken multipart", "multipart/form-data; boundary=zzz", nil, []byte("--zzz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc"), 400, "invalid_value", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ct, body := tt.contentType, tt.raw
			if ct == "" {
				ct, body = multipartBody(t, tt.parts...)
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+rest.FilesPath, bytes.NewReader(body))
			if ct != "none" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, got, tt.want)
			}
			if tt.want == 200 {
				var f struct {
					Bytes    int64  `json:"bytes"`
					Object   string `json:"object"`
					Filename string `json:"filename"`
				}
				if err := json.Unmarshal(got, &f); err != nil || f.Bytes != tt.wantBytes || f.Object != "file" || f.Filename == "" {
					t.Fatalf("file %s (%v), want %d bytes", got, err, tt.wantBytes)
				}
				return
			}
			var env struct {
				Error struct {
					Code *string `json:"code"`
					Type string  `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(got, &env); err != nil || env.Error.Code == nil || *env.Error.Code != tt.wantCode {
				t.Fatalf("envelope %s (%v), want code %s", got, err, tt.wantCode)
			}
		})
	}
}

// FuzzUploadHandler: whatever the body, the handler answers 200 with the
// file's exact size, or a 4xx in the error envelope; it never panics and
// never reports more bytes than the limit.
func FuzzUploadHandler(f *testing.F) {
	ct, body := multipartBody(f, part{"purpose", "", "batch"}, part{"file", "in.jsonl", "{}\n"})
	boundary := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	f.Add(boundary, body)
	_, body2 := multipartBody(f, part{"file", "a\"b.jsonl", "x"}, part{"purpose", "", "batch"})
	f.Add(boundary, body2)
	f.Add("b", []byte("--b\r\n\r\n--b--"))
	srv := uploadServer(f, 4096)
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+rest.FilesPath, bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Skip() // a header the client refuses to send
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		switch {
		case resp.StatusCode == http.StatusOK:
			var file struct {
				Bytes int64 `json:"bytes"`
			}
			if err := json.Unmarshal(got, &file); err != nil || file.Bytes > 4096 || file.Bytes > int64(len(body)) {
				t.Fatalf("200 with %s", got)
			}
		case resp.StatusCode >= 400 && resp.StatusCode < 500:
			var env struct {
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(got, &env); err != nil || env.Error.Message == "" {
				t.Fatalf("%d without an envelope: %s", resp.StatusCode, got)
			}
		default:
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
	})
}
