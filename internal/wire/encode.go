package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// ErrNilBatch is returned by MarshalBatch for a nil batch: the upstream
// never answers a batch call with null, so neither does the gateway.
var ErrNilBatch = errors.New("wire: nil batch")

// FromProto returns b in the upstream's JSON shape. The result shares b's
// strings, integer pointers and metadata map: treat it as read-only. A nil
// b gives the zero Batch.
func FromProto(b *batchv1.Batch) Batch {
	var out Batch
	if b != nil {
		new(parts).fill(&out, b)
	}
	return out
}

// MarshalBatch returns b as the upstream writes it: FromProto encoded by
// encoding/json without HTML escaping and without a trailing newline. A nil
// b is an error (ErrNilBatch).
//
// It is on the hot path of every REST GetBatch; the encoder, its buffer and
// the Batch with its parts are pooled, so the returned slice is usually
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

// parts holds the nested objects a Batch points to, so that one
// allocation (or none, when pooled) covers them all.
type parts struct {
	counts RequestCounts
	usage  Usage
	input  InputTokensDetails
	output OutputTokensDetails
	errs   BatchErrors
	data   []BatchError
	ptrs   []*BatchError
}

// fill sets *dst to b's upstream shape, pointing dst's nested objects into p.
func (p *parts) fill(dst *Batch, b *batchv1.Batch) {
	*dst = Batch{
		ID:               b.GetId(),
		Object:           b.GetObject(),
		Endpoint:         b.GetEndpoint(),
		Model:            b.Model,
		Status:           statusOf(b),
		InputFileID:      b.GetInputFileId(),
		OutputFileID:     b.OutputFileId,
		ErrorFileID:      b.ErrorFileId,
		CompletionWindow: b.GetCompletionWindow(),
		CreatedAt:        (*Int)(b.CreatedAt),
		InProgressAt:     (*Int)(b.InProgressAt),
		FinalizingAt:     (*Int)(b.FinalizingAt),
		CompletedAt:      (*Int)(b.CompletedAt),
		FailedAt:         (*Int)(b.FailedAt),
		ExpiredAt:        (*Int)(b.ExpiredAt),
		CancellingAt:     (*Int)(b.CancellingAt),
		CancelledAt:      (*Int)(b.CancelledAt),
		ExpiresAt:        (*Int)(b.ExpiresAt),
	}
	if dst.ErrorFileID != nil && *dst.ErrorFileID == "" {
		dst.ErrorFileID = nil
	}
	if rc := b.GetRequestCounts(); rc != nil {
		p.counts = RequestCounts{Total: Int(rc.GetTotal()), Completed: Int(rc.GetCompleted()), Failed: Int(rc.GetFailed())}
		dst.RequestCounts = &p.counts
	}
	if u := b.GetUsage(); u != nil {
		p.usage = Usage{InputTokens: Int(u.GetInputTokens()), OutputTokens: Int(u.GetOutputTokens()), TotalTokens: Int(u.GetTotalTokens())}
		if d := u.GetInputTokensDetails(); d != nil {
			p.input = InputTokensDetails{CachedTokens: Int(d.GetCachedTokens())}
			p.usage.InputTokensDetails = &p.input
		}
		if d := u.GetOutputTokensDetails(); d != nil {
			p.output = OutputTokensDetails{ReasoningTokens: Int(d.GetReasoningTokens())}
			p.usage.OutputTokensDetails = &p.output
		}
		dst.Usage = &p.usage
	}
	if md := b.GetMetadata(); md != nil {
		dst.Metadata = md.GetPairs()
		if dst.Metadata == nil {
			dst.Metadata = Metadata{}
		}
	}
	if errs := b.GetErrors(); errs != nil {
		data := p.data[:0]
		for _, e := range errs.GetData() {
			// A nil entry is written as an empty error, never as null.
			be := BatchError{Code: Text(e.GetCode()), Message: e.GetMessage()}
			if e != nil {
				be.Param, be.Line = e.Param, (*Int)(e.Line)
			}
			data = append(data, be)
		}
		ptrs := p.ptrs[:0]
		for i := range data {
			ptrs = append(ptrs, &data[i])
		}
		if ptrs == nil {
			ptrs = []*BatchError{}
		}
		p.data, p.ptrs = data, ptrs
		p.errs = BatchErrors{Object: errs.GetObject(), Data: ptrs}
		dst.Errors = &p.errs
	}
}

// statusOf returns the status the upstream sent, or the one derived from
// the enum, or "" when there is neither.
func statusOf(b *batchv1.Batch) string {
	if s := b.GetUpstreamStatus(); s != "" {
		return s
	}
	return StatusString(b.GetStatus())
}

// batchEncoder is MarshalBatch's pooled state.
type batchEncoder struct {
	buf   bytes.Buffer
	enc   *json.Encoder
	batch Batch
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
	e.batch = Batch{}
	clear(e.parts.data)
	clear(e.parts.ptrs)
	e.parts = parts{data: e.parts.data[:0], ptrs: e.parts.ptrs[:0]}
	encoders.Put(e)
}
