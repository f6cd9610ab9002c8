package rest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/wire"
)

// Paths of the handlers this file serves in place of grpc-gateway's
// generated ones (proto/gateway.yaml has the same rules).
const (
	FilesPath   = "/v1/files"
	ContentPath = "/v1/files/{file_id}/content"
	ResultsPath = "/v1/batches/{batch_id}/results"
)

// uploadChunk is the size of the chunks an upload is sent on in.
const uploadChunk = 256 << 10

// multipartOverhead is what an upload body may hold beyond the file: the
// part headers, the purpose and the boundaries.
const multipartOverhead = 1 << 20

// maxSmallPart bounds a multipart part other than the file (purpose and
// parts the gateway does not know, which it reads and ignores).
const maxSmallPart = 64 << 10

// UploadHandler serves POST /v1/files, the upstream's multipart upload
// (parts "file", with a filename, and "purpose"), by streaming the file
// part into client.UploadFile as it arrives: nothing is held whole. The
// parts may come in either order (the OpenAI SDKs send the file first):
// when the file comes first it is sent as purpose "batch", the only one
// the gateway accepts, and the upload is cancelled, creating nothing, if
// the purpose part then says otherwise or never comes. Bodies over
// maxBytes plus 1 MiB of multipart overhead are refused with 413, before
// they are read when their Content-Length says so.
func UploadHandler(mux *runtime.ServeMux, client batchv1.FileServiceClient, maxBytes int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveUpload(mux, client, maxBytes, w, r)
	})
}

func serveUpload(mux *runtime.ServeMux, client batchv1.FileServiceClient, maxBytes int64, w http.ResponseWriter, r *http.Request) {
	limit := maxBytes + multipartOverhead
	if r.ContentLength > limit {
		writeStatus(w, apierr.TooLarge("file", "the upload is larger than "+strconv.FormatInt(maxBytes, 10)+" bytes"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "multipart/form-data" {
		writeStatus(w, apierr.Invalid("", apierr.CodeInvalidValue, "an upload is a multipart/form-data body with the parts file and purpose"))
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeStatus(w, apierr.Invalid("", apierr.CodeInvalidValue, "the multipart body cannot be read: "+err.Error()))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ctx, err = runtime.AnnotateContext(ctx, mux, r, batchv1.FileService_UploadFile_FullMethodName, runtime.WithHTTPPathPattern(FilesPath))
	if err != nil {
		writeStatus(w, apierr.FromError(err))
		return
	}

	purpose, purposeSeen := "", false
	var stream grpc.ClientStreamingClient[batchv1.UploadFileRequest, batchv1.File]
	fail := func(st *status.Status) {
		cancel() // an upload in flight ends without a file
		writeStatus(w, st)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(bodyStatus(r, err, maxBytes))
			return
		}
		switch part.FormName() {
		case "purpose":
			v, err := io.ReadAll(io.LimitReader(part, maxSmallPart))
			if err != nil {
				fail(bodyStatus(r, err, maxBytes))
				return
			}
			purpose, purposeSeen = strings.TrimSpace(string(v)), true
			if purpose != "batch" {
				fail(apierr.Invalid("purpose", apierr.CodeInvalidValue, "purpose must be batch"))
				return
			}
		case "file":
			if stream != nil {
				fail(apierr.Invalid("file", apierr.CodeInvalidValue, "an upload holds one file part"))
				return
			}
			if stream, err = client.UploadFile(ctx); err != nil {
				fail(apierr.FromError(err))
				return
			}
			if err := sendFile(stream, part, maxBytes); err != nil {
				if st, ok := status.FromError(err); ok && !errors.Is(err, io.EOF) {
					fail(st)
				} else {
					fail(bodyStatus(r, err, maxBytes))
				}
				return
			}
		default: // a part the gateway does not know (expires_after, ...): ignored
			if _, err := io.Copy(io.Discard, io.LimitReader(part, maxSmallPart)); err != nil {
				fail(bodyStatus(r, err, maxBytes))
				return
			}
		}
	}
	switch {
	case stream == nil:
		fail(apierr.Invalid("file", apierr.CodeMissingParameter, "the upload has no file part"))
		return
	case !purposeSeen:
		fail(apierr.Invalid("purpose", apierr.CodeMissingParameter, "purpose is required"))
		return
	}
	file, err := stream.CloseAndRecv()
	if err != nil {
		writeStatus(w, apierr.FromError(err))
		return
	}
	writeJSON(w, file)
}

// sendFile sends the upload's metadata and then the part's bytes, in
// chunks, stopping at the first error, and fails with 413 past maxBytes. A
// handler that failed early makes Send return io.EOF; its error then comes
// from CloseAndRecv. A part cut short (a body without its closing
// boundary) is an error, not the end of the file.
func sendFile(stream grpc.ClientStreamingClient[batchv1.UploadFileRequest, batchv1.File], part io.Reader, maxBytes int64) error {
	name := ""
	if p, ok := part.(interface{ FileName() string }); ok {
		name = p.FileName()
	}
	err := stream.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Metadata{
		Metadata: &batchv1.UploadFileMetadata{Filename: name, Purpose: "batch"},
	}})
	var total int64
	for err == nil {
		buf := make([]byte, uploadChunk) // a sent message is not reused
		n, rerr := readChunk(part, buf)
		if total += int64(n); total > maxBytes {
			return apierr.TooLarge("file", "the upload is larger than "+strconv.FormatInt(maxBytes, 10)+" bytes").Err()
		}
		if n > 0 {
			err = stream.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Chunk{Chunk: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if errors.Is(err, io.EOF) {
		_, err = stream.CloseAndRecv() // why the handler stopped
	}
	return err
}

// readChunk fills buf from r as io.ReadFull does, but returns r's own
// error: io.EOF at a clean end, whatever else (io.ErrUnexpectedEOF for a
// truncated multipart part) otherwise.
func readChunk(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// bodyStatus is the status of a failure to read an upload body.
func bodyStatus(r *http.Request, err error, maxBytes int64) *status.Status {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return apierr.TooLarge("file", "the upload is larger than "+strconv.FormatInt(maxBytes, 10)+" bytes")
	}
	if r.Context().Err() != nil {
		return apierr.FromError(r.Context().Err())
	}
	return apierr.Invalid("", apierr.CodeInvalidValue, "the multipart body cannot be read")
}

// writeJSON writes v, a response message, as the Marshaler does.
func writeJSON(w http.ResponseWriter, v any) {
	data, err := (&Marshaler{}).Marshal(v)
	if err != nil {
		writeStatus(w, apierr.FromError(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// RegisterContentHandler serves GET /v1/files/{file_id}/content on mux
// from client.GetFileContent in place of the generated handler: the raw
// bytes, streamed as they come, with an error before the first byte as a
// plain error response. A failure after it cuts the response short (the
// client sees a truncated body, never a body with an error glued on).
func RegisterContentHandler(mux *runtime.ServeMux, client batchv1.FileServiceClient) error {
	return mux.HandlePath(http.MethodGet, ContentPath, func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		ctx, err := runtime.AnnotateContext(ctx, mux, r, batchv1.FileService_GetFileContent_FullMethodName, runtime.WithHTTPPathPattern(ContentPath))
		if err != nil {
			writeStatus(w, apierr.FromError(err))
			return
		}
		stream, err := client.GetFileContent(ctx, &batchv1.GetFileContentRequest{FileId: params["file_id"]})
		if err != nil {
			writeStatus(w, apierr.FromError(err))
			return
		}
		msg, err := stream.Recv()
		if err != nil && !errors.Is(err, io.EOF) {
			if r.Context().Err() == nil {
				writeStatus(w, apierr.FromError(err))
			}
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		for msg != nil {
			if _, err := w.Write(msg.GetData()); err != nil {
				return
			}
			if msg, err = stream.Recv(); err != nil {
				if !errors.Is(err, io.EOF) {
					abort(w)
				}
				return
			}
		}
	})
}

// abort cuts a response short so that the client sees it fail: the
// connection is closed without the end of the body.
func abort(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// RegisterResultsHandler serves GET /v1/batches/{batch_id}/results on mux
// from client.StreamBatchResults in place of the generated handler: NDJSON,
// one wire.ResultJSON a line, flushed as they come. Query parameters: kind
// (output, errors or all; default all) and start_line. An error before the
// first line is a plain error response; one after it ends the stream with
// a WatchErrorJSON line ({"type":"error",...}), which result lines never
// look like (they have no "type").
func RegisterResultsHandler(mux *runtime.ServeMux, client batchv1.BatchServiceClient) error {
	return mux.HandlePath(http.MethodGet, ResultsPath, func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		req, st := resultsRequest(r, params["batch_id"])
		if st != nil {
			writeStatus(w, st)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		ctx, err := runtime.AnnotateContext(ctx, mux, r, batchv1.BatchService_StreamBatchResults_FullMethodName, runtime.WithHTTPPathPattern(ResultsPath))
		if err != nil {
			writeStatus(w, apierr.FromError(err))
			return
		}
		stream, err := client.StreamBatchResults(ctx, req)
		if err != nil {
			writeStatus(w, apierr.FromError(err))
			return
		}
		res, err := stream.Recv()
		if err != nil && !errors.Is(err, io.EOF) {
			if r.Context().Err() == nil {
				writeStatus(w, apierr.FromError(err))
			}
			return
		}
		h := w.Header()
		h.Set("Content-Type", ContentTypeNDJSON)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		var buf bytes.Buffer
		last := time.Now()
		for res != nil {
			line, err := wire.MarshalResult(res)
			if err != nil {
				return
			}
			buf.Write(line)
			buf.WriteByte('\n')
			res, err = stream.Recv()
			if err != nil && !errors.Is(err, io.EOF) {
				if r.Context().Err() == nil {
					ww := newWatchWriter(false)
					ww.fail(apierr.FromError(err))
					buf.Write(ww.buf.Bytes())
				}
			}
			// Flush in batches of lines, and at least every 100 ms.
			if res == nil || buf.Len() >= 32<<10 || time.Since(last) > 100*time.Millisecond {
				if _, err := w.Write(buf.Bytes()); err != nil {
					return
				}
				buf.Reset()
				_ = rc.Flush()
				last = time.Now()
			}
		}
	})
}

// resultsRequest reads the results endpoint's query.
func resultsRequest(r *http.Request, id string) (*batchv1.StreamBatchResultsRequest, *status.Status) {
	q := r.URL.Query()
	req := &batchv1.StreamBatchResultsRequest{BatchId: id}
	switch k := q.Get("kind"); strings.ToLower(k) {
	case "", "all", "result_kind_all":
		req.Kind = batchv1.ResultKind_RESULT_KIND_ALL
	case "output", "result_kind_output":
		req.Kind = batchv1.ResultKind_RESULT_KIND_OUTPUT
	case "errors", "error", "result_kind_errors":
		req.Kind = batchv1.ResultKind_RESULT_KIND_ERRORS
	default:
		return nil, apierr.Invalid("kind", apierr.CodeInvalidValue, "kind must be output, errors or all")
	}
	if s := q.Get("start_line"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, apierr.Invalid("start_line", apierr.CodeInvalidValue, "start_line must be a non-negative integer")
		}
		req.StartLine = n
	}
	return req, nil
}
