package batchctl

import (
	"context"
	"flag"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// oneID checks that args is exactly one batch id.
func oneID(args []string) (string, error) {
	if len(args) != 1 {
		return "", usagef("want one batch id, got %d arguments", len(args))
	}
	return args[0], nil
}

// printBatch writes b in the chosen format.
func (e *env) printBatch(b *batchv1.Batch) error {
	if e.json() {
		return writeBatchJSON(e.stdout, b)
	}
	return writeBatchText(e.stdout, b)
}

func setupGet(*flag.FlagSet) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		id, err := oneID(args)
		if err != nil {
			return err
		}
		resp, err := e.batches().GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: id})
		if err != nil {
			return err
		}
		return e.printBatch(resp.GetBatch())
	}
}

func setupCancel(*flag.FlagSet) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		id, err := oneID(args)
		if err != nil {
			return err
		}
		resp, err := e.batches().CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: id})
		if err != nil {
			return err
		}
		return e.printBatch(resp.GetBatch())
	}
}

func setupList(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	limit := fs.Int("limit", 20, "batches per page, 1 to 100")
	all := fs.Bool("all", false, "every page, not only the first")
	return func(ctx context.Context, e *env, args []string) error {
		if len(args) != 0 {
			return usagef("list takes no arguments")
		}
		if *limit < 1 || *limit > 100 {
			return usagef("--limit must be 1 to 100, not %d", *limit)
		}
		var table *listTable
		if !e.json() {
			table = newListTable(e.stdout)
		}
		after := ""
		for {
			page, err := e.batches().ListBatches(ctx, &batchv1.ListBatchesRequest{After: after, Limit: int32(*limit)})
			if err != nil {
				return err
			}
			for _, b := range page.GetBatches() {
				if table != nil {
					table.add(b)
				} else if err := writeBatchJSON(e.stdout, b); err != nil {
					return err
				}
			}
			if table != nil {
				// Each page shows as it arrives; the columns are the page's.
				if err := table.flush(); err != nil {
					return err
				}
			}
			if !*all || !page.GetHasMore() || page.GetLastId() == "" {
				if table != nil && page.GetHasMore() && !*all {
					e.stderrf("(more: --all for every page)\n")
				}
				return nil
			}
			after = page.GetLastId()
		}
	}
}
