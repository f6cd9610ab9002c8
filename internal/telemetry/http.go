package telemetry

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// HTTPMiddleware instruments an HTTP handler: it counts requests in
// batchgate_http_requests_total{method,route,code} and
// batchgate_requests_by_caller_total, and times them in
// batchgate_http_request_duration_seconds. When tracing is on it also makes
// a server span per request (otelhttp), continuing the caller's W3C
// traceparent, named after the method and route.
//
// The route label is the http.ServeMux pattern that served the request,
// without its method ("/healthz"), when one more specific than "/" did (the
// pattern is seen when the ServeMux got this middleware's request, or
// through CallerHTTPMiddleware);
// otherwise the path is matched against batchgate's REST templates
// ("/v1/batches/{batch_id}", "/v1/batches/{batch_id}/watch", "/healthz",
// "/readyz", "/metrics"), and anything else is "other". Raw paths, which
// carry batch ids, never become labels. Methods other than the standard
// ones are counted as "other".
//
// The ResponseWriter the handler gets implements http.Flusher and Unwrap,
// so streams flush per event, directly or through http.ResponseController.
func (t *Telemetry) HTTPMiddleware(next http.Handler) http.Handler {
	var h http.Handler = &httpMetrics{t: t, next: next}
	if t.tp != nil {
		h = otelhttp.NewHandler(h, "http.server",
			otelhttp.WithTracerProvider(t.tp),
			otelhttp.WithPropagators(t.propagator),
			otelhttp.WithMeterProvider(noopMeters),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
				return httpMethod(r.Method) + " " + httpRoute(r)
			}),
		)
	}
	return h
}

// httpMetrics is the metrics half of HTTPMiddleware.
type httpMetrics struct {
	t    *Telemetry
	next http.Handler
}

func (h *httpMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, slot := withCallerSlot(r.Context())
	r = r.WithContext(ctx) // http.ServeMux sets r.Pattern on this copy
	sw := &statusWriter{ResponseWriter: w}
	panicked := true
	defer func() {
		code := sw.code
		if code == 0 {
			code = http.StatusOK // what net/http sends for an empty answer
			if panicked {
				code = http.StatusInternalServerError
			}
		}
		if p := slot.pattern.Load(); p != nil && r.Pattern == "" {
			r.Pattern = *p // r is this middleware's copy
		}
		method, route, codeLabel := httpMethod(r.Method), httpRoute(r), statusLabel(code)
		h.t.httpRequests.WithLabelValues(method, route, codeLabel).Inc()
		h.t.httpDuration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		h.t.byCaller.WithLabelValues(h.t.caller(ctx, slot), "http", codeLabel).Inc()
		if h.t.tp != nil {
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.SetName(method + " " + route)
				span.SetAttributes(attribute.String("http.route", route))
			}
		}
	}()
	h.next.ServeHTTP(sw, r)
	panicked = false
}

// statusWriter records the status code of a response. It always
// implements http.Flusher (a no-op when the underlying writer cannot
// flush); FlushError and Unwrap serve http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	code int // 0 until the header is written
}

// WriteHeader records the first final status code and passes it on.
func (w *statusWriter) WriteHeader(code int) {
	// 1xx answers other than 101 are informational: the final one follows.
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write writes to the underlying writer; it implies status 200 if no
// status was written.
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends buffered data to the client.
func (w *statusWriter) Flush() { _ = w.FlushError() }

// FlushError sends buffered data to the client, returning
// http.ErrNotSupported if the underlying writer cannot flush.
func (w *statusWriter) FlushError() error {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the underlying ResponseWriter, for
// http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// httpMethod bounds the method label.
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// routeTemplates are the paths HTTPMiddleware knows when no specific
// ServeMux pattern served a request ("{x}" matches one non-empty segment).
var routeTemplates = []string{
	"/v1/batches/{batch_id}",
	"/v1/batches/{batch_id}/watch",
	"/healthz",
	"/readyz",
	"/metrics",
}

// httpRoute returns the route label of r: its ServeMux pattern, or the
// template its path matches, or "other".
func httpRoute(r *http.Request) string {
	if p := r.Pattern; p != "" {
		// "[METHOD ][HOST]/PATH": the method is a label of its own.
		if i := strings.IndexByte(p, ' '); i >= 0 {
			p = strings.TrimLeft(p[i+1:], " \t")
		}
		if p != "/" { // the catch-all says nothing
			return p
		}
	}
	return matchRoute(r.URL.Path)
}

// matchRoute returns the template of routeTemplates that path matches, or
// "other".
func matchRoute(path string) string {
	for _, tmpl := range routeTemplates {
		if matchTemplate(tmpl, path) {
			return tmpl
		}
	}
	return "other"
}

func matchTemplate(tmpl, path string) bool {
	for {
		ti := strings.IndexByte(tmpl, '{')
		if ti < 0 {
			return tmpl == path
		}
		if !strings.HasPrefix(path, tmpl[:ti]) {
			return false
		}
		path, tmpl = path[ti:], tmpl[ti:]
		// One non-empty segment for the variable.
		seg := strings.IndexByte(path, '/')
		if seg < 0 {
			seg = len(path)
		}
		if seg == 0 {
			return false
		}
		path = path[seg:]
		tmpl = tmpl[strings.IndexByte(tmpl, '}')+1:]
	}
}

// statusLabel returns the code label of an HTTP status.
func statusLabel(code int) string {
	switch code {
	case http.StatusOK:
		return "200"
	case http.StatusNotFound:
		return "404"
	}
	if code < 100 || code > 999 {
		return "other"
	}
	return strconv.Itoa(code)
}
