package service

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/ownership"
	"github.com/batchgate/batchgate/internal/upstream"
)

// Files implements batchv1.FileServiceServer on the same Service: the
// upstream's /v1/files, with the caller's scopes and the file ownership
// record applied. Create it with (*Service).Files.
type Files struct {
	batchv1.UnimplementedFileServiceServer
	s *Service
}

// Files returns the FileService of s.
func (s *Service) Files() *Files { return &Files{s: s} }

// maxFilenameBytes bounds an upload's filename.
const maxFilenameBytes = 255

// contentChunk is the size of the messages GetFileContent sends.
const contentChunk = 64 << 10

// UploadFile streams an upload to the upstream as its chunks arrive: the
// first message must be the metadata (filename, purpose batch), and the
// total is capped by MaxUploadBytes (INVALID_ARGUMENT, 413 over REST,
// before more is read). The upstream call is never repeated.
func (f *Files) UploadFile(stream batchv1.FileService_UploadFileServer) error {
	s := f.s
	if err := s.lifecycle(); err != nil {
		return err
	}
	ctx := stream.Context()
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeWrite); err != nil {
		return err
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return apierr.Invalid("metadata", apierr.CodeMissingParameter, "an upload starts with its metadata (filename, purpose)").Err()
	}
	if err != nil {
		return err
	}
	md := first.GetMetadata()
	if md == nil {
		return apierr.Invalid("metadata", apierr.CodeMissingParameter, "an upload starts with its metadata (filename, purpose)").Err()
	}
	if err := ValidateUpload(md.GetFilename(), md.GetPurpose()); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	tooLarge := apierr.TooLarge("file", "the file is larger than "+strconv.FormatInt(s.maxUpload, 10)+" bytes")
	go func() {
		var n int64
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				_ = pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			chunk := msg.GetChunk()
			if msg.GetMetadata() != nil {
				pw.CloseWithError(apierr.Invalid("metadata", apierr.CodeInvalidValue, "the metadata comes once, first").Err())
				return
			}
			if n += int64(len(chunk)); n > s.maxUpload {
				pw.CloseWithError(tooLarge.Err())
				return
			}
			if _, err := pw.Write(chunk); err != nil {
				return // the upload ended; its error is the answer
			}
		}
	}()
	file, err := s.up.UploadFile(ctx, md.GetFilename(), md.GetPurpose(), pr)
	pr.CloseWithError(errors.New("upload finished")) // ends the reader goroutine's writes
	if err != nil {
		if st, ok := status.FromError(unwrapStatus(err)); ok {
			return st.Err() // ours: too large, metadata twice, the caller's cancel
		}
		return s.fail(ctx, "upload file", "", err)
	}
	if ownership.Restricted(c) {
		s.files.Add(file.GetId(), c.Name)
	}
	return stream.SendAndClose(file)
}

// unwrapStatus returns the gRPC status error err wraps, or err.
func unwrapStatus(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := e.(interface{ GRPCStatus() *status.Status }); ok {
			return e
		}
	}
	return err
}

// ValidateUpload checks an upload's filename and purpose.
func ValidateUpload(filename, purpose string) error {
	switch {
	case filename == "":
		return apierr.Invalid("file", apierr.CodeMissingParameter, "the file needs a filename").Err()
	case len(filename) > maxFilenameBytes || strings.ContainsFunc(filename, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == '/'
	}):
		return apierr.Invalid("file", apierr.CodeInvalidValue, "a filename is at most 255 bytes, without control characters, quotes, slashes or backslashes").Err()
	case purpose == "":
		return apierr.Invalid("purpose", apierr.CodeMissingParameter, "purpose is required").Err()
	case purpose != "batch":
		return apierr.Invalid("purpose", apierr.CodeInvalidValue, "purpose must be batch").Err()
	}
	return nil
}

// file checks a file id and that c may reach it.
func (f *Files) file(c callinfo.Caller, id string) error {
	if err := upstream.ValidateFileID(id); err != nil {
		return apierr.FromError(err).Err()
	}
	if !f.s.files.CanSee(c, id) {
		return apierr.NotFound("file", id).Err()
	}
	return nil
}

// GetFile returns a file the caller may reach.
func (f *Files) GetFile(ctx context.Context, req *batchv1.GetFileRequest) (*batchv1.File, error) {
	s := f.s
	if err := s.lifecycle(); err != nil {
		return nil, err
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return nil, err
	}
	if err := f.file(c, req.GetFileId()); err != nil {
		return nil, err
	}
	file, err := s.up.GetFile(ctx, req.GetFileId())
	if err != nil {
		return nil, s.fail(ctx, "get file", req.GetFileId(), err)
	}
	return file, nil
}

// ListFiles returns one page of files: the upstream's for unrestricted
// callers, the files the caller may reach for the others (filtered like
// ListBatches).
func (f *Files) ListFiles(ctx context.Context, req *batchv1.ListFilesRequest) (*batchv1.ListFilesResponse, error) {
	s := f.s
	if err := s.lifecycle(); err != nil {
		return nil, err
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return nil, err
	}
	limit, err := listLimit(req.GetLimit(), 10_000)
	if err != nil {
		return nil, err
	}
	if req.GetLimit() == 0 {
		limit = 0 // the upstream's default
	}
	if a := req.GetAfter(); a != "" {
		if err := upstream.ValidateFileID(a); err != nil {
			return nil, apierr.Invalid("after", apierr.CodeInvalidValue, "after must be a file id").Err()
		}
	}
	if !ownership.Restricted(c) {
		page, err := s.up.ListFiles(ctx, req.GetAfter(), limit, req.GetPurpose())
		if err != nil {
			return nil, s.fail(ctx, "list files", "", err)
		}
		return page, nil
	}
	if limit == 0 {
		limit = maxListLimit
	}
	p, err := filterPages(ctx, req.GetAfter(), limit,
		func(file *batchv1.File) bool { return s.files.CanSee(c, file.GetId()) },
		func(ctx context.Context, after string) ([]*batchv1.File, bool, error) {
			page, err := s.up.ListFiles(ctx, after, maxListLimit, req.GetPurpose())
			return page.GetFiles(), page.GetHasMore(), err
		})
	if err != nil {
		return nil, s.fail(ctx, "list files", "", err)
	}
	return &batchv1.ListFilesResponse{Files: p.items, FirstId: p.firstID, LastId: p.lastID, HasMore: p.hasMore}, nil
}

// DeleteFile deletes a file the caller may reach.
func (f *Files) DeleteFile(ctx context.Context, req *batchv1.DeleteFileRequest) (*batchv1.DeleteFileResponse, error) {
	s := f.s
	if err := s.lifecycle(); err != nil {
		return nil, err
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeWrite); err != nil {
		return nil, err
	}
	if err := f.file(c, req.GetFileId()); err != nil {
		return nil, err
	}
	resp, err := s.up.DeleteFile(ctx, req.GetFileId())
	if err != nil {
		return nil, s.fail(ctx, "delete file", req.GetFileId(), err)
	}
	s.files.Remove(req.GetFileId())
	return resp, nil
}

// GetFileContent streams a file's bytes, as they arrive from the
// upstream, in pieces of at most 64 KiB.
func (f *Files) GetFileContent(req *batchv1.GetFileContentRequest, stream batchv1.FileService_GetFileContentServer) error {
	s := f.s
	if err := s.lifecycle(); err != nil {
		return err
	}
	ctx := stream.Context()
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return err
	}
	if err := f.file(c, req.GetFileId()); err != nil {
		return err
	}
	body, err := s.up.FileContent(ctx, req.GetFileId())
	if err != nil {
		return s.fail(ctx, "file content", req.GetFileId(), err)
	}
	defer body.Close()
	buf := make([]byte, contentChunk)
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			// A fresh slice each time: a sent message may be read after
			// Send returns (in process, by the REST handler).
			if serr := stream.Send(&batchv1.GetFileContentResponse{Data: append([]byte(nil), buf[:n]...)}); serr != nil {
				return serr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case ctx.Err() != nil:
			return status.FromContextError(ctx.Err()).Err()
		default:
			return s.fail(ctx, "file content", req.GetFileId(), err)
		}
	}
}
