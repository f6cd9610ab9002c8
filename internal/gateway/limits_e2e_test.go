package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/limit"
	"github.com/batchgate/batchgate/internal/simulator"
)

// threeCallers is key mode with the tokens of alice, bob and carol.
func threeCallers(t *testing.T) func(*config.Config) {
	return keyMode(writeTokens(t, "", "alice "+tokAlice+" all", "bob "+tokBob+" all", "carol "+tokCarol+" all"))
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// checkExhausted checks a call refused by a limit: ResourceExhausted with
// the reason, or a 429 with the rate_limit_error envelope; and, when
// wantRetry, a RetryInfo / Retry-After of at least a second.
func checkExhausted(t *testing.T, o outcome, err error, reason string, wantRetry bool) {
	t.Helper()
	if o.httpStatus != 0 {
		if o.httpStatus != http.StatusTooManyRequests || o.errType != "rate_limit_error" {
			t.Fatalf("got HTTP %d type %q, want 429 rate_limit_error", o.httpStatus, o.errType)
		}
		ra := o.header.Get("Retry-After")
		if n, err := strconv.Atoi(ra); wantRetry && (err != nil || n < 1) {
			t.Errorf("Retry-After %q, want a number of seconds", ra)
		} else if !wantRetry && ra != "" {
			t.Errorf("Retry-After %q where waiting does not help", ra)
		}
		return
	}
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	if info := errorInfo(st); info == nil || info.GetReason() != reason || info.GetMetadata()["http_status"] != "429" {
		t.Errorf("ErrorInfo %v, want reason %s and http_status 429", info, reason)
	}
	if d := retryDelay(st); wantRetry && d <= 0 {
		t.Errorf("no RetryInfo on %v", st)
	} else if !wantRetry && d != 0 {
		t.Errorf("RetryInfo %v where waiting does not help", d)
	}
}

// watchRefused opens a gRPC watch that a limit must refuse and checks its
// error.
func watchRefused(t *testing.T, e *e2e, authz, reason string, wantRetry bool) {
	t.Helper()
	w := e.watchAs(t, authz, simulator.DemoValidating)
	defer w.cancel()
	select {
	case ev := <-w.events:
		t.Fatalf("the watch got %v; want it refused", ev)
	case err := <-w.done:
		checkExhausted(t, outcome{}, err, reason, wantRetry)
	case <-time.After(waitLimit):
		t.Fatal("the watch was neither refused nor served")
	}
}

// restWatchRefused opens a REST watch that a limit must refuse and checks
// the 429.
func restWatchRefused(t *testing.T, e *e2e, authz string, wantRetry bool) {
	t.Helper()
	o := restWatchFirst(t, e, authz, simulator.DemoValidating)
	checkExhausted(t, o, nil, limit.ReasonTooManyWatchers, wantRetry)
}

// watchOK opens a gRPC watch that must be served; it returns the watcher
// after its snapshot.
func watchOK(t *testing.T, e *e2e, authz string) *watcher {
	t.Helper()
	w := e.watchAs(t, authz, simulator.DemoValidating)
	if ev := w.next(t); ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
		t.Fatalf("first event %v", ev)
	}
	return w
}

func restWatchOK(t *testing.T, e *e2e, authz string) *restWatcher {
	t.Helper()
	w := openRESTWatch(t, e, simulator.DemoValidating, authz, nil)
	if w.resp.StatusCode != http.StatusOK {
		t.Fatalf("REST watch: status %d", w.resp.StatusCode)
	}
	if ev := w.next(t); ev.Type != "snapshot" {
		t.Fatalf("first REST event %+v", ev)
	}
	return w
}

// eventuallyWatch retries a watch until the slot a closed one held is
// free again (the server notices the cancel asynchronously).
func eventuallyWatch(t *testing.T, e *e2e, authz string) *watcher {
	t.Helper()
	var w *watcher
	waitFor(t, "a watcher slot to be released", func() bool {
		w = e.watchAs(t, authz, simulator.DemoValidating)
		select {
		case <-w.events:
			return true
		case err := <-w.done:
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("watch: %v", err)
			}
			return false
		case <-time.After(waitLimit):
			t.Fatal("no answer to a watch")
			return false
		}
	})
	return w
}

// TestWatchersPerCaller: with one watch stream per caller, a caller's
// second (gRPC or REST) is refused, others still get in, unary calls are
// not counted, and a closed stream frees the slot.
func TestWatchersPerCaller(t *testing.T) {
	t.Parallel()
	e := startWith(t, gatewaytest.Options{}, threeCallers(t), slowPolls, quietHeartbeat, func(c *config.Config) {
		c.Limits.MaxWatchersPerCaller = 1
	})
	alice, bob := bearer(tokAlice), bearer(tokBob)

	first := watchOK(t, e, alice)
	watchRefused(t, e, alice, limit.ReasonTooManyWatchers, false)
	restWatchRefused(t, e, alice, false)

	bobs := restWatchOK(t, e, bob) // REST and gRPC count alike
	watchRefused(t, e, bob, limit.ReasonTooManyWatchers, false)
	watchOK(t, e, bearer(tokCarol))

	if o := grpcGet(t, e, alice, simulator.DemoCompleted); !o.ok() {
		t.Fatalf("alice's GetBatch while she watches: %+v", o)
	}
	if o := restGet(t, e, bob, simulator.DemoCompleted); !o.ok() {
		t.Fatalf("bob's GetBatch while he watches: %+v", o)
	}

	first.cancel()
	eventuallyWatch(t, e, alice)
	bobs.close()
	eventuallyWatch(t, e, bob)
}

// TestWatchersTotal: with two watch streams in all, the third caller is
// refused with a hint to retry, until a stream closes.
func TestWatchersTotal(t *testing.T) {
	t.Parallel()
	e := startWith(t, gatewaytest.Options{}, threeCallers(t), slowPolls, quietHeartbeat, func(c *config.Config) {
		c.Limits.MaxWatchers = 2
		c.Limits.MaxWatchersPerCaller = 0
	})
	watchOK(t, e, bearer(tokAlice))
	bobs := restWatchOK(t, e, bearer(tokBob))
	carol := bearer(tokCarol)
	watchRefused(t, e, carol, limit.ReasonTooManyWatchers, true)
	restWatchRefused(t, e, carol, true)
	bobs.close()
	eventuallyWatch(t, e, carol)
}

// TestCallerRate: at one call a second (burst two), a caller's first two
// quick calls pass and a following one is refused with a retry hint, over
// gRPC and REST; other callers and health checks are not affected.
func TestCallerRate(t *testing.T) {
	t.Parallel()
	type call func(t *testing.T, e *e2e, authz string) (outcome, error)
	grpcCall := func(t *testing.T, e *e2e, authz string) (outcome, error) {
		_, err := e.Client.GetBatch(withAuthz(t.Context(), authz), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
		return outcome{code: status.Code(err)}, err
	}
	restCall := func(t *testing.T, e *e2e, authz string) (outcome, error) {
		return restGet(t, e, authz, simulator.DemoCompleted), nil
	}
	grpcWatch := func(t *testing.T, e *e2e, authz string) (outcome, error) {
		ctx, cancel := context.WithCancel(withAuthz(t.Context(), authz))
		defer cancel()
		s, err := e.Client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: simulator.DemoCompleted})
		if err == nil {
			_, err = s.Recv()
		}
		return outcome{code: status.Code(err)}, err
	}
	for _, tt := range []struct {
		name string
		call call
	}{{"grpc GetBatch", grpcCall}, {"rest GetBatch", restCall}, {"grpc WatchBatch", grpcWatch}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startWith(t, gatewaytest.Options{}, threeCallers(t), func(c *config.Config) { c.Limits.CallerRPS = 1 })
			alice := bearer(tokAlice)
			// The bucket starts full with two tokens: two calls pass.
			for i := range 2 {
				if o, err := tt.call(t, e, alice); !o.ok() {
					t.Fatalf("call %d: %+v %v", i+1, o, err)
				}
			}
			// The third is refused unless a second passed since the first
			// (a slow machine); keep calling until one is, which at one
			// call a second takes a few calls at most.
			refused := false
			for i := 3; i <= 50 && !refused; i++ {
				o, err := tt.call(t, e, alice)
				if o.ok() {
					t.Logf("call %d passed (a token came back)", i)
					continue
				}
				checkExhausted(t, o, err, limit.ReasonRateLimited, true)
				refused = true
			}
			if !refused {
				t.Fatal("50 quick calls at one call a second, none refused")
			}
			// Another caller has its own bucket; health checks have none.
			if o, err := tt.call(t, e, bearer(tokBob)); !o.ok() {
				t.Fatalf("bob's first call: %+v %v", o, err)
			}
			for range 5 {
				if _, err := healthpb.NewHealthClient(e.Conn).Check(withAuthz(t.Context(), alice), &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatalf("health check of a rate-limited caller: %v", err)
				}
				if resp, _ := restRequest(t, e, http.MethodGet, "/readyz", alice, nil, nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("/readyz for a rate-limited caller: %d", resp.StatusCode)
				}
			}
		})
	}
}

// TestRequestSizeLimits: oversized gRPC messages are refused by gRPC
// (4 MiB), oversized REST requests get a 4xx, and the gateway keeps
// serving.
func TestRequestSizeLimits(t *testing.T) {
	t.Parallel()
	e := startWith(t, gatewaytest.Options{}, threeCallers(t))
	alice := bearer(tokAlice)
	huge := strings.Repeat("b", 70_000)
	tooBig := strings.Repeat("b", 5<<20) // over the gRPC message limit
	// Headers are capped at 64 KiB, give or take the server's read
	// buffer on a reused connection: well over it.
	hugeHeader := strings.Repeat("h", 200_000)

	t.Run("grpc GetBatch", func(t *testing.T) {
		_, err := e.Client.GetBatch(withAuthz(t.Context(), alice), &batchv1.GetBatchRequest{BatchId: tooBig})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("GetBatch with a 5 MB id: %v, want ResourceExhausted", err)
		}
	})
	t.Run("grpc WatchBatch", func(t *testing.T) {
		s, err := e.Client.WatchBatch(withAuthz(t.Context(), alice), &batchv1.WatchBatchRequest{BatchId: tooBig})
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("WatchBatch with a 5 MB id: %v, want ResourceExhausted", err)
		}
	})
	t.Run("grpc unauthenticated", func(t *testing.T) {
		// The size check comes first: no token, still ResourceExhausted,
		// and the message is never read into the handler.
		_, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: tooBig})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("GetBatch with a 5 MB id and no token: %v, want ResourceExhausted", err)
		}
	})
	t.Run("grpc just under the limit", func(t *testing.T) {
		// A large id that fits is refused by the id check, not the size.
		_, err := e.Client.GetBatch(withAuthz(t.Context(), alice), &batchv1.GetBatchRequest{BatchId: huge})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("GetBatch with a 70 KB id: %v, want InvalidArgument", err)
		}
	})

	for _, tt := range []struct {
		name   string
		method string
		path   string
		hdr    http.Header
		body   []byte
		want   int
	}{
		{"long id", http.MethodGet, "/v1/batches/" + huge[:1000], nil, nil, http.StatusBadRequest},
		{"huge path", http.MethodGet, "/v1/batches/" + hugeHeader, nil, nil, http.StatusRequestHeaderFieldsTooLarge},
		{"huge header", http.MethodGet, "/v1/batches/" + simulator.DemoCompleted, http.Header{"X-Junk": {hugeHeader}}, nil, http.StatusRequestHeaderFieldsTooLarge},
		{"huge authorization", http.MethodGet, "/v1/batches/" + simulator.DemoCompleted, http.Header{"Authorization": {"Bearer " + hugeHeader}}, nil, http.StatusRequestHeaderFieldsTooLarge},
		{"long token", http.MethodGet, "/v1/batches/" + simulator.DemoCompleted, http.Header{"Authorization": {"Bearer " + huge[:10_000]}}, nil, http.StatusUnauthorized},
		{"many headers", http.MethodGet, "/v1/batches/" + simulator.DemoCompleted, manyHeaders(2000), nil, http.StatusRequestHeaderFieldsTooLarge},
		{"huge body on GetBatch's path", http.MethodPost, "/v1/batches/" + simulator.DemoCompleted, nil, bytes.Repeat([]byte("x"), 1<<20), http.StatusMethodNotAllowed},
		{"huge body elsewhere", http.MethodPost, "/v1/nothing", nil, bytes.Repeat([]byte("x"), 1<<20), http.StatusNotFound},
		{"huge body on create", http.MethodPost, "/v1/batches", http.Header{"Content-Type": {"application/json"}}, []byte(`{"input_file_id":"` + huge + `"}`), http.StatusRequestEntityTooLarge},
		{"huge JSON body", http.MethodPut, "/v1/batches/" + simulator.DemoCompleted, http.Header{"Content-Type": {"application/json"}}, []byte(`{"batch_id":"` + huge + `"}`), http.StatusMethodNotAllowed},
	} {
		t.Run("rest "+tt.name, func(t *testing.T) {
			hdr := tt.hdr.Clone()
			if hdr.Get("Authorization") == "" {
				if hdr == nil {
					hdr = http.Header{}
				}
				hdr.Set("Authorization", alice)
			}
			var body *bytes.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			resp, data := restRequest(t, e, tt.method, tt.path, "", hdr, readerOrNil(body))
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%.200s), want %d", resp.StatusCode, data, tt.want)
			}
		})
	}
	// Still serving.
	if o := restGet(t, e, alice, simulator.DemoCompleted); !o.ok() {
		t.Fatalf("after the oversized requests: %+v", o)
	}
	if o := grpcGet(t, e, alice, simulator.DemoCompleted); !o.ok() {
		t.Fatalf("after the oversized requests: %+v", o)
	}
}

func manyHeaders(n int) http.Header {
	h := http.Header{}
	for i := range n {
		h.Set("X-Filler-"+strconv.Itoa(i), strings.Repeat("v", 40))
	}
	return h
}

// readerOrNil keeps a nil *bytes.Reader from becoming a non-nil
// io.Reader.
func readerOrNil(r *bytes.Reader) io.Reader {
	if r == nil {
		return nil
	}
	return r
}

// TestCORS: browsers' preflights are answered for listed origins only,
// without a token (browsers send none on preflight), and with no origins
// listed there are no CORS headers at all.
func TestCORS(t *testing.T) {
	t.Parallel()
	const app = "https://app.example"
	tests := []struct {
		name    string
		origins string
		origin  string
		allowed bool
	}{
		{"listed origin", app, app, true},
		{"one of several", " https://other.example , " + app + " ", app, true},
		{"unlisted origin", app, "https://evil.example", false},
		{"origin differing in scheme", app, "http://app.example", false},
		{"suffix of a listed origin", app, "https://app.example.evil.example", false},
		{"cors off", "", app, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startWith(t, gatewaytest.Options{}, threeCallers(t), func(c *config.Config) { c.Server.CORSOrigins = tt.origins })
			path := "/v1/batches/" + simulator.DemoCompleted

			pre, _ := restRequest(t, e, http.MethodOptions, path, "", http.Header{
				"Origin":                         {tt.origin},
				"Access-Control-Request-Method":  {http.MethodGet},
				"Access-Control-Request-Headers": {"authorization"},
			}, nil)
			got := pre.Header.Get("Access-Control-Allow-Origin")
			if tt.allowed {
				if got != tt.origin || pre.StatusCode >= 300 {
					t.Fatalf("preflight: %d, Allow-Origin %q, want 2xx and %q", pre.StatusCode, got, tt.origin)
				}
				if m := pre.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, http.MethodGet) {
					t.Errorf("Allow-Methods %q", m)
				}
				if h := pre.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(strings.ToLower(h), "authorization") {
					t.Errorf("Allow-Headers %q, want authorization", h)
				}
			} else {
				for k := range pre.Header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("preflight from %s answered with %s: %q", tt.origin, k, pre.Header.Get(k))
					}
				}
			}

			resp, _ := restRequest(t, e, http.MethodGet, path, bearer(tokAlice), http.Header{"Origin": {tt.origin}}, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET with Origin: %d", resp.StatusCode)
			}
			got = resp.Header.Get("Access-Control-Allow-Origin")
			switch {
			case tt.allowed && got != tt.origin:
				t.Errorf("GET: Allow-Origin %q, want %q", got, tt.origin)
			case tt.allowed && !strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers")), "x-request-id"):
				t.Errorf("GET: Expose-Headers %q, want X-Request-Id", resp.Header.Get("Access-Control-Expose-Headers"))
			case !tt.allowed && got != "":
				t.Errorf("GET from %s: Allow-Origin %q", tt.origin, got)
			}
			// Whatever the origin, the token is still checked.
			if resp, _ := restRequest(t, e, http.MethodGet, path, "", http.Header{"Origin": {tt.origin}}, nil); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET with Origin and no token: %d, want 401", resp.StatusCode)
			}
		})
	}
}
