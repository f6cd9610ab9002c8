// Package rest makes the gateway's grpc-gateway HTTP port look like the
// upstream's own REST batch API, so that REST clients written for the
// upstream (the official OpenAI SDKs among them, with their base URL pointed
// at the gateway) work unchanged.
//
// It provides three things:
//
//   - Marshaler: a runtime.Marshaler that uses wire.MarshalBatch for batches and
//     protojson for every other message (marshaler.go);
//   - ServeMuxOptions and NewServeMux: a runtime.ServeMux wired with the
//     Marshaler, and with error and routing-error handlers that answer in the
//     upstream's error envelope through apierr.WriteHTTP (mux.go);
//   - RegisterWatchHandler: GET /v1/batches/{batch_id}/watch as NDJSON or
//     Server-Sent Events, each event's batch in the same shape, and errors
//     before the first event as plain error responses (watch.go).
//
// The batch's JSON shape is package wire's: see its doc.
package rest
