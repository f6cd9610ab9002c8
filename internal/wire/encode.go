package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Errors of the Marshal functions for nil input: the upstream never
// answers with null, so neither does the gateway.
var (
	// ErrNilBatch is returned by MarshalBatch for a nil batch, and by
	// MarshalBatchList for a nil batch in the list.
	ErrNilBatch = errors.New("wire: nil batch")
	// ErrNilFile is returned by MarshalFile for a nil file, and by
	// MarshalFileList for a nil file in the list.
	ErrNilFile = errors.New("wire: nil file")
	// ErrNilResponse is returned by MarshalBatchList, MarshalFileList and
	// MarshalFileDeleted for a nil response.
	ErrNilResponse = errors.New("wire: nil response")
)

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

// MarshalFile returns f as the upstream writes a file object:
// {"id","object","bytes","created_at","expires_at","filename","purpose",
// "status","status_details"}, with expires_at, status and status_details
// omitted when unset and object "file" when f's is empty. Integers are JSON
// numbers, strings are not HTML-escaped, and there is no trailing newline.
// A nil f is an error (ErrNilFile).
func MarshalFile(f *batchv1.File) ([]byte, error) {
	if f == nil {
		return nil, ErrNilFile
	}
	w := fileFromProto(f)
	return encodeCanonical(&w)
}

// MarshalBatchList returns l as the upstream writes a list of batches:
// {"object":"list","data":[...],"first_id","last_id","has_more"}, each
// batch of data exactly as MarshalBatch writes it, data [] when empty and
// first_id and last_id null when empty. A nil l is an error
// (ErrNilResponse), and so is a nil batch in it (ErrNilBatch).
func MarshalBatchList(l *batchv1.ListBatchesResponse) ([]byte, error) {
	if l == nil {
		return nil, ErrNilResponse
	}
	batches := l.GetBatches()
	out := List[Batch]{
		Object:  "list",
		Data:    make([]Batch, len(batches)),
		FirstID: idOrNull(l.GetFirstId()),
		LastID:  idOrNull(l.GetLastId()),
		HasMore: l.GetHasMore(),
	}
	ps := make([]parts, len(batches))
	for i, b := range batches {
		if b == nil {
			return nil, ErrNilBatch
		}
		ps[i].fill(&out.Data[i], b)
	}
	return encodeCanonical(&out)
}

// MarshalFileList returns l as the upstream writes a list of files, with
// the list rules of MarshalBatchList and each file as MarshalFile writes
// it. A nil l is an error (ErrNilResponse), and so is a nil file in it
// (ErrNilFile).
func MarshalFileList(l *batchv1.ListFilesResponse) ([]byte, error) {
	if l == nil {
		return nil, ErrNilResponse
	}
	files := l.GetFiles()
	out := List[File]{
		Object:  "list",
		Data:    make([]File, len(files)),
		FirstID: idOrNull(l.GetFirstId()),
		LastID:  idOrNull(l.GetLastId()),
		HasMore: l.GetHasMore(),
	}
	for i, f := range files {
		if f == nil {
			return nil, ErrNilFile
		}
		out.Data[i] = fileFromProto(f)
	}
	return encodeCanonical(&out)
}

// MarshalFileDeleted returns d as the upstream answers
// DELETE /v1/files/{file_id}: {"id","object":"file","deleted"}. A nil d is
// an error (ErrNilResponse).
func MarshalFileDeleted(d *batchv1.DeleteFileResponse) ([]byte, error) {
	if d == nil {
		return nil, ErrNilResponse
	}
	return encodeCanonical(&FileDeleted{ID: d.GetId(), Object: "file", Deleted: d.GetDeleted()})
}

// fileFromProto returns f in the upstream's shape, sharing f's strings and
// pointers.
func fileFromProto(f *batchv1.File) File {
	w := File{
		ID:            f.GetId(),
		Object:        f.GetObject(),
		Bytes:         Int(f.GetBytes()),
		CreatedAt:     Int(f.GetCreatedAt()),
		ExpiresAt:     (*Int)(f.ExpiresAt),
		Filename:      f.GetFilename(),
		Purpose:       f.GetPurpose(),
		Status:        f.Status,
		StatusDetails: f.StatusDetails,
	}
	if w.Object == "" {
		w.Object = "file"
	}
	return w
}

// idOrNull returns a list's first or last id as written: null when empty.
func idOrNull(id string) *string {
	if id == "" {
		return nil
	}
	return &id
}

// encodeCanonical encodes v with encoding/json, without HTML escaping and
// without a trailing newline.
func encodeCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
