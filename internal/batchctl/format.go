package batchctl

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// statusOf is a batch's status as the upstream spells it (in_progress),
// or the upstream's own string when this build does not know it.
func statusOf(b *batchv1.Batch) string {
	if s := wire.StatusString(b.GetStatus()); s != "" {
		return s
	}
	if s := b.GetUpstreamStatus(); s != "" {
		return s
	}
	return "unknown"
}

// unixTime formats Unix seconds as UTC RFC 3339.
func unixTime(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

// countsText is "done/total done, F failed" of a batch's request counts.
func countsText(rc *batchv1.RequestCounts) string {
	return fmt.Sprintf("%d/%d done (%d completed, %d failed)",
		rc.GetCompleted()+rc.GetFailed(), rc.GetTotal(), rc.GetCompleted(), rc.GetFailed())
}

// writeBatchJSON writes b in the REST shape (the upstream's batch JSON),
// on one line.
func writeBatchJSON(w io.Writer, b *batchv1.Batch) error {
	data, err := wire.MarshalBatch(b)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// writeBatchText writes b for a person: one field a line.
func writeBatchText(w io.Writer, b *batchv1.Batch) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("id", b.GetId())
	row("status", statusOf(b))
	row("endpoint", b.GetEndpoint())
	if b.GetRequestCounts() != nil {
		row("requests", countsText(b.GetRequestCounts()))
	}
	if b.Model != nil {
		row("model", b.GetModel())
	}
	for _, t := range []struct {
		name string
		set  bool
		at   int64
	}{
		{"created", b.CreatedAt != nil, b.GetCreatedAt()},
		{"in progress", b.InProgressAt != nil, b.GetInProgressAt()},
		{"finalizing", b.FinalizingAt != nil, b.GetFinalizingAt()},
		{"completed", b.CompletedAt != nil, b.GetCompletedAt()},
		{"failed", b.FailedAt != nil, b.GetFailedAt()},
		{"expired", b.ExpiredAt != nil, b.GetExpiredAt()},
		{"cancelling", b.CancellingAt != nil, b.GetCancellingAt()},
		{"cancelled", b.CancelledAt != nil, b.GetCancelledAt()},
		{"expires", b.ExpiresAt != nil, b.GetExpiresAt()},
	} {
		if t.set {
			row(t.name, unixTime(t.at))
		}
	}
	row("input file", b.GetInputFileId())
	if b.OutputFileId != nil {
		row("output file", b.GetOutputFileId())
	}
	if b.ErrorFileId != nil {
		row("error file", b.GetErrorFileId())
	}
	if md := b.GetMetadata().GetPairs(); len(md) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(md)) {
			kv = append(kv, k+"="+md[k])
		}
		row("metadata", strings.Join(kv, " "))
	}
	for i, be := range b.GetErrors().GetData() {
		name := ""
		if i == 0 {
			name = "errors"
		}
		msg := be.GetCode() + ": " + be.GetMessage()
		if be.Line != nil {
			msg = fmt.Sprintf("line %d: %s", be.GetLine(), msg)
		}
		row(name, msg)
	}
	if u := b.GetUsage(); u != nil {
		row("tokens", fmt.Sprintf("%d in, %d out, %d total", u.GetInputTokens(), u.GetOutputTokens(), u.GetTotalTokens()))
	}
	return tw.Flush()
}

// listTable writes batches as a table, a header first when header is set.
type listTable struct {
	tw *tabwriter.Writer
}

func newListTable(w io.Writer) *listTable {
	t := &listTable{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	fmt.Fprintln(t.tw, "ID\tSTATUS\tDONE/TOTAL\tFAILED\tCREATED\tENDPOINT")
	return t
}

func (t *listTable) add(b *batchv1.Batch) {
	rc := b.GetRequestCounts()
	created := "-"
	if b.CreatedAt != nil {
		created = unixTime(b.GetCreatedAt())
	}
	fmt.Fprintf(t.tw, "%s\t%s\t%d/%d\t%d\t%s\t%s\n", b.GetId(), statusOf(b),
		rc.GetCompleted()+rc.GetFailed(), rc.GetTotal(), rc.GetFailed(), created, b.GetEndpoint())
}

func (t *listTable) flush() error { return t.tw.Flush() }
