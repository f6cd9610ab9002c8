package telemetry

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// UpstreamTransport wraps base (http.DefaultTransport when nil), the
// transport of the upstream client, for use as its http.Client's Transport.
// Each request (attempt) is counted in batchgate_upstream_requests_total by
// status code, "error" when no response came back (refused, reset, timed
// out, cancelled), and timed in
// batchgate_upstream_request_duration_seconds until its body is read to
// the end or closed. When tracing is on each request also gets a client
// span (otelhttp), named "GET /v1/batches/{batch_id}", and a W3C
// traceparent header; when tracing is off no header is added.
func (t *Telemetry) UpstreamTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if t.tp != nil {
		base = otelhttp.NewTransport(base,
			otelhttp.WithTracerProvider(t.tp),
			// W3C trace context only: baggage could carry internal
			// data to a third party.
			otelhttp.WithPropagators(t.propagator),
			otelhttp.WithMeterProvider(noopMeters),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
				return r.Method + " " + upstreamRoute(r.URL.Path)
			}),
		)
	}
	return &upstreamTransport{t: t, next: base}
}

// upstreamRoute returns the template of an upstream path, whatever the
// base URL's path prefix, or "other".
func upstreamRoute(path string) string {
	if i := strings.Index(path, "/v1/"); i >= 0 {
		return matchRoute(path[i:])
	}
	return "other"
}

// upstreamTemplates are the upstream paths the client calls ("{x}"
// matches one non-empty segment), for span names.
var upstreamTemplates = []string{
	"/v1/batches/{batch_id}",
	"/v1/batches/{batch_id}/watch",
}

// matchRoute returns the template of upstreamTemplates that path matches,
// or "other".
func matchRoute(path string) string {
	for _, tmpl := range upstreamTemplates {
		if matchTemplate(tmpl, path) {
			return tmpl
		}
	}
	return "other"
}

type upstreamTransport struct {
	t    *Telemetry
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (u *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := u.next.RoundTrip(req)
	if err != nil {
		u.t.upRequests.WithLabelValues("error").Inc()
		u.t.upDuration.WithLabelValues("error").Observe(time.Since(start).Seconds())
		return resp, err
	}
	code := statusLabel(resp.StatusCode)
	u.t.upRequests.WithLabelValues(code).Inc()
	obs := u.t.upDuration.WithLabelValues(code)
	if _, rw := resp.Body.(io.Writer); resp.Body == nil || resp.Body == http.NoBody || rw {
		// Nothing to read, or a switched protocol: done now.
		obs.Observe(time.Since(start).Seconds())
		return resp, nil
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, obs: obs, start: start}
	return resp, nil
}

// timedBody observes the duration of its request when it is read to the
// end or closed, whichever comes first.
type timedBody struct {
	io.ReadCloser
	obs   prometheus.Observer
	start time.Time
	done  atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.finish()
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.finish()
	return b.ReadCloser.Close()
}

func (b *timedBody) finish() {
	if b.done.CompareAndSwap(false, true) {
		b.obs.Observe(time.Since(b.start).Seconds())
	}
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
