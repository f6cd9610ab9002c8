// Package telemetry gives batchgate Prometheus metrics and OpenTelemetry
// tracing: a registry and its /metrics handler, gRPC server options and
// interceptors, an HTTP middleware, an instrumented transport for the
// upstream client, and collectors that read the watch hub's and the
// upstream client's counters at scrape time.
//
// # Wiring
//
//	tel, err := telemetry.New(ctx, telemetry.Options{
//		ServiceName: "batchgate",
//		Logger:      log,
//	})
//	defer tel.Shutdown(shutdownCtx) // after the servers have stopped
//
//	// gRPC: the call record first, then telemetry, so that rejected calls
//	// are counted; authentication, further in, fills the record.
//	grpc.NewServer(append(tel.GRPCTracingOptions(),
//		grpc.ChainUnaryInterceptor(callinfo.UnaryServerInterceptor(), tel.UnaryServerInterceptor(), authUnary),
//		grpc.ChainStreamInterceptor(callinfo.StreamServerInterceptor(), tel.StreamServerInterceptor(), authStream))...)
//
//	// HTTP: around the whole port, inside the call record; /metrics on it.
//	mux.Handle("GET /metrics", tel.MetricsHandler())
//	handler := callinfo.HTTPMiddleware(tel.HTTPMiddleware(mux))
//
//	// Upstream, and the counters read at scrape time.
//	upstream.Config{HTTPClient: &http.Client{Transport: tel.UpstreamTransport(base)}}
//	tel.RegisterHub(hub.Stats)
//	tel.RegisterUpstream(client.Stats)
//
// The caller label and the HTTP route label come from the call's
// callinfo.Record, read once the call has returned: authentication writes
// the caller into it, the gateway's muxes the route. This works for REST
// calls authenticated by gRPC interceptors run in process under
// HTTPMiddleware too (the record travels in the request context), but not
// across a gRPC connection, in-memory or not. Without a record, or a
// caller in it, the caller is "unknown".
//
// # Metrics
//
// gRPC server (go-grpc-middleware providers/prometheus, default names;
// labels grpc_type, grpc_service, grpc_method, and grpc_code for handled):
//
//   - grpc_server_started_total (counter): calls started.
//   - grpc_server_handled_total (counter): calls completed, by grpc_code
//     ("OK", "NotFound", "Unavailable"...).
//   - grpc_server_handling_seconds (histogram): time to complete a call,
//     whole stream for streaming calls.
//   - grpc_server_msg_received_total, grpc_server_msg_sent_total
//     (counters): stream messages.
//
// HTTP (HTTPMiddleware):
//
//   - batchgate_http_requests_total{method,route,code} (counter): requests
//     completed. route is the route recorded in the callinfo.Record
//     (grpc-gateway's path pattern such as "/v1/batches/{batch_id}" or
//     "/v1/batches/{batch_id}/watch", or the ServeMux pattern), else
//     "other"; method is "other" for non-standard methods.
//   - batchgate_http_request_duration_seconds{method,route} (histogram):
//     time until the handler returned (whole stream for watches).
//
// Callers (gRPC interceptors and HTTPMiddleware):
//
//   - batchgate_requests_by_caller_total{caller,transport,code} (counter):
//     requests completed by caller name, transport "grpc" or "http", and
//     code (gRPC code name or HTTP status). caller is "unknown" without a
//     name, and "other" for names longer than 128 bytes or not UTF-8.
//     Names of known callers (Options.CapCaller) always get their own
//     label; other names get one only among the first 100 distinct names
//     of their group, and the group's overflow label beyond (by default
//     one group, "other").
//
// Upstream (UpstreamTransport, per attempt, retries included):
//
//   - batchgate_upstream_requests_total{code} (counter): by HTTP status, or
//     "error" when no response came back.
//   - batchgate_upstream_request_duration_seconds{code} (histogram): time
//     until the response body was read or closed.
//
// Upstream client (RegisterUpstream):
//
//   - batchgate_upstream_retries_total (counter): attempts after the first.
//   - batchgate_upstream_rate_limited_total (counter): 429 answers.
//
// Watch hub (RegisterHub):
//
//   - batchgate_watchers (gauge): active watch subscriptions.
//   - batchgate_pollers (gauge): running shared pollers.
//   - batchgate_upstream_polls_total (counter): upstream calls by pollers.
//   - batchgate_getbatch_upstream_calls_total (counter): upstream calls for
//     GetBatch.
//   - batchgate_getbatch_coalesced_total (counter): GetBatch calls that
//     joined a call in flight.
//   - batchgate_getbatch_cache_hits_total (counter): calls answered from a
//     result already at hand.
//
// Runtime: the standard go_* and process_* collectors, and
// promhttp_metric_handler_requests_total / _in_flight for the scrapes.
//
// Histograms use the Prometheus default buckets (5 ms to 10 s). No label
// holds a raw path, a batch id, a token or a header value.
//
// # Tracing
//
// Tracing is on when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT is set (see Options.Getenv): server spans for
// gRPC calls and HTTP requests, continuing an incoming W3C traceparent, and
// client spans for upstream attempts, which carry a traceparent upstream;
// spans are batched and exported over OTLP/gRPC. Only the W3C trace
// context is propagated, never baggage. When tracing is off, nothing is
// traced, no incoming trace context is read and none is sent upstream. The
// tracer provider is not installed globally.
package telemetry
