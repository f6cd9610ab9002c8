package simulator

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Batch statuses the upstream documents. Batches stored with Put may carry
// any other string, to test forward compatibility.
const (
	// StatusValidating: the input file is being validated.
	StatusValidating = "validating"
	// StatusFailed: validation failed (terminal).
	StatusFailed = "failed"
	// StatusInProgress: requests are being run.
	StatusInProgress = "in_progress"
	// StatusFinalizing: results are being written.
	StatusFinalizing = "finalizing"
	// StatusCompleted: results are ready (terminal).
	StatusCompleted = "completed"
	// StatusExpired: the completion window ran out (terminal).
	StatusExpired = "expired"
	// StatusCancelling: a cancel request is being carried out.
	StatusCancelling = "cancelling"
	// StatusCancelled: the batch was cancelled (terminal).
	StatusCancelled = "cancelled"
)

// Values the simulator accepts in POST /v1/batches, the only ones the
// upstream supports.
const (
	// SupportedEndpoint is the only accepted "endpoint".
	SupportedEndpoint = "/v1/chat/completions"
	// SupportedCompletionWindow is the only accepted "completion_window".
	SupportedCompletionWindow = "24h"
)

// CreatedBatchTotal is request_counts.total of every batch made by
// POST /v1/batches or Create (the simulator has no input files to count).
const CreatedBatchTotal = 100

// failEvery makes one request in failEvery of a progressing batch fail.
const failEvery = 25

// completionWindow is the duration of SupportedCompletionWindow.
const completionWindow = 24 * time.Hour

// RequestCounts is a batch's "request_counts" object.
type RequestCounts struct {
	// Total is the number of requests in the batch.
	Total int64 `json:"total"`
	// Completed is the number of requests that succeeded so far.
	Completed int64 `json:"completed"`
	// Failed is the number of requests that failed so far.
	Failed int64 `json:"failed"`
}

// BatchError is one entry of a batch's "errors.data".
type BatchError struct {
	// Code is a machine-readable error code.
	Code string `json:"code"`
	// Message is a human-readable description.
	Message string `json:"message"`
	// Param names the offending parameter, or is nil (JSON null).
	Param *string `json:"param"`
	// Line is the 1-based input file line, or nil (JSON null).
	Line *int64 `json:"line"`
}

// BatchErrors is a batch's "errors" object.
type BatchErrors struct {
	// Object is always "list".
	Object string `json:"object"`
	// Data holds the errors.
	Data []BatchError `json:"data"`
}

// Batch is the upstream's batch object, field for field. Nullable fields are
// pointers (or a nil map) and are written as JSON null when nil; timestamps
// (Unix seconds) that have not happened are nil and left out of the JSON.
//
// A Batch is plain data: the lifecycle state of progressing batches lives
// inside the Simulator, never in a Batch value.
type Batch struct {
	// ID is the batch id, for example "batch_01abc".
	ID string `json:"id"`
	// Object is always "batch".
	Object string `json:"object"`
	// Endpoint is the endpoint the batch's requests go to.
	Endpoint string `json:"endpoint"`
	// Status is the lifecycle status, one of the Status constants or, for
	// batches stored with Put, anything else.
	Status string `json:"status"`
	// InputFileID is the input JSONL file.
	InputFileID string `json:"input_file_id"`
	// OutputFileID is the output JSONL file, or nil (null) until there is one.
	OutputFileID *string `json:"output_file_id"`
	// ErrorFileID is the error JSONL file, or nil (null) when there is none.
	ErrorFileID *string `json:"error_file_id"`
	// CompletionWindow is "24h".
	CompletionWindow string `json:"completion_window"`
	// RequestCounts holds the request totals.
	RequestCounts RequestCounts `json:"request_counts"`
	// CreatedAt is when the batch was created.
	CreatedAt int64 `json:"created_at"`
	// InProgressAt is when processing started.
	InProgressAt *int64 `json:"in_progress_at,omitempty"`
	// FinalizingAt is when finalizing started.
	FinalizingAt *int64 `json:"finalizing_at,omitempty"`
	// CompletedAt is when the batch completed.
	CompletedAt *int64 `json:"completed_at,omitempty"`
	// FailedAt is when the batch failed.
	FailedAt *int64 `json:"failed_at,omitempty"`
	// ExpiredAt is when the batch expired.
	ExpiredAt *int64 `json:"expired_at,omitempty"`
	// CancellingAt is when cancelling started.
	CancellingAt *int64 `json:"cancelling_at,omitempty"`
	// CancelledAt is when the batch was cancelled.
	CancelledAt *int64 `json:"cancelled_at,omitempty"`
	// ExpiresAt is the completion deadline.
	ExpiresAt *int64 `json:"expires_at,omitempty"`
	// Metadata is the stored metadata; nil is written as null.
	Metadata map[string]string `json:"metadata"`
	// Errors holds validation or platform errors, or nil (null).
	Errors *BatchErrors `json:"errors"`
	// Model is the newer optional "model" field, left out when empty.
	Model string `json:"model,omitempty"`
	// Usage is the newer optional "usage" object, written verbatim when set.
	// It must be valid JSON.
	Usage json.RawMessage `json:"usage,omitempty"`
	// Extra holds further top-level fields, written verbatim after the
	// known ones by the simulator's handler (not by json.Marshal), to test
	// that clients tolerate fields they do not know. Keys that name a known
	// field are ignored; values must be valid JSON.
	Extra map[string]json.RawMessage `json:"-"`
}

// knownFields are the JSON names of Batch's fields, which Extra cannot
// override.
var knownFields = func() map[string]bool {
	m := make(map[string]bool)
	t := reflect.TypeFor[Batch]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

var errBadExtra = errors.New("simulator: Batch.Extra value is not valid JSON")

// encodeBatch returns b's JSON, Extra fields included.
func encodeBatch(b *Batch) ([]byte, error) {
	data, err := json.Marshal(b)
	if err != nil || len(b.Extra) == 0 {
		return data, err
	}
	out := data[:len(data)-1] // drop the closing brace
	for _, k := range slices.Sorted(maps.Keys(b.Extra)) {
		if knownFields[k] {
			continue
		}
		v := b.Extra[k]
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

// clone returns a deep copy of b, sharing nothing mutable with it.
func (b Batch) clone() Batch {
	b.OutputFileID = clonePtr(b.OutputFileID)
	b.ErrorFileID = clonePtr(b.ErrorFileID)
	b.InProgressAt = clonePtr(b.InProgressAt)
	b.FinalizingAt = clonePtr(b.FinalizingAt)
	b.CompletedAt = clonePtr(b.CompletedAt)
	b.FailedAt = clonePtr(b.FailedAt)
	b.ExpiredAt = clonePtr(b.ExpiredAt)
	b.CancellingAt = clonePtr(b.CancellingAt)
	b.CancelledAt = clonePtr(b.CancelledAt)
	b.ExpiresAt = clonePtr(b.ExpiresAt)
	b.Metadata = maps.Clone(b.Metadata)
	if b.Errors != nil {
		e := *b.Errors
		e.Data = slices.Clone(e.Data)
		for i := range e.Data {
			e.Data[i].Param = clonePtr(e.Data[i].Param)
			e.Data[i].Line = clonePtr(e.Data[i].Line)
		}
		b.Errors = &e
	}
	b.Usage = slices.Clone(b.Usage)
	if b.Extra != nil {
		extra := make(map[string]json.RawMessage, len(b.Extra))
		for k, v := range b.Extra {
			extra[k] = slices.Clone(v)
		}
		b.Extra = extra
	}
	return b
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func ptr[T any](v T) *T { return &v }

// isTerminal reports whether status can no longer change.
func isTerminal(status string) bool {
	switch status {
	case StatusCompleted, StatusFailed, StatusExpired, StatusCancelled:
		return true
	}
	return false
}

// entry is a stored batch and its lifecycle state. It is only touched with
// Simulator.mu held. The Batch it holds is never mutated after it is stored,
// so views may share its maps and slices for reading.
type entry struct {
	b   Batch  // static batch, or the template of a progressing one
	seq uint64 // insertion order, breaks created_at ties in lists

	// Progressing batches only (slow > 0).
	slow    int64     // phase multiplier; 0 for static batches
	created time.Time // exact creation instant
	total   int64     // request_counts.total

	// Set once the batch was cancelled while not terminal.
	cancelled bool
	cancelAt  time.Time
}

// newerThan orders entries newest first: by created_at, then insertion.
func (e *entry) newerThan(o *entry) bool {
	if e.b.CreatedAt != o.b.CreatedAt {
		return e.b.CreatedAt > o.b.CreatedAt
	}
	return e.seq > o.seq
}

// view returns the batch as it is at now. The result shares read-only
// maps and slices with the entry; clone it before handing it out.
func (e *entry) view(now time.Time, phase time.Duration) Batch {
	at := now
	if e.cancelled && at.After(e.cancelAt) {
		at = e.cancelAt // progress froze when the batch was cancelled
	}
	b := e.b
	if e.slow > 0 {
		e.progress(&b, at, phase)
	}
	if e.cancelled {
		b.Status = StatusCancelling
		b.CancellingAt = ptr(e.cancelAt.Unix())
		if done := e.cancelAt.Add(phase); !now.Before(done) {
			b.Status = StatusCancelled
			b.CancelledAt = ptr(done.Unix())
			if b.OutputFileID == nil && b.RequestCounts.Completed > 0 {
				b.OutputFileID = ptr(fileID("file_out_", b.ID))
			}
			if b.ErrorFileID == nil && b.RequestCounts.Failed > 0 {
				b.ErrorFileID = ptr(fileID("file_err_", b.ID))
			}
		}
	}
	return b
}

// progress fills in the lifecycle fields of a progressing batch at time at.
func (e *entry) progress(b *Batch, at time.Time, phase time.Duration) {
	p := phase * time.Duration(e.slow)
	expired := false
	if deadline := e.created.Add(completionWindow); deadline.Before(e.created.Add(3*p)) && !at.Before(deadline) {
		at, expired = deadline, true
	}
	el := at.Sub(e.created)
	if el < 0 {
		el = 0
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
		b.InProgressAt = ptr(e.created.Add(p).Unix())
	}
	if el >= 2*p {
		b.FinalizingAt = ptr(e.created.Add(2 * p).Unix())
	}
	failed := done / failEvery
	b.RequestCounts = RequestCounts{Total: e.total, Completed: done - failed, Failed: failed}
	if expired {
		b.Status = StatusExpired
		b.ExpiredAt = ptr(at.Unix())
	} else if b.Status == StatusCompleted {
		b.CompletedAt = ptr(e.created.Add(3 * p).Unix())
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
