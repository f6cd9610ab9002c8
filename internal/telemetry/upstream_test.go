package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// fakeUpstream answers GET /v1/batches/{id}: 429 for "limited", 503 for
// "down", and 200 after slowBody of delay mid-body for "slow"; 200
// otherwise.
func fakeUpstream(slowBody time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/v1/batches/") {
		case "limited":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case "down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "slow":
			_, _ = io.WriteString(w, `{"id":`)
			http.NewResponseController(w).Flush()
			select {
			case <-time.After(slowBody):
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, `"slow"}`)
		default:
			_, _ = io.WriteString(w, `{"id":"ok"}`)
		}
	})
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return "http://" + addr
}

// upstreamClient returns a client whose transport, a fresh one closed at the
// end of the test, is wrapped by tel.
func upstreamClient(t testing.TB, tel *Telemetry) *http.Client {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: tel.UpstreamTransport(base)}
}

// get does what the upstream client does: GET, read and close the body.
func get(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func TestUpstreamMetrics(t *testing.T) {
	t.Parallel()
	const slow = 150 * time.Millisecond
	for _, tracing := range []bool{false, true} {
		t.Run(map[bool]string{false: "tracing off", true: "tracing on"}[tracing], func(t *testing.T) {
			t.Parallel()
			opts := Options{}
			if tracing {
				opts.spanExporter = tracetest.NewInMemoryExporter()
			}
			tel := newTelemetry(t, opts)
			up := httptest.NewServer(fakeUpstream(slow))
			defer up.Close()
			client := upstreamClient(t, tel)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			for _, c := range []struct {
				url  string
				want int // 0: a transport error
			}{
				{up.URL + "/v1/batches/ok", 200},
				{up.URL + "/v1/batches/slow", 200},
				{up.URL + "/v1/batches/limited", 429},
				{up.URL + "/v1/batches/down", 503},
				{closedURL(t) + "/v1/batches/ok", 0},
			} {
				code, err := get(ctx, client, c.url)
				if c.want == 0 {
					if err == nil {
						t.Errorf("GET %s: no error", c.url)
					}
					continue
				}
				if err != nil || code != c.want {
					t.Errorf("GET %s: %d, %v; want %d", c.url, code, err, c.want)
				}
			}

			m := scrape(t, tel)
			for code, want := range map[string]float64{"200": 2, "429": 1, "503": 1, "error": 1} {
				l := L("code", code)
				if got := m.value(t, "batchgate_upstream_requests_total", l); got != want {
					t.Errorf("batchgate_upstream_requests_total%v = %v, want %v", l, got, want)
				}
				if got := m.value(t, "batchgate_upstream_request_duration_seconds", l); got != want {
					t.Errorf("batchgate_upstream_request_duration_seconds%v count = %v, want %v", l, got, want)
				}
			}
			// The duration runs until the body is read: the slow body's
			// pause counts.
			h := m.series("batchgate_upstream_request_duration_seconds", L("code", "200"))[0].GetHistogram()
			if sum := time.Duration(h.GetSampleSum() * float64(time.Second)); sum < slow {
				t.Errorf("200s took %v in all, want ≥ %v (the slow body)", sum, slow)
			}
		})
	}
}

// TestUpstreamBodyTiming: the duration is observed once, at EOF or Close,
// whichever comes first, and at once for a response without a body.
func TestUpstreamBodyTiming(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body io.ReadCloser
		use  func(*http.Response)
	}{
		{"read to EOF then closed", io.NopCloser(strings.NewReader("abc")), func(r *http.Response) {
			_, _ = io.ReadAll(r.Body)
			_ = r.Body.Close()
		}},
		{"closed unread", io.NopCloser(strings.NewReader("abc")), func(r *http.Response) { _ = r.Body.Close() }},
		{"closed twice", io.NopCloser(strings.NewReader("abc")), func(r *http.Response) { _ = r.Body.Close(); _ = r.Body.Close() }},
		{"no body", http.NoBody, func(*http.Response) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tel := newTelemetry(t, Options{})
			rt := tel.UpstreamTransport(roundTripFunc(func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: http.StatusOK, Body: tc.body}, nil
			}))
			resp, err := rt.RoundTrip(httptest.NewRequest(http.MethodGet, "http://upstream/v1/batches/b", nil))
			if err != nil {
				t.Fatal(err)
			}
			tc.use(resp)
			m := scrape(t, tel)
			if got := m.value(t, "batchgate_upstream_request_duration_seconds", L("code", "200")); got != 1 {
				t.Errorf("observations: %v, want 1", got)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestUpstreamRoute(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/v1/batches/batch_1":          "/v1/batches/{batch_id}",
		"/proxy/v1/batches/batch_1":    "/v1/batches/{batch_id}",
		"/v1/batches/batch_1/watch":    "/v1/batches/{batch_id}/watch",
		"/v1/batches/batch_1/cancel":   "other",
		"/v1/files/file_1":             "other",
		"/batches/batch_1":             "other",
		"/proxy/v1/batches/batch_1/x/": "other",
	} {
		if got := upstreamRoute(path); got != want {
			t.Errorf("upstreamRoute(%q) = %q, want %q", path, got, want)
		}
	}
}
