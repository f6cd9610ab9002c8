package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// ErrNilBatch is returned by MarshalBatch for a nil batch: the upstream
// never answers a batch call with null, so neither does the gateway.
var ErrNilBatch = errors.New("rest: nil batch")

// BatchJSON is a batch in the upstream's JSON shape; encoding/json writes it
// as the upstream does (see the package doc for the null and absent rules).
// Its field order is the order of the provider's sample.
//
// A BatchJSON made by BatchToJSON shares the strings, the integer pointers
// and the metadata map of the batch it was made from: treat it as read-only.
type BatchJSON struct {
	// ID is the batch id, for example "batch_01abc".
	ID string `json:"id"`
	// Object is the object type, "batch".
	Object string `json:"object"`
	// Endpoint is the endpoint the batch's requests go to.
	Endpoint string `json:"endpoint"`
	// Model is the model the batch ran against; omitted when unset.
	Model *string `json:"model,omitempty"`
	// Status is the upstream's lowercase status, for example "in_progress";
	// omitted only when the upstream sent none.
	Status string `json:"status,omitempty"`
	// InputFileID is the id of the input JSONL file.
	InputFileID string `json:"input_file_id"`
	// OutputFileID is the id of the output JSONL file; null when unset.
	OutputFileID *string `json:"output_file_id"`
	// ErrorFileID is the id of the error JSONL file; null when unset.
	ErrorFileID *string `json:"error_file_id"`
	// CompletionWindow is the batch's completion window, "24h".
	CompletionWindow string `json:"completion_window"`
	// RequestCounts counts the batch's requests; omitted when unset.
	RequestCounts *RequestCountsJSON `json:"request_counts,omitempty"`
	// Usage reports the tokens the batch consumed; omitted when unset.
	Usage *UsageJSON `json:"usage,omitempty"`
	// CreatedAt is when the batch was created, in Unix seconds.
	CreatedAt *int64 `json:"created_at,omitempty"`
	// InProgressAt is when the batch started processing, in Unix seconds.
	InProgressAt *int64 `json:"in_progress_at,omitempty"`
	// FinalizingAt is when the batch started finalizing, in Unix seconds.
	FinalizingAt *int64 `json:"finalizing_at,omitempty"`
	// CompletedAt is when the batch completed, in Unix seconds.
	CompletedAt *int64 `json:"completed_at,omitempty"`
	// FailedAt is when the batch failed, in Unix seconds.
	FailedAt *int64 `json:"failed_at,omitempty"`
	// ExpiredAt is when the batch expired, in Unix seconds.
	ExpiredAt *int64 `json:"expired_at,omitempty"`
	// CancellingAt is when the batch started cancelling, in Unix seconds.
	CancellingAt *int64 `json:"cancelling_at,omitempty"`
	// CancelledAt is when the batch was cancelled, in Unix seconds.
	CancelledAt *int64 `json:"cancelled_at,omitempty"`
	// ExpiresAt is when the batch will expire, in Unix seconds.
	ExpiresAt *int64 `json:"expires_at,omitempty"`
	// Metadata holds the batch's key-value pairs; null when unset, {} when
	// set but empty.
	Metadata map[string]string `json:"metadata"`
	// Errors lists the batch's errors; null when unset.
	Errors *BatchErrorsJSON `json:"errors"`
}

// RequestCountsJSON is the upstream's request_counts object.
type RequestCountsJSON struct {
	// Total is the number of requests in the batch.
	Total int64 `json:"total"`
	// Completed is the number of requests that completed successfully.
	Completed int64 `json:"completed"`
	// Failed is the number of requests that failed.
	Failed int64 `json:"failed"`
}

// UsageJSON is the upstream's usage object.
type UsageJSON struct {
	// InputTokens counts the input tokens.
	InputTokens int64 `json:"input_tokens"`
	// InputTokensDetails breaks down the input tokens; omitted when unset.
	InputTokensDetails *InputTokensDetailsJSON `json:"input_tokens_details,omitempty"`
	// OutputTokens counts the output tokens.
	OutputTokens int64 `json:"output_tokens"`
	// OutputTokensDetails breaks down the output tokens; omitted when unset.
	OutputTokensDetails *OutputTokensDetailsJSON `json:"output_tokens_details,omitempty"`
	// TotalTokens is input plus output tokens.
	TotalTokens int64 `json:"total_tokens"`
}

// InputTokensDetailsJSON is the upstream's usage.input_tokens_details object.
type InputTokensDetailsJSON struct {
	// CachedTokens counts the input tokens served from the prompt cache.
	CachedTokens int64 `json:"cached_tokens"`
}

// OutputTokensDetailsJSON is the upstream's usage.output_tokens_details
// object.
type OutputTokensDetailsJSON struct {
	// ReasoningTokens counts the output tokens spent on reasoning.
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

// BatchErrorsJSON is the upstream's errors object.
type BatchErrorsJSON struct {
	// Object is the object type, "list".
	Object string `json:"object"`
	// Data holds the errors; [] when there are none.
	Data []BatchErrorJSON `json:"data"`
}

// BatchErrorJSON is one entry of the upstream's errors.data.
type BatchErrorJSON struct {
	// Code is the machine-readable error code.
	Code string `json:"code"`
	// Message describes the error.
	Message string `json:"message"`
	// Param names the parameter the error is about; null when unset.
	Param *string `json:"param"`
	// Line is the input file line the error is about; null when unset.
	Line *int64 `json:"line"`
}

// BatchToJSON returns b in the upstream's JSON shape. The result shares b's
// strings, pointers and metadata map. A nil b gives the zero BatchJSON.
func BatchToJSON(b *batchv1.Batch) BatchJSON {
	var out BatchJSON
	if b != nil {
		new(parts).fill(&out, b)
	}
	return out
}

// MarshalBatch returns b as the upstream writes it: BatchToJSON encoded by
// encoding/json without HTML escaping and without a trailing newline. A nil
// b is an error (ErrNilBatch).
//
// It is on the hot path of every REST GetBatch; the encoder, its buffer and
// the BatchJSON with its parts are pooled, so the returned slice is usually
// the only allocation besides encoding/json's own work.
func MarshalBatch(b *batchv1.Batch) ([]byte, error) {
	if b == nil {
		return nil, ErrNilBatch
	}
	e := encoders.Get().(*batchEncoder)
	defer e.release()
	e.parts.fill(&e.batch, b)
	if err := e.enc.Encode(&e.batch); err != nil {
		return nil, err
	}
	return bytes.Clone(bytes.TrimSuffix(e.buf.Bytes(), []byte{'\n'})), nil
}

// parts holds the nested objects a BatchJSON points to, so that one
// allocation (or none, when pooled) covers them all.
type parts struct {
	counts RequestCountsJSON
	usage  UsageJSON
	input  InputTokensDetailsJSON
	output OutputTokensDetailsJSON
	errs   BatchErrorsJSON
	data   []BatchErrorJSON
}

// fill sets *dst to b's upstream shape, pointing dst's nested objects into p.
func (p *parts) fill(dst *BatchJSON, b *batchv1.Batch) {
	*dst = BatchJSON{
		ID:               b.GetId(),
		Object:           b.GetObject(),
		Endpoint:         b.GetEndpoint(),
		Model:            b.Model,
		Status:           statusString(b),
		InputFileID:      b.GetInputFileId(),
		OutputFileID:     b.OutputFileId,
		ErrorFileID:      b.ErrorFileId,
		CompletionWindow: b.GetCompletionWindow(),
		CreatedAt:        b.CreatedAt,
		InProgressAt:     b.InProgressAt,
		FinalizingAt:     b.FinalizingAt,
		CompletedAt:      b.CompletedAt,
		FailedAt:         b.FailedAt,
		ExpiredAt:        b.ExpiredAt,
		CancellingAt:     b.CancellingAt,
		CancelledAt:      b.CancelledAt,
		ExpiresAt:        b.ExpiresAt,
	}
	if dst.ErrorFileID != nil && *dst.ErrorFileID == "" {
		dst.ErrorFileID = nil
	}
	if rc := b.GetRequestCounts(); rc != nil {
		p.counts = RequestCountsJSON{Total: rc.GetTotal(), Completed: rc.GetCompleted(), Failed: rc.GetFailed()}
		dst.RequestCounts = &p.counts
	}
	if u := b.GetUsage(); u != nil {
		p.usage = UsageJSON{InputTokens: u.GetInputTokens(), OutputTokens: u.GetOutputTokens(), TotalTokens: u.GetTotalTokens()}
		if d := u.GetInputTokensDetails(); d != nil {
			p.input = InputTokensDetailsJSON{CachedTokens: d.GetCachedTokens()}
			p.usage.InputTokensDetails = &p.input
		}
		if d := u.GetOutputTokensDetails(); d != nil {
			p.output = OutputTokensDetailsJSON{ReasoningTokens: d.GetReasoningTokens()}
			p.usage.OutputTokensDetails = &p.output
		}
		dst.Usage = &p.usage
	}
	if md := b.GetMetadata(); md != nil {
		dst.Metadata = md.GetPairs()
		if dst.Metadata == nil {
			dst.Metadata = map[string]string{}
		}
	}
	if errs := b.GetErrors(); errs != nil {
		data := p.data[:0]
		for _, e := range errs.GetData() {
			if e == nil {
				data = append(data, BatchErrorJSON{})
				continue
			}
			data = append(data, BatchErrorJSON{Code: e.GetCode(), Message: e.GetMessage(), Param: e.Param, Line: e.Line})
		}
		if data == nil {
			data = []BatchErrorJSON{}
		}
		p.data = data
		p.errs = BatchErrorsJSON{Object: errs.GetObject(), Data: data}
		dst.Errors = &p.errs
	}
}

// statusString returns the status the upstream sent, or the one derived
// from the enum, or "" when there is neither.
func statusString(b *batchv1.Batch) string {
	if s := b.GetUpstreamStatus(); s != "" {
		return s
	}
	switch b.GetStatus() {
	case batchv1.BatchStatus_BATCH_STATUS_VALIDATING:
		return "validating"
	case batchv1.BatchStatus_BATCH_STATUS_FAILED:
		return "failed"
	case batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS:
		return "in_progress"
	case batchv1.BatchStatus_BATCH_STATUS_FINALIZING:
		return "finalizing"
	case batchv1.BatchStatus_BATCH_STATUS_COMPLETED:
		return "completed"
	case batchv1.BatchStatus_BATCH_STATUS_EXPIRED:
		return "expired"
	case batchv1.BatchStatus_BATCH_STATUS_CANCELLING:
		return "cancelling"
	case batchv1.BatchStatus_BATCH_STATUS_CANCELLED:
		return "cancelled"
	default:
		return ""
	}
}

// batchEncoder is MarshalBatch's pooled state.
type batchEncoder struct {
	buf   bytes.Buffer
	enc   *json.Encoder
	batch BatchJSON
	parts parts
}

// maxPooledBytes bounds the buffer a pooled encoder keeps, so that one huge
// batch does not pin its memory.
const maxPooledBytes = 64 << 10

var encoders = sync.Pool{New: func() any {
	e := new(batchEncoder)
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// release clears e's references to the batch and returns it to the pool.
func (e *batchEncoder) release() {
	if e.buf.Cap() > maxPooledBytes || cap(e.parts.data) > 1024 {
		return
	}
	e.buf.Reset()
	e.batch = BatchJSON{}
	clear(e.parts.data)
	e.parts = parts{data: e.parts.data[:0]}
	encoders.Put(e)
}
