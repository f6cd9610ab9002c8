package batchctl

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// resultKinds are the values of --kind.
var resultKinds = map[string]batchv1.ResultKind{
	"all":    batchv1.ResultKind_RESULT_KIND_ALL,
	"output": batchv1.ResultKind_RESULT_KIND_OUTPUT,
	"errors": batchv1.ResultKind_RESULT_KIND_ERRORS,
}

func setupResults(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	kind := fs.String("kind", "all", "which lines: output, errors or all")
	out := fs.String("o", "", "write the JSONL to `file` (default: standard output)")
	return func(ctx context.Context, e *env, args []string) error {
		id, err := oneID(args)
		if err != nil {
			return err
		}
		k, ok := resultKinds[*kind]
		if !ok {
			return usagef("--kind must be output, errors or all, not %q", *kind)
		}
		n, err := e.writeResults(ctx, id, k, *out)
		if err == nil && *out != "" {
			e.stderrf("%d results of %s written to %s\n", n, id, *out)
		}
		return err
	}
}

// writeResults streams the results of batch id as JSONL, one line each in
// the REST results shape, to the file path (written whole or not at all)
// or, when path is empty, to standard output. It returns how many lines
// it wrote.
func (e *env) writeResults(ctx context.Context, id string, kind batchv1.ResultKind, path string) (n int64, err error) {
	stream, err := e.batches().StreamBatchResults(ctx, &batchv1.StreamBatchResultsRequest{BatchId: id, Kind: kind})
	if err != nil {
		return 0, err
	}
	w := e.stdout
	if path != "" {
		f, cerr := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
		if cerr != nil {
			return 0, cerr
		}
		defer func() {
			if err == nil {
				err = f.Close()
			} else {
				_ = f.Close()
			}
			if err == nil {
				err = os.Rename(f.Name(), path)
			}
			if err != nil {
				_ = os.Remove(f.Name())
			}
		}()
		w = f
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, bw.Flush()
		}
		if err != nil {
			_ = bw.Flush()
			return n, err
		}
		line, err := wire.MarshalResult(r)
		if err != nil {
			return n, fmt.Errorf("result line %d: %w", r.GetLine(), err)
		}
		if _, err := fmt.Fprintf(bw, "%s\n", line); err != nil {
			return n, err
		}
		n++
	}
}
