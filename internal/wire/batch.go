package wire

// Batch is the upstream's batch object, field for field, in the order of
// the provider's sample. It is the only Go shape of that object: the
// simulator serves it, DecodeBatch reads it (tolerantly, through the
// UnmarshalJSON methods of Int, Text and Metadata) and MarshalBatch writes
// it; encoding/json writes it in the canonical shape of the package doc.
//
// Pointer fields are nullable or optional: a nil pointer is written as null
// when the field has no omitempty, and left out when it has.
type Batch struct {
	// ID is the batch id, for example "batch_01abc".
	ID string `json:"id"`
	// Object is the object type, "batch".
	Object string `json:"object"`
	// Endpoint is the endpoint the batch's requests go to.
	Endpoint string `json:"endpoint"`
	// Model is the model the batch ran against; omitted when nil.
	Model *string `json:"model,omitempty"`
	// Status is the upstream's lowercase status, for example "in_progress";
	// omitted when empty.
	Status string `json:"status,omitempty"`
	// InputFileID is the id of the input JSONL file.
	InputFileID string `json:"input_file_id"`
	// OutputFileID is the id of the output JSONL file; null when nil.
	OutputFileID *string `json:"output_file_id"`
	// ErrorFileID is the id of the error JSONL file; null when nil.
	ErrorFileID *string `json:"error_file_id"`
	// CompletionWindow is the batch's completion window, "24h".
	CompletionWindow string `json:"completion_window"`
	// RequestCounts counts the batch's requests; omitted when nil.
	RequestCounts *RequestCounts `json:"request_counts,omitempty"`
	// Usage reports the tokens the batch consumed; omitted when nil.
	Usage *Usage `json:"usage,omitempty"`
	// CreatedAt is when the batch was created, in Unix seconds.
	CreatedAt *Int `json:"created_at,omitempty"`
	// InProgressAt is when the batch started processing, in Unix seconds.
	InProgressAt *Int `json:"in_progress_at,omitempty"`
	// FinalizingAt is when the batch started finalizing, in Unix seconds.
	FinalizingAt *Int `json:"finalizing_at,omitempty"`
	// CompletedAt is when the batch completed, in Unix seconds.
	CompletedAt *Int `json:"completed_at,omitempty"`
	// FailedAt is when the batch failed, in Unix seconds.
	FailedAt *Int `json:"failed_at,omitempty"`
	// ExpiredAt is when the batch expired, in Unix seconds.
	ExpiredAt *Int `json:"expired_at,omitempty"`
	// CancellingAt is when the batch started cancelling, in Unix seconds.
	CancellingAt *Int `json:"cancelling_at,omitempty"`
	// CancelledAt is when the batch was cancelled, in Unix seconds.
	CancelledAt *Int `json:"cancelled_at,omitempty"`
	// ExpiresAt is when the batch will expire, in Unix seconds.
	ExpiresAt *Int `json:"expires_at,omitempty"`
	// Metadata holds the batch's key-value pairs; null when nil, {} when
	// empty.
	Metadata Metadata `json:"metadata"`
	// Errors lists the batch's errors; null when nil.
	Errors *BatchErrors `json:"errors"`
}

// RequestCounts is the upstream's request_counts object.
type RequestCounts struct {
	// Total is the number of requests in the batch.
	Total Int `json:"total"`
	// Completed is the number of requests that completed successfully.
	Completed Int `json:"completed"`
	// Failed is the number of requests that failed.
	Failed Int `json:"failed"`
}

// Usage is the upstream's usage object.
type Usage struct {
	// InputTokens counts the input tokens.
	InputTokens Int `json:"input_tokens"`
	// InputTokensDetails breaks down the input tokens; omitted when nil.
	InputTokensDetails *InputTokensDetails `json:"input_tokens_details,omitempty"`
	// OutputTokens counts the output tokens.
	OutputTokens Int `json:"output_tokens"`
	// OutputTokensDetails breaks down the output tokens; omitted when nil.
	OutputTokensDetails *OutputTokensDetails `json:"output_tokens_details,omitempty"`
	// TotalTokens is input plus output tokens.
	TotalTokens Int `json:"total_tokens"`
}

// InputTokensDetails is the upstream's usage.input_tokens_details object.
type InputTokensDetails struct {
	// CachedTokens counts the input tokens served from the prompt cache.
	CachedTokens Int `json:"cached_tokens"`
}

// OutputTokensDetails is the upstream's usage.output_tokens_details object.
type OutputTokensDetails struct {
	// ReasoningTokens counts the output tokens spent on reasoning.
	ReasoningTokens Int `json:"reasoning_tokens"`
}

// BatchErrors is the upstream's errors object.
type BatchErrors struct {
	// Object is the object type, "list".
	Object string `json:"object"`
	// Data holds the errors; [] when there are none. Nil entries (JSON
	// null) are dropped when decoding.
	Data []*BatchError `json:"data"`
}

// BatchError is one entry of the upstream's errors.data.
type BatchError struct {
	// Code is the machine-readable error code (a number is read as its
	// decimal text).
	Code Text `json:"code"`
	// Message describes the error.
	Message string `json:"message"`
	// Param names the parameter the error is about; null when nil.
	Param *string `json:"param"`
	// Line is the input file line the error is about; null when nil.
	Line *Int `json:"line"`
}
