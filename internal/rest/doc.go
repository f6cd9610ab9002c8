// Package rest makes the gateway's grpc-gateway HTTP port look like the
// upstream's own REST batch API, so that REST clients written for the
// upstream (the official OpenAI SDKs among them, with their base URL pointed
// at the gateway) work unchanged.
//
// It provides these:
//
//   - Marshaler: a runtime.Marshaler that uses wire.MarshalBatch for batches and
//     protojson for every other message (marshaler.go);
//   - ServeMuxOptions and NewServeMux: a runtime.ServeMux wired with the
//     Marshaler, and with error and routing-error handlers that answer in the
//     upstream's error envelope through apierr.WriteHTTP (mux.go);
//   - RegisterGetBatchHandler: GET /v1/batches/{batch_id} with the state's
//     tag as ETag, answering If-None-Match with 304 (get.go);
//   - RegisterWatchHandler: GET /v1/batches/{batch_id}/watch as NDJSON or
//     Server-Sent Events, each event's batch in the same shape and its tag
//     (the SSE id), resumable with Last-Event-ID or resume_tag, and errors
//     before the first event as plain error responses (watch.go).
//
// The batch's JSON shape is package wire's: see its doc.
package rest
