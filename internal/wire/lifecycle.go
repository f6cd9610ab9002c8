package wire

import "encoding/json"

// CreateBatchRequest is the body of POST /v1/batches.
type CreateBatchRequest struct {
	// InputFileID is the uploaded input file. Required.
	InputFileID string `json:"input_file_id"`
	// Endpoint is where the batch's requests go, for example
	// "/v1/chat/completions". Required.
	Endpoint string `json:"endpoint"`
	// CompletionWindow is "24h". Required.
	CompletionWindow string `json:"completion_window"`
	// Metadata holds up to 16 pairs; omitted when nil.
	Metadata map[string]string `json:"metadata,omitempty"`
	// OutputExpiresAfter sets when the output files expire; omitted when
	// nil.
	OutputExpiresAfter *OutputExpiresAfter `json:"output_expires_after,omitempty"`
}

// OutputExpiresAfter is the upstream's output_expires_after object.
type OutputExpiresAfter struct {
	// Anchor is "created_at".
	Anchor string `json:"anchor"`
	// Seconds is 3600 to 2592000.
	Seconds Int `json:"seconds"`
}

// List is the upstream's list object: {"object":"list","data":[...],
// "first_id","last_id","has_more"}. T is Batch or File.
type List[T any] struct {
	// Object is "list".
	Object string `json:"object"`
	// Data holds the page's items; [] when there are none.
	Data []T `json:"data"`
	// FirstID is the id of the first item; null when nil.
	FirstID *string `json:"first_id"`
	// LastID is the id of the last item; null when nil.
	LastID *string `json:"last_id"`
	// HasMore says whether items follow the page.
	HasMore bool `json:"has_more"`
}

// File is the upstream's file object.
type File struct {
	// ID is the file id, for example "file_abc123".
	ID string `json:"id"`
	// Object is "file".
	Object string `json:"object"`
	// Bytes is the file's size.
	Bytes Int `json:"bytes"`
	// CreatedAt is when the file was created, in Unix seconds.
	CreatedAt Int `json:"created_at"`
	// ExpiresAt is when the file expires, in Unix seconds; omitted when
	// nil.
	ExpiresAt *Int `json:"expires_at,omitempty"`
	// Filename is the file's name.
	Filename string `json:"filename"`
	// Purpose is, for example, "batch", "batch_output".
	Purpose string `json:"purpose"`
	// Status is "uploaded", "processed" or "error"; omitted when nil.
	Status *string `json:"status,omitempty"`
	// StatusDetails says why processing failed; omitted when nil.
	StatusDetails *string `json:"status_details,omitempty"`
}

// FileDeleted is the answer of DELETE /v1/files/{file_id}.
type FileDeleted struct {
	// ID is the file id.
	ID string `json:"id"`
	// Object is "file".
	Object string `json:"object"`
	// Deleted is true.
	Deleted bool `json:"deleted"`
}

// InputLine is one line of a batch input file.
type InputLine struct {
	// CustomID is the caller's id of the request.
	CustomID string `json:"custom_id"`
	// Method is "POST".
	Method string `json:"method"`
	// URL is the endpoint, for example "/v1/chat/completions".
	URL string `json:"url"`
	// Body is the request body.
	Body json.RawMessage `json:"body"`
}

// ResultLine is one line of a batch output or error file.
type ResultLine struct {
	// ID is the upstream's id of the answer, for example "batch_req_123".
	ID string `json:"id"`
	// CustomID is the input line's custom_id.
	CustomID string `json:"custom_id"`
	// Response is the request's response; null when nil.
	Response *ResultResponse `json:"response"`
	// Error is why the request failed; null when nil.
	Error *ResultError `json:"error"`
}

// ResultResponse is a result line's response object.
type ResultResponse struct {
	// StatusCode is the request's HTTP status.
	StatusCode Int `json:"status_code"`
	// RequestID is the upstream's request id.
	RequestID string `json:"request_id"`
	// Body is the response body, any JSON.
	Body json.RawMessage `json:"body"`
}

// ResultError is a result line's error object.
type ResultError struct {
	// Code is a machine-readable code (a number is read as its text).
	Code Text `json:"code"`
	// Message is for people.
	Message string `json:"message"`
}
