package telemetry

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// fakeREST stands for grpc-gateway behind the catch-all pattern: GET
// /v1/batches/{id} (404 for "batch_nope") and GET /v1/batches/{id}/watch (three
// flushed NDJSON lines); 405 for other methods there, 404 elsewhere. It
// records the route template of the paths it knows in the callinfo.Record,
// before authenticating (fakeHTTPAuth), as the gateway's REST client does
// with grpc-gateway's path pattern.
func fakeREST(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/batches/")
	if !ok || rest == "" {
		if fakeHTTPAuth(w, r) {
			http.NotFound(w, r)
		}
		return
	}
	route := "/v1/batches/{batch_id}"
	if strings.HasSuffix(rest, "/watch") {
		route += "/watch"
	}
	callinfo.FromContext(r.Context()).SetRoute(route)
	if !fakeHTTPAuth(w, r) {
		return
	}
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if id, ok := strings.CutSuffix(rest, "/watch"); ok {
		w.Header().Set("Content-Type", "application/x-ndjson")
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, `{"id":%q,"sequence":%d}`+"\n", id, i+1)
			_ = rc.Flush()
		}
		return
	}
	if rest == "batch_nope" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":%q}`, rest)
}

// testMux is laid out like the gateway's: specific patterns, and the REST
// front behind "/"; each handler authenticates (fakeHTTPAuth).
func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if fakeHTTPAuth(w, r) {
			_, _ = io.WriteString(w, "ok\n")
		}
	})
	mux.HandleFunc("GET /v2/things/{id}", func(w http.ResponseWriter, r *http.Request) { fakeHTTPAuth(w, r) })
	mux.HandleFunc("/", fakeREST)
	return mux
}

// fakeHTTPAuth stands for authentication: the caller's name is its
// X-Caller header, written into the callinfo.Record as auth does; without
// one the request gets 401 and fakeHTTPAuth returns false.
func fakeHTTPAuth(w http.ResponseWriter, r *http.Request) bool {
	name := r.Header.Get("X-Caller")
	if name == "" {
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	callinfo.FromContext(r.Context()).SetCaller(callinfo.Caller{Name: name})
	return true
}

func TestHTTPMetrics(t *testing.T) {
	t.Parallel()
	requests := []struct {
		method, path, caller string
		want                 int
	}{
		{"GET", "/v1/batches/batch_a", "billing", 200},
		{"GET", "/v1/batches/batch_b", "billing", 200},
		{"GET", "/v1/batches/batch_nope", "billing", 404},
		{"GET", "/v1/batches/batch_a/watch", "reports", 200},
		{"GET", "/healthz", "reports", 200},
		{"GET", "/v2/things/42", "reports", 200},
		{"GET", "/nowhere/batch_a", "reports", 404},
		{"BREW", "/v1/batches/batch_a", "reports", 405},
		{"GET", "/v1/batches/batch_a", "", 401},
	}
	type series struct {
		name   string
		labels map[string]string
		want   float64
	}
	want := []series{
		{"batchgate_http_requests_total", L("method", "GET", "route", "/v1/batches/{batch_id}", "code", "200"), 2},
		{"batchgate_http_requests_total", L("method", "GET", "route", "/v1/batches/{batch_id}", "code", "404"), 1},
		{"batchgate_http_requests_total", L("method", "GET", "route", "/v1/batches/{batch_id}", "code", "401"), 1},
		{"batchgate_http_requests_total", L("method", "GET", "route", "/v1/batches/{batch_id}/watch", "code", "200"), 1},
		{"batchgate_http_requests_total", L("method", "GET", "route", "/healthz", "code", "200"), 1},
		{"batchgate_http_requests_total", L("method", "GET", "route", "/v2/things/{id}", "code", "200"), 1},
		{"batchgate_http_requests_total", L("method", "GET", "route", "other", "code", "404"), 1},
		{"batchgate_http_requests_total", L("method", "other", "route", "/v1/batches/{batch_id}", "code", "405"), 1},
		{"batchgate_http_request_duration_seconds", L("method", "GET", "route", "/v1/batches/{batch_id}"), 4},
		{"batchgate_http_request_duration_seconds", L("method", "GET", "route", "/v1/batches/{batch_id}/watch"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "billing", "transport", "http", "code", "200"), 2},
		{"batchgate_requests_by_caller_total", L("caller", "billing", "transport", "http", "code", "404"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "reports", "transport", "http", "code", "200"), 3},
		{"batchgate_requests_by_caller_total", L("caller", "reports", "transport", "http", "code", "404"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "reports", "transport", "http", "code", "405"), 1},
		{"batchgate_requests_by_caller_total", L("caller", "unknown", "transport", "http", "code", "401"), 1},
	}
	for _, tracing := range []bool{false, true} {
		t.Run(fmt.Sprintf("tracing=%v", tracing), func(t *testing.T) {
			t.Parallel()
			opts := Options{}
			if tracing {
				opts.spanExporter = tracetest.NewInMemoryExporter()
			}
			tel := newTelemetry(t, opts)
			h := callinfo.HTTPMiddleware(tel.HTTPMiddleware(testMux()))
			for _, rq := range requests {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(rq.method, rq.path, nil)
				if rq.caller != "" {
					req.Header.Set("X-Caller", rq.caller)
				}
				h.ServeHTTP(rec, req)
				if rec.Code != rq.want {
					t.Fatalf("%s %s: %d, want %d", rq.method, rq.path, rec.Code, rq.want)
				}
			}
			m := scrape(t, tel)
			for _, s := range want {
				if got := m.value(t, s.name, s.labels); got != s.want {
					t.Errorf("%s%v = %v, want %v", s.name, s.labels, got, s.want)
				}
			}
			if n := len(m.series("batchgate_http_requests_total", nil)); n != 8 {
				t.Errorf("%d HTTP series, want 8: %v", n, m.labelSets("batchgate_http_requests_total"))
			}
			for _, name := range []string{"batchgate_http_requests_total", "batchgate_requests_by_caller_total"} {
				for _, ls := range m.labelSets(name) {
					for k, v := range ls {
						if strings.Contains(v, "batch_a") || strings.Contains(v, "batch_b") || strings.Contains(v, "batch_nope") || strings.Contains(v, "42") {
							t.Errorf("%s: label %s=%q holds an id", name, k, v)
						}
					}
				}
			}
		})
	}
}

// TestHTTPStreamingFlush: through the middleware, a streaming handler can
// flush each event (http.Flusher and http.ResponseController both work) and
// the client reads each before the next is written.
func TestHTTPStreamingFlush(t *testing.T) {
	t.Parallel()
	for _, tracing := range []bool{false, true} {
		t.Run(fmt.Sprintf("tracing=%v", tracing), func(t *testing.T) {
			t.Parallel()
			opts := Options{}
			if tracing {
				opts.spanExporter = tracetest.NewInMemoryExporter()
			}
			tel := newTelemetry(t, opts)
			const events = 4
			ack := make(chan struct{})
			handlerErr := make(chan error, 1)
			stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				handlerErr <- func() error {
					f, ok := w.(http.Flusher)
					if !ok {
						return fmt.Errorf("%T is not an http.Flusher", w)
					}
					rc := http.NewResponseController(w)
					// Unwrap reaches the server's writer: deadlines work.
					if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
						return fmt.Errorf("SetWriteDeadline: %w", err)
					}
					w.Header().Set("Content-Type", "application/x-ndjson")
					for i := range events {
						fmt.Fprintf(w, `{"sequence":%d}`+"\n", i+1)
						if i%2 == 0 {
							f.Flush()
						} else if err := rc.Flush(); err != nil {
							return fmt.Errorf("ResponseController.Flush: %w", err)
						}
						// The next event is written only once the client
						// has read this one: without a working flush, the
						// client would wait for the server's buffer forever.
						select {
						case <-ack:
						case <-r.Context().Done():
							return fmt.Errorf("event %d: client gone: %w", i+1, r.Context().Err())
						}
					}
					return nil
				}()
			})
			srv := httptest.NewServer(routed(tel, "/v1/batches/{batch_id}/watch", stream))
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/batches/batch_a/watch", nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for i := range events {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("event %d: %v (not flushed?)", i+1, err)
				}
				if want := fmt.Sprintf(`{"sequence":%d}`+"\n", i+1); line != want {
					t.Fatalf("event %d: %q, want %q", i+1, line, want)
				}
				ack <- struct{}{}
			}
			if _, err := io.ReadAll(br); err != nil {
				t.Fatal(err)
			}
			if err := <-handlerErr; err != nil {
				t.Fatal(err)
			}
			m := scrape(t, tel)
			l := L("method", "GET", "route", "/v1/batches/{batch_id}/watch", "code", "200")
			if got := m.value(t, "batchgate_http_requests_total", l); got != 1 {
				t.Errorf("batchgate_http_requests_total%v = %v, want 1", l, got)
			}
		})
	}
}

// TestStatusWriter: the recorded status, and flushing a writer that cannot.
func TestStatusWriter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, "200"},
		{"body only", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "x") }, "200"},
		{"flush only", func(w http.ResponseWriter, _ *http.Request) { w.(http.Flusher).Flush() }, "200"},
		{"status", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }, "418"},
		{"second status ignored", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			w.WriteHeader(http.StatusInternalServerError)
		}, "202"},
		{"informational first", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
		}, "201"},
		{"panic before writing", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }, "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tel := newTelemetry(t, Options{})
			func() {
				defer func() { _ = recover() }()
				tel.HTTPMiddleware(tc.handler).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
			}()
			m := scrape(t, tel)
			if got := m.labelValues("batchgate_http_requests_total", "code"); len(got) != 1 || got[0] != tc.want {
				t.Errorf("codes %v, want [%s]", got, tc.want)
			}
		})
	}

	t.Run("writer that cannot flush", func(t *testing.T) {
		t.Parallel()
		tel := newTelemetry(t, Options{})
		var flushErr error
		h := tel.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			// httpsnoop mirrors the underlying writer's interfaces.
			if f, ok := w.(http.Flusher); ok {
				f.Flush() // must not panic
				t.Errorf("%T claims http.Flusher over a writer that cannot flush", w)
			}
			flushErr = http.NewResponseController(w).Flush()
		}))
		h.ServeHTTP(struct{ http.ResponseWriter }{httptest.NewRecorder()}, httptest.NewRequest(http.MethodGet, "/", nil))
		if !errors.Is(flushErr, http.ErrNotSupported) {
			t.Errorf("ResponseController.Flush: %v, want http.ErrNotSupported", flushErr)
		}
	})
}

func TestHTTPRoute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, route, path, want string
	}{
		// The route recorded in the callinfo.Record (grpc-gateway's path
		// pattern, or the ServeMux pattern the gateway records) wins.
		{"", "/v1/batches/{batch_id}", "/v1/batches/batch_1", "/v1/batches/{batch_id}"},
		{"/", "/v1/batches/{batch_id}", "/v1/batches/batch_1", "/v1/batches/{batch_id}"},
		{"/", "/v1/batches/{batch_id}/watch", "/v1/batches/batch_1/watch", "/v1/batches/{batch_id}/watch"},
		{"/", "GET /healthz", "/healthz", "/healthz"},
		{"GET /readyz", "GET /v1/files/{id}", "/v1/files/file_1", "/v1/files/{id}"},
		// Without one, this middleware's request's own pattern, then
		// "other": raw paths never become labels.
		{"/", "", "/v1/batches/", "other"},
		{"/", "", "/v1/batches//watch", "other"},
		{"/", "", "/v1/batches/a/b", "other"},
		{"/", "", "/v1/batches/batch_1", "other"},
		{"", "", "/healthz", "other"},
		{"/", "", "/", "other"},
		{"/", "", "/../etc/passwd", "other"},
		{"GET /readyz", "", "/readyz", "/readyz"},
		{"GET /v1/files/{id}", "", "/v1/files/file_1", "/v1/files/{id}"},
		{"POST   /x/{y...}", "", "/x/1/2", "/x/{y...}"},
		{"GET example.com/", "", "/anything", "example.com/"},
	} {
		t.Run(tc.pattern+" "+tc.route+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "http://h"+tc.path, nil)
			r.Pattern = tc.pattern
			if tc.route != "" {
				rec := callinfo.New("")
				rec.SetRoute(tc.route)
				r = r.WithContext(callinfo.NewContext(r.Context(), rec))
			}
			if got := httpRoute(r); got != tc.want {
				t.Errorf("httpRoute = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMatchRoute: the upstream path templates, for upstream span names.
func TestMatchRoute(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/v1/batches/batch_1":       "/v1/batches/{batch_id}",
		"/v1/batches/batch_1/watch": "/v1/batches/{batch_id}/watch",
		"/v1/batches/":              "other",
		"/v1/batches//watch":        "other",
		"/v1/batches/a/b":           "other",
		"/v1/batches/a/watch/x":     "other",
		"/v1/batches/a/":            "other",
		"/v1/batches":               "other",
		"/healthz":                  "other",
		"/":                         "other",
		"/../etc/passwd":            "other",
	} {
		if got := matchRoute(path); got != want {
			t.Errorf("matchRoute(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestHTTPMethod(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"GET": "GET", "HEAD": "HEAD", "POST": "POST", "DELETE": "DELETE", "OPTIONS": "OPTIONS",
		"get": "other", "BREW": "other", "": "other", "PROPFIND": "other",
	} {
		if got := httpMethod(in); got != want {
			t.Errorf("httpMethod(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHTTPCallerFromInProcessInterceptors: REST calls authenticated by
// gRPC interceptors run in process under HTTPMiddleware (as the gateway
// does for unary REST calls) get their caller label through the request's
// callinfo.Record, which authentication fills.
func TestHTTPCallerFromInProcessInterceptors(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, Options{})
	chain := []grpc.UnaryServerInterceptor{fakeAuth}
	h := callinfo.HTTPMiddleware(tel.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What grpc-gateway does: headers become incoming metadata.
		ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("x-caller", r.Header.Get("X-Caller")))
		var call grpc.UnaryHandler = func(context.Context, any) (any, error) { return nil, nil }
		for i := len(chain) - 1; i >= 0; i-- {
			next, ic := call, chain[i]
			call = func(ctx context.Context, req any) (any, error) {
				return ic(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/batch.v1.BatchService/GetBatch"}, next)
			}
		}
		if _, err := call(ctx, nil); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})))
	for _, caller := range []string{"billing", "billing", "reports"} {
		req := httptest.NewRequest(http.MethodGet, "/v1/batches/batch_a", nil)
		req.Header.Set("X-Caller", caller)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	m := scrape(t, tel)
	for caller, want := range map[string]float64{"billing": 2, "reports": 1} {
		l := L("caller", caller, "transport", "http", "code", "200")
		if got := m.value(t, "batchgate_requests_by_caller_total", l); got != want {
			t.Errorf("batchgate_requests_by_caller_total%v = %v, want %v", l, got, want)
		}
	}
}
