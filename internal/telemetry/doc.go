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
//		CallerName:  func(ctx context.Context) string { c, _ := auth.FromContext(ctx); return c.Name },
//	})
//	defer tel.Shutdown(shutdownCtx) // after the servers have stopped
//
//	// gRPC: telemetry outermost, so that rejected calls are counted; the
//	// caller hook right after authentication.
//	grpc.NewServer(append(tel.GRPCTracingOptions(),
//		grpc.ChainUnaryInterceptor(tel.UnaryServerInterceptor(), authUnary, tel.CallerUnaryServerInterceptor()),
//		grpc.ChainStreamInterceptor(tel.StreamServerInterceptor(), authStream, tel.CallerStreamServerInterceptor()))...)
//
//	// HTTP: around the whole port; /metrics on it.
//	mux.Handle("GET /metrics", tel.MetricsHandler())
//	handler := tel.HTTPMiddleware(mux)
//
//	// Upstream, and the counters read at scrape time.
//	upstream.Config{HTTPClient: &http.Client{Transport: tel.UpstreamTransport(base)}}
//	tel.RegisterHub(hub.Stats)
//	tel.RegisterUpstream(client.Stats)
//
// The caller label: the interceptors and HTTPMiddleware put a slot in the
// request context; CallerUnaryServerInterceptor, CallerStreamServerInterceptor
// and CallerHTTPMiddleware, chained after authentication, fill it with
// Options.CallerName of the authenticated context. This also works for
// REST calls authenticated by gRPC interceptors run in process under
// HTTPMiddleware (the slot travels in the request context), but not across
// a gRPC connection, in-memory or not. Without a filled slot,
// Options.CallerName is given the context this package's interceptor or
// middleware sees.
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
//     completed. route is the ServeMux pattern or a REST template such as
//     "/v1/batches/{batch_id}" or "/v1/batches/{batch_id}/watch", else
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
