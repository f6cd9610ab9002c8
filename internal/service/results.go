package service

import (
	"context"
	"errors"
	"io"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/ownership"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/wire"
)

// StreamBatchResults streams the lines of a terminal batch's output file,
// error file or both (output first), each as read from the upstream, one
// message a line. Lines that cannot be read arrive with their raw bytes
// and a parse error; the stream goes on. start_line skips the stream's
// first start_line-1 lines (they are still read from the upstream: the
// files have no index). A batch still running fails with
// FAILED_PRECONDITION; one the caller may not reach with NOT_FOUND.
func (s *Service) StreamBatchResults(req *batchv1.StreamBatchResultsRequest, stream batchv1.BatchService_StreamBatchResultsServer) error {
	if err := s.lifecycle(); err != nil {
		return err
	}
	ctx := stream.Context()
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return err
	}
	id := req.GetBatchId()
	if err := upstream.ValidateBatchID(id); err != nil {
		return apierr.FromError(err).Err()
	}
	if req.GetStartLine() < 0 {
		return apierr.Invalid("start_line", apierr.CodeInvalidValue, "start_line must not be negative").Err()
	}
	kind := req.GetKind()
	switch kind {
	case batchv1.ResultKind_RESULT_KIND_UNSPECIFIED:
		kind = batchv1.ResultKind_RESULT_KIND_ALL
	case batchv1.ResultKind_RESULT_KIND_OUTPUT, batchv1.ResultKind_RESULT_KIND_ERRORS, batchv1.ResultKind_RESULT_KIND_ALL:
	default:
		return apierr.Invalid("kind", apierr.CodeInvalidValue, "kind must be output, errors or all").Err()
	}
	b, err := s.hub.Get(ctx, s.key(ctx, id))
	if err != nil {
		return s.fail(ctx, "stream results", id, err)
	}
	if ownership.Restricted(c) && !ownership.CanSee(c, b) {
		return apierr.NotFound("batch", id).Err()
	}
	if !wire.IsTerminal(b) {
		return apierr.NotFinished(id, b.GetUpstreamStatus()).Err()
	}
	s.files.AddBatch(b)

	files := []struct {
		kind batchv1.ResultKind
		id   string
	}{
		{batchv1.ResultKind_RESULT_KIND_OUTPUT, b.GetOutputFileId()},
		{batchv1.ResultKind_RESULT_KIND_ERRORS, b.GetErrorFileId()},
	}
	rs := &resultStream{stream: stream, skip: max(req.GetStartLine()-1, 0)}
	for _, f := range files {
		if f.id == "" || (kind != batchv1.ResultKind_RESULT_KIND_ALL && kind != f.kind) {
			continue
		}
		if err := s.streamFile(ctx, f.kind, f.id, rs); err != nil {
			return s.fail(ctx, "stream results", id, err)
		}
	}
	return nil
}

// resultStream sends results, skipping the first skip.
type resultStream struct {
	stream batchv1.BatchService_StreamBatchResultsServer
	skip   int64
}

// streamFile sends the lines of one file as results of kind.
func (s *Service) streamFile(ctx context.Context, kind batchv1.ResultKind, fileID string, rs *resultStream) error {
	body, err := s.up.FileContent(ctx, fileID)
	if err != nil {
		return err
	}
	defer body.Close()
	lines := wire.NewLineReader(body, wire.MaxResultLine)
	for n := int64(1); ; n++ {
		line, tooLong, err := lines.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(line) == 0 && !tooLong {
			n-- // blank lines are not results
			continue
		}
		if rs.skip > 0 {
			rs.skip--
			continue
		}
		if err := rs.stream.Send(wire.DecodeResultLine(kind, n, line, tooLong)); err != nil {
			return err
		}
	}
}
