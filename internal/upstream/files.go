package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// binaryType is what FileContent accepts, as the OpenAI SDKs send it; the
// answer's own content type is not relied on.
const binaryType = "application/binary"

// GetFile fetches a file's description: GET {BaseURL}/v1/files/{fileID}.
//
// fileID is checked with ValidateFileID before any network call
// (ErrInvalidFileID). It is retried like GetBatch, and its errors are
// GetBatch's (ErrMalformedResponse for an answer about another file).
func (c *Client) GetFile(ctx context.Context, fileID string) (*batchv1.File, error) {
	if err := ValidateFileID(fileID); err != nil {
		return nil, err
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	body, err := c.fetch(ctx, &request{op: "GetFile", method: http.MethodGet, url: c.apiURL("files", fileID, "", "")}, key)
	if err != nil {
		return nil, err
	}
	f, err := wire.DecodeFile(body)
	if err != nil {
		return nil, err
	}
	if f.GetId() != fileID {
		return nil, fmt.Errorf("%w: the answer is for another file id", ErrMalformedResponse)
	}
	return f, nil
}

// ListFiles fetches one page of files:
// GET {BaseURL}/v1/files?after={after}&limit={limit}&purpose={purpose}. An
// empty after starts from the first file, a limit of zero or less sends
// none (the upstream's default), an empty purpose lists every purpose.
//
// after, when not empty, is checked with ValidateFileID before any network
// call. It is retried like GetBatch, and its errors are GetBatch's
// (ErrMalformedResponse when an item of the list has no id).
func (c *Client) ListFiles(ctx context.Context, after string, limit int, purpose string) (*batchv1.ListFilesResponse, error) {
	if after != "" {
		if err := ValidateFileID(after); err != nil {
			return nil, err
		}
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	q := pageQuery(after, limit, "purpose", purpose)
	body, err := c.fetch(ctx, &request{op: "ListFiles", method: http.MethodGet, url: c.apiURL("files", "", "", q)}, key)
	if err != nil {
		return nil, err
	}
	return wire.DecodeFileList(body)
}

// DeleteFile deletes a file: DELETE {BaseURL}/v1/files/{fileID}. A 2xx
// answer is returned as it says, deleted or not.
//
// fileID is checked with ValidateFileID before any network call. Deleting
// is idempotent, so it is retried like GetBatch, and its errors are
// GetBatch's (ErrMalformedResponse for an answer about another file).
func (c *Client) DeleteFile(ctx context.Context, fileID string) (*batchv1.DeleteFileResponse, error) {
	if err := ValidateFileID(fileID); err != nil {
		return nil, err
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	body, err := c.fetch(ctx, &request{op: "DeleteFile", method: http.MethodDelete, url: c.apiURL("files", fileID, "", "")}, key)
	if err != nil {
		return nil, err
	}
	d, err := wire.DecodeFileDeleted(body)
	if err != nil {
		return nil, err
	}
	if d.GetId() != fileID {
		return nil, fmt.Errorf("%w: the answer is for another file id", ErrMalformedResponse)
	}
	return d, nil
}

// UploadFile uploads a file: POST {BaseURL}/v1/files as multipart/form-data
// with a part "purpose" and a part "file" (named filename, sent as
// application/octet-stream) holding content's bytes, and returns the file
// the upstream answers with.
//
// content is streamed as it is read, never held whole, so the memory an
// upload takes does not grow with its size; UploadFile returns only once it
// has stopped reading content. The upload is one attempt, never retried
// (content cannot be read twice), and has no per-attempt timeout: ctx alone
// bounds it, however long a large upload takes. Errors:
//   - ErrInvalidFilename (wrapped), before any request, for a filename
//     that is empty, not UTF-8 or holds control characters (it goes in a
//     part's header); an error, before any request, for a nil content or
//     a key from WithAPIKey that holds control characters;
//   - an error wrapping content's own error when reading content failed:
//     the request is aborted, so the upstream cannot have stored the file
//     (Classify: not applied, health unknown);
//   - otherwise CreateBatch's (*Error, ErrMalformedResponse,
//     ErrResponseTooLarge, ErrUnreachable, the caller's context error).
func (c *Client) UploadFile(ctx context.Context, filename, purpose string, content io.Reader) (*batchv1.File, error) {
	if err := validateFilename(filename); err != nil {
		return nil, err
	}
	if content == nil {
		return nil, noEffect(errors.New("upstream: UploadFile: nil content"))
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	r := &request{op: "UploadFile", method: http.MethodPost, url: c.apiURL("files", "", "", ""), once: true}
	src := &recordingReader{r: content}
	body, err := retry(ctx, c, r, key, func(ctx context.Context) ([]byte, bool, error) {
		b, err := c.upload(ctx, r, filename, purpose, src, key)
		return b, false, err
	})
	if src.err != nil {
		// upload has waited for its writer: src.err is settled.
		return nil, uploadContentError(src.err, key.secrets...)
	}
	if err != nil {
		return nil, err
	}
	return wire.DecodeFile(body)
}

// upload makes the one attempt of UploadFile: it streams the multipart
// body from content through a pipe while the request is sent, and returns
// what attempt returns. It returns only once its writer has stopped.
func (c *Client) upload(ctx context.Context, r *request, filename, purpose string, content io.Reader, key callKey) ([]byte, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	contentType := mw.FormDataContentType()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeUpload(mw, filename, purpose, content))
	}()
	defer func() {
		// The transport may have stopped reading early (an early answer,
		// a failure): unblock the writer, and wait for it so that content
		// is not read after UploadFile returns.
		pr.CloseWithError(errUploadDone)
		<-done
	}()
	return c.sendRead(ctx, r.method, r.url, pr, contentType, key)
}

// errUploadDone is what the writer of an upload gets once the request is
// over; it never reaches a caller.
var errUploadDone = errors.New("upstream: upload request over")

// writeUpload writes the multipart body of an upload to mw and closes it.
func writeUpload(mw *multipart.Writer, filename, purpose string, content io.Reader) error {
	if err := mw.WriteField("purpose", purpose); err != nil {
		return err
	}
	part, err := mw.CreateFormFile("file", filename)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, content); err != nil {
		return err
	}
	return mw.Close()
}

// recordingReader reads r and keeps its first error other than io.EOF,
// to tell content's failures from the request's.
type recordingReader struct {
	r   io.Reader
	err error
}

func (rr *recordingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil && err != io.EOF && rr.err == nil {
		rr.err = err
	}
	return n, err
}

// validateFilename checks an upload's filename, which goes in a part's
// Content-Disposition header (where multipart.Writer escapes '"' and '\').
func validateFilename(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: filename is empty", ErrInvalidFilename)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: filename is not valid UTF-8", ErrInvalidFilename)
	case strings.ContainsFunc(name, isCTL):
		return fmt.Errorf("%w: filename contains control characters", ErrInvalidFilename)
	}
	return nil
}

// FileContent opens a file's bytes: GET {BaseURL}/v1/files/{fileID}/content
// with Accept: application/binary. The caller reads the returned body as
// the upstream sends it, streaming (it is not capped by MaxBodyBytes nor
// read ahead), and must Close it, which releases the connection at once,
// read to the end or not.
//
// Attempts are retried like GetBatch until one gets a 2xx answer's
// headers; AttemptTimeout bounds only the wait for those headers, never
// the body, whose reading only ctx bounds (ctx must outlive the reading).
// Errors before the body: GetBatch's (ErrInvalidFileID before any request
// for a bad id). Errors of Read, after the body began: io.EOF at its end;
// an error wrapping ErrUnreachable when the transfer broke (a reset, or an
// EOF before the announced length), or wrapping ctx.Err() when ctx ended.
// Nothing already read is retried.
func (c *Client) FileContent(ctx context.Context, fileID string) (io.ReadCloser, error) {
	if err := ValidateFileID(fileID); err != nil {
		return nil, err
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	r := &request{op: "FileContent", method: http.MethodGet, url: c.apiURL("files", fileID, "content", "")}
	return retry(ctx, c, r, key, func(ctx context.Context) (io.ReadCloser, bool, error) {
		return c.openContent(ctx, r, key)
	})
}

// openContent makes one attempt of FileContent. Its context is canceled
// when AttemptTimeout passes before the headers (and, for a non-2xx
// answer, the error body) arrived, and otherwise only when the returned
// body is closed.
func (c *Client) openContent(ctx context.Context, r *request, key callKey) (io.ReadCloser, bool, error) {
	actx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(c.cfg.AttemptTimeout, cancel)
	resp, err := c.send(actx, r.method, r.url, nil, "", binaryType, key) //nolint:bodyclose // closed here, or by contentBody.Close
	if err != nil {
		timedOut := !timer.Stop()
		cancel()
		return nil, timedOut, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := c.statusError(resp, key)
		timer.Stop()
		drainClose(resp.Body)
		cancel()
		return nil, false, se
	}
	if !timer.Stop() {
		// The timer fired as the headers arrived: the body is cut already.
		_ = resp.Body.Close()
		cancel()
		return nil, true, &transportError{context.DeadlineExceeded}
	}
	return &contentBody{body: resp.Body, ctx: ctx, cancel: cancel, secrets: key.secrets}, false, nil
}

// contentBody is the body FileContent returns.
type contentBody struct {
	body    io.ReadCloser
	ctx     context.Context // the caller's
	cancel  context.CancelFunc
	secrets []string
	closed  atomic.Bool
}

// errContentClosed is what Read returns once the body is closed.
var errContentClosed = errors.New("upstream: read of closed file content")

// Read reads the next bytes of the file. Its errors are described on
// FileContent.
func (b *contentBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	switch {
	case err == nil || err == io.EOF:
		return n, err
	case b.closed.Load():
		return n, errContentClosed
	case b.ctx.Err() != nil:
		return n, callerContextError(b.ctx.Err(), nil)
	default:
		return n, unreachableError(err, b.secrets...)
	}
}

// Close releases the connection; reading stops.
func (b *contentBody) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.cancel()
	return b.body.Close()
}
