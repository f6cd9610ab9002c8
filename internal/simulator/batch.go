package simulator

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// Batch statuses the upstream documents, as wire.StatusString names the
// generated enum values. Batches stored with Put may carry any other
// string, to test forward compatibility.
var (
	// StatusValidating: the input file is being validated.
	StatusValidating = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_VALIDATING)
	// StatusFailed: validation failed (terminal).
	StatusFailed = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_FAILED)
	// StatusInProgress: requests are being run.
	StatusInProgress = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS)
	// StatusFinalizing: results are being written.
	StatusFinalizing = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_FINALIZING)
	// StatusCompleted: results are ready (terminal).
	StatusCompleted = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_COMPLETED)
	// StatusExpired: the completion window ran out (terminal).
	StatusExpired = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_EXPIRED)
	// StatusCancelling: a cancel request is being carried out.
	StatusCancelling = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_CANCELLING)
	// StatusCancelled: the batch was cancelled (terminal).
	StatusCancelled = wire.StatusString(batchv1.BatchStatus_BATCH_STATUS_CANCELLED)
)

// Values the simulator accepts in POST /v1/batches, the only ones the
// upstream supports.
const (
	// SupportedEndpoint is the only accepted "endpoint".
	SupportedEndpoint = "/v1/chat/completions"
	// SupportedCompletionWindow is the only accepted "completion_window".
	SupportedCompletionWindow = "24h"
)

// CreatedBatchTotal is request_counts.total of a batch made by Create with
// an input_file_id that names no uploaded batch file: its requests are
// synthetic.
const CreatedBatchTotal = 100

// failEvery makes one synthetic request in failEvery fail: the
// failEvery-th, the 2*failEvery-th and so on.
const failEvery = 25

// completionWindow is the duration of SupportedCompletionWindow.
const completionWindow = 24 * time.Hour

// knownFields are the JSON names of wire.Batch's fields, which extra
// fields cannot override.
var knownFields = func() map[string]bool {
	m := make(map[string]bool)
	t := reflect.TypeFor[wire.Batch]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

var errBadExtra = errors.New("simulator: extra field value is not valid JSON")

// encodeBatch returns b's JSON (encoding/json's, as the upstream's
// field order and null rules are wire.Batch's tags) followed by the extra
// fields, sorted by name, that do not name a known field.
func encodeBatch(b *wire.Batch, extra map[string]json.RawMessage) ([]byte, error) {
	data, err := json.Marshal(b)
	if err != nil || len(extra) == 0 {
		return data, err
	}
	out := data[:len(data)-1] // drop the closing brace
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		if knownFields[k] {
			continue
		}
		v := extra[k]
		if !json.Valid(v) {
			return nil, errBadExtra
		}
		key, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		out = append(out, ',')
		out = append(out, key...)
		out = append(out, ':')
		out = append(out, v...)
	}
	return append(out, '}'), nil
}

// cloneBatch returns a deep copy of b, sharing nothing mutable with it.
func cloneBatch(b wire.Batch) wire.Batch {
	b.Model = clonePtr(b.Model)
	b.OutputFileID = clonePtr(b.OutputFileID)
	b.ErrorFileID = clonePtr(b.ErrorFileID)
	b.RequestCounts = clonePtr(b.RequestCounts)
	if b.Usage != nil {
		u := *b.Usage
		u.InputTokensDetails = clonePtr(u.InputTokensDetails)
		u.OutputTokensDetails = clonePtr(u.OutputTokensDetails)
		b.Usage = &u
	}
	for _, t := range []**wire.Int{
		&b.CreatedAt, &b.InProgressAt, &b.FinalizingAt, &b.CompletedAt, &b.FailedAt,
		&b.ExpiredAt, &b.CancellingAt, &b.CancelledAt, &b.ExpiresAt,
	} {
		*t = clonePtr(*t)
	}
	b.Metadata = maps.Clone(b.Metadata)
	if b.Errors != nil {
		e := *b.Errors
		e.Data = slices.Clone(e.Data)
		for i, d := range e.Data {
			if d != nil {
				c := *d
				c.Param = clonePtr(c.Param)
				c.Line = clonePtr(c.Line)
				e.Data[i] = &c
			}
		}
		b.Errors = &e
	}
	return b
}

// cloneExtra returns a deep copy of extra.
func cloneExtra(extra map[string]json.RawMessage) map[string]json.RawMessage {
	if extra == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(extra))
	for k, v := range extra {
		out[k] = slices.Clone(v)
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func ptr[T any](v T) *T { return &v }

// unixAt returns t in Unix seconds, for the timestamps of wire.Batch.
func unixAt(t time.Time) *wire.Int { return ptr(wire.Int(t.Unix())) }

// counts returns b's request counts, zero when it has none.
func counts(b *wire.Batch) wire.RequestCounts {
	if b.RequestCounts == nil {
		return wire.RequestCounts{}
	}
	return *b.RequestCounts
}

// isTerminal reports whether status can no longer change.
func isTerminal(status string) bool {
	return wire.IsTerminalStatus(wire.StatusFromString(status))
}

// entry is a stored batch and its lifecycle state. It is only touched with
// Simulator.mu held. The batch and extra fields it holds are never mutated
// after they are stored, so views may share their maps, slices and
// pointers for reading.
type entry struct {
	b     wire.Batch                 // static batch, or the template of a progressing one
	extra map[string]json.RawMessage // written after b's fields; see PutWithExtra
	seq   uint64                     // insertion order, breaks created_at ties in lists

	// Progressing batches only (slow > 0).
	slow    int64     // phase multiplier; 0 for static batches
	created time.Time // exact creation instant (of the first run, when cycling)
	total   int64     // request_counts.total
	cycles  bool      // the lifecycle restarts every cycleLength; see runStart

	// Set once the batch was cancelled while not terminal. A cycling
	// batch's cancel only holds for the run it happened in.
	cancelled bool
	cancelAt  time.Time

	// Batches made from an uploaded input file only (fileBacked). Their
	// requests are the file's lines; the others' are synthetic, one in
	// failEvery failing.
	fileBacked bool
	fails      []int32           // indices of the failing requests, ascending
	invalid    *wire.BatchErrors // why validation fails: the batch fails one phase in
	// results holds every request's result line, in order, from the
	// create until the batch is terminal and its output and error files
	// are stored (see Simulator.settleLocked); its bytes are reserved in
	// the store meanwhile.
	results   []byte
	outExpiry int64 // output_expires_after seconds; 0 for none
}

// failedAmong returns how many of the batch's first done requests fail.
func (e *entry) failedAmong(done int64) int64 {
	if !e.fileBacked {
		return done / failEvery
	}
	n, _ := slices.BinarySearch(e.fails, int32(min(done, math.MaxInt32)))
	return int64(n)
}

// cycleLength is how long one run of a cycling batch lasts: validating,
// in_progress and finalizing for p (phase times the entry's slow) each,
// then completed for p more.
func (e *entry) cycleLength(phase time.Duration) time.Duration {
	return 4 * phase * time.Duration(e.slow)
}

// runStart returns when the run under way at t began: the creation
// instant, or for a cycling batch that plus as many whole cycles as have
// passed by t.
func (e *entry) runStart(t time.Time, phase time.Duration) time.Time {
	el, c := t.Sub(e.created), e.cycleLength(phase)
	if !e.cycles || el <= 0 || c <= 0 {
		return e.created
	}
	return e.created.Add(el / c * c) //nolint:durationcheck // el / c is a count of whole cycles
}

// createdAt returns the entry's created_at at now, 0 when it has none.
func (e *entry) createdAt(now time.Time, phase time.Duration) int64 {
	if e.cycles {
		return e.runStart(now, phase).Unix()
	}
	if e.b.CreatedAt == nil {
		return 0
	}
	return int64(*e.b.CreatedAt)
}

// cmpAt orders entries newest first at now: by created_at, then latest
// insertion first.
func cmpAt(a, b *entry, now time.Time, phase time.Duration) int {
	if a == b {
		return 0
	}
	if x, y := a.createdAt(now, phase), b.createdAt(now, phase); x != y {
		if x > y {
			return -1
		}
		return 1
	}
	if a.seq > b.seq {
		return -1
	}
	return 1
}

// view returns the batch as it is at now. The result shares read-only
// maps, slices and pointers with the entry; clone it before handing it out.
func (e *entry) view(now time.Time, phase time.Duration) wire.Batch {
	start := e.runStart(now, phase)
	// A cancel in an earlier run of a cycling batch is over.
	cancelled := e.cancelled && (!e.cycles || !e.cancelAt.Before(start))
	at := now
	if cancelled && at.After(e.cancelAt) {
		at = e.cancelAt // progress froze when the batch was cancelled
	}
	b := e.b
	if e.slow > 0 {
		e.progress(&b, start, at, phase)
	}
	if cancelled {
		b.Status = StatusCancelling
		b.CancellingAt = unixAt(e.cancelAt)
		if done := e.cancelAt.Add(phase); !now.Before(done) {
			b.Status = StatusCancelled
			b.CancelledAt = unixAt(done)
			rc := counts(&b)
			if b.OutputFileID == nil && rc.Completed > 0 {
				b.OutputFileID = ptr(fileID("file_out_", b.ID))
			}
			if b.ErrorFileID == nil && rc.Failed > 0 {
				b.ErrorFileID = ptr(fileID("file_err_", b.ID))
			}
		}
	}
	return b
}

// progress fills in the lifecycle fields of a progressing batch at time at,
// in the run that began at start: created_at, expires_at and everything
// that follows from them.
func (e *entry) progress(b *wire.Batch, start, at time.Time, phase time.Duration) {
	p := phase * time.Duration(e.slow)
	b.CreatedAt = unixAt(start)
	b.ExpiresAt = unixAt(start.Add(completionWindow))
	expired := false
	if deadline := start.Add(completionWindow); deadline.Before(start.Add(3*p)) && !at.Before(deadline) {
		at, expired = deadline, true
	}
	el := at.Sub(start)
	if el < 0 {
		el = 0
	}
	if e.invalid != nil {
		b.RequestCounts = &wire.RequestCounts{}
		b.Status = StatusValidating
		if el >= p {
			b.Status = StatusFailed
			b.FailedAt = unixAt(start.Add(p))
			b.Errors = e.invalid
		}
		return
	}
	var done int64
	switch {
	case el < p:
		b.Status = StatusValidating
	case el < 2*p:
		b.Status = StatusInProgress
		done = int64(float64(e.total) * float64(el-p) / float64(p))
	case el < 3*p:
		b.Status = StatusFinalizing
		done = e.total
	default:
		b.Status = StatusCompleted
		done = e.total
	}
	if el >= p {
		b.InProgressAt = unixAt(start.Add(p))
	}
	if el >= 2*p {
		b.FinalizingAt = unixAt(start.Add(2 * p))
	}
	failed := e.failedAmong(done)
	b.RequestCounts = &wire.RequestCounts{Total: wire.Int(e.total), Completed: wire.Int(done - failed), Failed: wire.Int(failed)}
	if expired {
		b.Status = StatusExpired
		b.ExpiredAt = unixAt(at)
	} else if b.Status == StatusCompleted {
		b.CompletedAt = unixAt(start.Add(3 * p))
	}
	if b.Status == StatusCompleted || b.Status == StatusExpired {
		if b.RequestCounts.Completed > 0 {
			b.OutputFileID = ptr(fileID("file_out_", b.ID))
		}
		if failed > 0 {
			b.ErrorFileID = ptr(fileID("file_err_", b.ID))
		}
	}
}

// fileID derives a file id from a batch id: "batch_x" -> prefix+"x".
func fileID(prefix, batchID string) string {
	return prefix + strings.TrimPrefix(batchID, "batch_")
}

// terminalAt returns when b became completed, expired or cancelled, nil
// when it has not.
func terminalAt(b *wire.Batch) *wire.Int {
	switch b.Status {
	case StatusCompleted:
		return b.CompletedAt
	case StatusExpired:
		return b.ExpiredAt
	case StatusCancelled:
		return b.CancelledAt
	}
	return nil
}
