package batchctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// uploadChunk is the size of an upload's messages.
const uploadChunk = 256 << 10

func setupCreate(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	file := fs.String("file", "", "the JSONL input `file` (required)")
	endpoint := fs.String("endpoint", "/v1/chat/completions", "the `endpoint` of the batch's requests")
	window := fs.String("completion-window", "24h", "the completion `window`")
	key := fs.String("idempotency-key", "", "makes the create safe to repeat: the same `key` within 24 h returns the first batch")
	watch := fs.Bool("watch", false, "watch the batch until it ends")
	results := fs.String("results", "", "when the batch ends, write its results to `file` (implies --watch)")
	meta := map[string]string{}
	fs.Func("metadata", "a `key=value` pair for the batch (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return errors.New("want key=value")
		}
		meta[k] = v
		return nil
	})
	return func(ctx context.Context, e *env, args []string) error {
		if len(args) != 0 {
			return usagef("create takes no arguments (--file names the input)")
		}
		if *file == "" {
			return usagef("create needs --file input.jsonl")
		}
		f, err := os.Open(*file)
		if err != nil {
			return usagef("--file: %v", err)
		}
		defer func() { _ = f.Close() }()
		up, err := e.upload(ctx, f, filepath.Base(*file))
		if err != nil {
			return err
		}
		resp, err := e.batches().CreateBatch(ctx, &batchv1.CreateBatchRequest{
			InputFileId: up.GetId(), Endpoint: *endpoint, CompletionWindow: *window,
			Metadata: meta, IdempotencyKey: *key,
		})
		if err != nil {
			return err
		}
		b := resp.GetBatch()
		if e.json() {
			if err := writeBatchJSON(e.stdout, b); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(e.stdout, "created %s (%s) of %s\n", b.GetId(), statusOf(b), up.GetId())
		}
		if !*watch && *results == "" {
			return nil
		}
		werr := e.watch(ctx, []string{b.GetId()})
		var ee exitError
		if *results == "" || (werr != nil && !errors.As(werr, &ee)) || ctx.Err() != nil {
			return werr
		}
		// The batch ended: completed, or failed, expired or cancelled,
		// which may still have partial results.
		n, rerr := e.writeResults(ctx, b.GetId(), batchv1.ResultKind_RESULT_KIND_ALL, *results)
		if rerr != nil {
			e.fail(rerr)
			return exitError{ExitFailed}
		}
		e.stderrf("%d results of %s written to %s\n", n, b.GetId(), *results)
		return werr
	}
}

// upload sends r as an input file named name, with a byte progress bar on
// a terminal.
func (e *env) upload(ctx context.Context, r io.Reader, name string) (*batchv1.File, error) {
	var size int64
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
	}
	var (
		p   *mpb.Progress
		bar *mpb.Bar
	)
	if e.terminal && !e.json() {
		p = mpb.NewWithContext(context.Background(), mpb.WithOutput(e.stdout), mpb.WithWidth(30))
		bar = p.New(size, barStyle(),
			mpb.PrependDecorators(decor.Name("upload "+name+" ")),
			mpb.AppendDecorators(
				decor.CountersKibiByte(" % .1f / % .1f "),
				decor.AverageSpeed(decor.SizeB1024(0), " % .1f "),
				decor.Elapsed(decor.ET_STYLE_GO),
			))
		defer func() {
			bar.Abort(false)
			p.Wait()
		}()
	}
	f, err := e.sendFile(ctx, r, name, bar)
	if err != nil {
		return nil, err
	}
	if bar != nil {
		bar.SetTotal(-1, true)
	} else if !e.json() {
		fmt.Fprintf(e.stdout, "uploaded %s: %d bytes as %s\n", name, f.GetBytes(), f.GetId())
	}
	return f, nil
}

func (e *env) sendFile(ctx context.Context, r io.Reader, name string, bar *mpb.Bar) (*batchv1.File, error) {
	stream, err := e.files().UploadFile(ctx)
	if err != nil {
		return nil, err
	}
	err = stream.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Metadata{
		Metadata: &batchv1.UploadFileMetadata{Filename: name, Purpose: "batch"}}})
	buf := make([]byte, uploadChunk)
	for err == nil {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			err = stream.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Chunk{Chunk: buf[:n]}})
			if bar != nil {
				bar.IncrBy(n)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("reading %s: %w", name, rerr)
		}
	}
	// A send that failed (io.EOF) has the stream's status in CloseAndRecv.
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return stream.CloseAndRecv()
}
