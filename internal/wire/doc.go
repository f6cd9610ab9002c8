// Package wire owns the upstream's JSON dialect: the one Go shape of each
// upstream object (today the batch), how it is read tolerantly from the
// upstream, how it is written canonically to REST clients, and how the
// upstream's status strings map to the generated enum.
//
//   - Batch and its parts are the upstream's batch object, field for field.
//     The simulator serves them, DecodeBatch reads them, MarshalBatch
//     writes them.
//   - DecodeBatch turns an upstream body into a *batchv1.Batch, tolerating
//     what the upstream is known or likely to vary (decode.go).
//   - MarshalBatch (and FromProto) write a *batchv1.Batch back in the
//     upstream's canonical shape (encode.go).
//   - StatusFromString, StatusString and IsTerminal are the only mapping
//     between status strings and batchv1.BatchStatus, derived from the
//     generated enum names (status.go).
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
package wire
