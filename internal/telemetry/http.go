package telemetry

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/felixge/httpsnoop"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// HTTPMiddleware instruments an HTTP handler: it counts requests in
// batchgate_http_requests_total{method,route,code} and
// batchgate_requests_by_caller_total, and times them in
// batchgate_http_request_duration_seconds. When tracing is on it also makes
// a server span per request (otelhttp), continuing the caller's W3C
// traceparent, named after the method and route.
//
// The caller and the route are read from the request's callinfo.Record
// (put there by callinfo.HTTPMiddleware, outside this one) after the
// handler has returned: the caller that authentication recorded, and the
// route template that the muxes recorded (grpc-gateway's path pattern, or
// the http.ServeMux pattern), without its method. Without a recorded route
// the ServeMux pattern of this middleware's own request is used, when one
// more specific than "/" served it; anything else is "other". Raw paths,
// which carry batch ids, never become labels. Methods other than the
// standard ones are counted as "other".
//
// The status is captured with httpsnoop: the ResponseWriter the handler
// gets has the same optional interfaces (http.Flusher, http.Hijacker...)
// as the one this middleware got, and Unwrap, so streams flush per event,
// directly or through http.ResponseController.
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
	code := 0 // the first final status, 0 until the header is written
	wrote := func() {
		if code == 0 {
			code = http.StatusOK
		}
	}
	w = httpsnoop.Wrap(w, httpsnoop.Hooks{
		WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
			return func(c int) {
				// 1xx answers other than 101 are informational: the final
				// one follows.
				if code == 0 && (c >= 200 || c == http.StatusSwitchingProtocols) {
					code = c
				}
				next(c)
			}
		},
		Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
			return func(p []byte) (int, error) { wrote(); return next(p) }
		},
		WriteString: func(next httpsnoop.WriteStringFunc) httpsnoop.WriteStringFunc {
			return func(s string) (int, error) { wrote(); return next(s) }
		},
		ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
			return func(src io.Reader) (int64, error) { wrote(); return next(src) }
		},
		Flush: func(next httpsnoop.FlushFunc) httpsnoop.FlushFunc {
			return func() { wrote(); next() }
		},
	})
	panicked := true
	defer func() {
		if code == 0 {
			code = http.StatusOK // what net/http sends for an empty answer
			if panicked {
				code = http.StatusInternalServerError
			}
		}
		rec := callinfo.FromContext(r.Context())
		method, route, codeLabel := httpMethod(r.Method), httpRoute(r), statusLabel(code)
		h.t.httpRequests.WithLabelValues(method, route, codeLabel).Inc()
		h.t.httpDuration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		h.t.byCaller.WithLabelValues(h.t.caller(rec), "http", codeLabel).Inc()
		if h.t.tp != nil {
			if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
				span.SetName(method + " " + route)
				span.SetAttributes(attribute.String("http.route", route))
			}
		}
	}()
	h.next.ServeHTTP(w, r)
	panicked = false
}

// httpMethod bounds the method label.
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// httpRoute returns the route label of r: the route recorded in its
// callinfo.Record, else its own ServeMux pattern, without the method, or
// "other".
func httpRoute(r *http.Request) string {
	for _, p := range []string{callinfo.FromContext(r.Context()).Route(), r.Pattern} {
		// "[METHOD ][HOST]/PATH": the method is a label of its own.
		if i := strings.IndexByte(p, ' '); i >= 0 {
			p = strings.TrimLeft(p[i+1:], " \t")
		}
		if p != "" && p != "/" { // the catch-all says nothing
			return p
		}
	}
	return "other"
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
