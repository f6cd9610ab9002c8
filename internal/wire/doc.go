// Package wire owns the upstream's JSON dialect: the one Go shape of each
// upstream object (the batch, the file, the list, the deleted file, the
// create request, the input and result lines), how each answer is read
// tolerantly from the upstream, how it is written canonically to REST
// clients, and how the upstream's status strings map to the generated
// enum.
//
//   - Batch and its parts are the upstream's batch object, field for field.
//     The simulator serves them, DecodeBatch reads them, MarshalBatch
//     writes them.
//   - File, List[T] and FileDeleted are the file object, the list object
//     (of batches or files) and the answer to a file's deletion (lifecycle.go);
//     CreateBatchRequest is the body of POST /v1/batches, and InputLine and
//     ResultLine are the lines of input and of output or error files.
//   - DecodeBatch, DecodeFile, DecodeBatchList, DecodeFileList and
//     DecodeFileDeleted turn an upstream body into the generated message,
//     tolerating what the upstream is known or likely to vary; their errors
//     wrap ErrMalformed and never quote the body (decode.go). DecodeError
//     reads the upstream's error envelope (errors.go).
//   - MarshalBatch (and FromProto), MarshalFile, MarshalBatchList,
//     MarshalFileList and MarshalFileDeleted write a message back in the
//     upstream's canonical shape (encode.go).
//   - Tag (and TagJSON) name a batch's state by a hash of its canonical
//     JSON: the WatchBatch event tag, the REST ETag and SSE event id
//     (tag.go).
//   - StatusFromString, StatusString and IsTerminal are the only mapping
//     between status strings and batchv1.BatchStatus, derived from the
//     generated enum names (status.go).
//
// Every encoder writes integers as JSON numbers (not the strings protojson
// writes for int64), strings verbatim ("<", ">" and "&" are not escaped),
// and no trailing newline. Every decoder ignores unknown fields, reads null
// as absent, and reads integers from JSON numbers or numeric strings (see
// Int).
//
// # The batch's JSON shape
//
// A batch is written as a bare JSON object, never wrapped, with the
// upstream's snake_case names, in the order of the provider's own sample
// (id, object, endpoint, model, status, input_file_id, output_file_id,
// error_file_id, completion_window, request_counts, usage, the timestamps,
// metadata, errors). Integers are JSON numbers, not the strings protojson
// writes for int64. Strings are written verbatim: "<", ">" and "&" are not
// escaped.
//
// status is the upstream's lowercase string: Batch.upstream_status when it
// is non-empty (so a status this gateway does not know, such as "paused",
// passes through unchanged), otherwise the name derived from the enum
// (BATCH_STATUS_IN_PROGRESS is "in_progress"). It is omitted only when both
// are empty or unknown, that is when the upstream sent no status at all.
// upstream_status itself is never written.
//
// Null and absent fields follow one canonical rule each:
//
//   - id, object, endpoint, input_file_id, completion_window: always
//     present, as strings (empty when the upstream sent none);
//   - output_file_id: always present; null when unset;
//   - error_file_id: always present; null when unset or empty (the
//     upstream's contract reads an empty string as absent);
//   - metadata: always present; null when unset, {} when set but empty,
//     otherwise an object with its keys sorted;
//   - errors: always present; null when unset, otherwise
//     {"object": ..., "data": [...]} with data [] when empty, and each entry
//     {"code", "message", "param", "line"} with param and line null when
//     unset;
//   - created_at, in_progress_at, finalizing_at, completed_at, failed_at,
//     expired_at, cancelling_at, cancelled_at, expires_at: present (as Unix
//     seconds, 0 included) when set, omitted when unset;
//   - request_counts: {"total", "completed", "failed"} when set, omitted
//     when unset;
//   - model: present when set, omitted when unset;
//   - usage: omitted when unset, otherwise {"input_tokens",
//     "input_tokens_details", "output_tokens", "output_tokens_details",
//     "total_tokens"}, each details object ({"cached_tokens"},
//     {"reasoning_tokens"}) omitted when unset.
//
// # The list's JSON shape
//
// A list of batches or of files is written as
// {"object":"list","data":[...],"first_id":...,"last_id":...,"has_more":...}:
// object always "list"; data always an array, [] when empty, each batch
// exactly as MarshalBatch writes it and each file as MarshalFile does;
// first_id and last_id strings, null when empty; has_more a boolean. When
// reading, a missing, null or empty first_id or last_id is taken from the
// first or last item of data, and an item without id makes the list
// malformed.
//
// # The file's JSON shape
//
// A file is written as {"id","object","bytes","created_at","expires_at",
// "filename","purpose","status","status_details"}, in that order: id,
// filename and purpose always present as strings; object always present,
// "file" when unset; bytes and created_at always present as numbers (0
// when unset); expires_at, status and status_details present when set,
// omitted when unset. The answer to a deletion is
// {"id","object":"file","deleted"}.
package wire
