package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/testutil"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
)

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = testutil.SyncBuffer

// sentRequest is one request the logs test made, and what its log line
// must say.
type sentRequest struct {
	what      string
	transport string // "grpc" or "http"
	method    string // gRPC full method, or HTTP method
	path      string // HTTP only
	code      string // gRPC code name, or HTTP status
	who       string // the caller's label; "-" for none
	id        string // the request id returned to the caller
}

// logTraffic drives a gateway with a mix of calls that succeed and fail,
// and records each request.
type logTraffic struct {
	t       *testing.T
	e       *e2e
	sent    []sentRequest
	replies strings.Builder // every error message and body the callers got
}

func (lt *logTraffic) add(r sentRequest) {
	lt.t.Helper()
	if r.id == "" {
		lt.t.Errorf("%s: no request id returned to the caller", r.what)
	}
	lt.sent = append(lt.sent, r)
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// grpcUnary makes one GetBatch call (or a health check when id is "")
// and checks its code.
func (lt *logTraffic) grpcUnary(what, authz, id, reqID string, want codes.Code, who string) string {
	t := lt.t
	t.Helper()
	ctx := withAuthz(t.Context(), authz)
	if reqID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", reqID)
	}
	var md metadata.MD
	var err error
	method := batchv1.BatchService_GetBatch_FullMethodName
	if id == "" {
		method = healthpb.Health_Check_FullMethodName
		_, err = healthpb.NewHealthClient(lt.e.Conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
	} else {
		_, err = lt.e.Client.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: id}, grpc.Header(&md))
	}
	st := status.Convert(err)
	if st.Code() != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
	lt.replies.WriteString(st.Message() + "\n")
	got := first(md.Get("x-request-id"))
	lt.add(sentRequest{what: what, transport: "grpc", method: method, code: want.String(), who: who, id: got})
	return got
}

// rest makes one HTTP request and checks its status.
func (lt *logTraffic) rest(what, path, authz, reqID string, want int, who string) string {
	t := lt.t
	t.Helper()
	var hdr http.Header
	if reqID != "" {
		hdr = http.Header{"X-Request-Id": {reqID}}
	}
	resp, body := restRequest(t, lt.e, http.MethodGet, path, authz, hdr, nil)
	if resp.StatusCode != want {
		t.Errorf("%s: status %d (%s), want %d", what, resp.StatusCode, body, want)
	}
	lt.replies.Write(body)
	got := resp.Header.Get("X-Request-Id")
	lt.add(sentRequest{what: what, transport: "http", method: http.MethodGet, path: path, code: strconv.Itoa(want), who: who, id: got})
	return got
}

// grpcWatch opens a watch. With want OK it returns the watcher after its
// snapshot and the caller ends the stream, then calls done with the code
// it ended with; otherwise the watch must fail with want at once.
func (lt *logTraffic) grpcWatch(what, authz, id string, want codes.Code, who string) (w *watcher, done func(code codes.Code)) {
	t := lt.t
	t.Helper()
	ctx, cancel := context.WithCancel(withAuthz(t.Context(), authz))
	t.Cleanup(cancel)
	stream, err := lt.e.Client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	ev, err := stream.Recv()
	md, _ := stream.Header()
	r := sentRequest{what: what, transport: "grpc", method: batchv1.BatchService_WatchBatch_FullMethodName, who: who, id: first(md.Get("x-request-id"))}
	if want != codes.OK {
		st := status.Convert(err)
		if st.Code() != want {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
		lt.replies.WriteString(st.Message() + "\n")
		r.code = want.String()
		lt.add(r)
		return nil, nil
	}
	if err != nil || ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
		t.Fatalf("%s: %v, %v; want a snapshot", what, ev, err)
	}
	return pumpWatch(stream, cancel), func(code codes.Code) {
		r.code = code.String()
		lt.add(r)
	}
}

// restWatch opens a REST watch; see grpcWatch. The logged status of a
// watch that started is 200, however it ends.
func (lt *logTraffic) restWatch(what, authz, id string, want int, who string) *restWatcher {
	t := lt.t
	t.Helper()
	w := openRESTWatch(t, lt.e, id, authz, nil)
	if w.resp.StatusCode != want {
		t.Errorf("%s: status %d, want %d", what, w.resp.StatusCode, want)
	}
	if want == http.StatusOK {
		if ev := w.next(t); ev.Type != "snapshot" {
			t.Fatalf("%s: first event %+v", what, ev)
		}
	} else {
		body, _ := io.ReadAll(w.resp.Body)
		lt.replies.Write(body)
	}
	lt.add(sentRequest{what: what, transport: "http", method: http.MethodGet, path: "/v1/batches/" + id + "/watch",
		code: strconv.Itoa(want), who: who, id: w.resp.Header.Get("X-Request-Id")})
	return w
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// TestLogsNoSecretsAndOneLinePerRequest runs the gateway with debug JSON
// logs in key and passthrough mode, drives calls that pass and fail (bad
// credentials, upstream 401s that echo the key, 429s, 503s, watches) over
// gRPC and REST, shuts it down, and then checks that no key or token, nor
// half of one, is anywhere in the logs (or in what callers got back), and
// that every request has exactly one "request" line with its method, code,
// duration, caller name and the request id the caller got.
func TestLogsNoSecretsAndOneLinePerRequest(t *testing.T) {
	t.Parallel()
	const longCredential = "sk-CALLER-LONG-SECRET-" // + 5000 characters below
	tests := []struct {
		mode string
		// c1 and c2 are two callers' bearer credentials, known in the logs
		// as names[0] and names[1] ("" when the gateway derives the name).
		c1, c2 string
		names  [2]string
		// bad is a credential the gateway itself must refuse ("" if none).
		bad string
	}{
		{mode: "key", c1: tokAlice, c2: tokBob, names: [2]string{"alice", "bob"}, bad: tokUnlisted},
		{mode: "passthrough", c1: keyA, c2: keyB},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			long := longCredential + strings.Repeat("L", 5000)
			secrets := []string{upstreamSecretKey, tt.c1, tt.c2, long}
			opts := gatewaytest.Options{UpstreamKey: upstreamSecretKey, Log: log}
			mode := func(c *config.Config) { c.Auth.Mode = "passthrough" }
			if tt.mode == "key" {
				secrets = append(secrets, tt.bad)
				mode = keyMode(writeTokens(t, "", "alice "+tokAlice+" all", "bob "+tokBob+" all"))
			} else {
				opts.SimAnyKey = true
			}
			e := startWith(t, opts, mode, fastWatch, quietHeartbeat)
			lt := &logTraffic{t: t, e: e}
			a, b := bearer(tt.c1), bearer(tt.c2)
			// An upstream 401 whose body echoes the key it was sent, as
			// some upstreams do.
			echo := func(key string) simulator.Fault {
				return simulator.Fault{Status: http.StatusUnauthorized, Body: `{"error":{"message":"Incorrect API key provided: ` + key +
					`","type":"invalid_api_key","param":null,"code":"invalid_api_key"}}`}
			}
			upKey1, upKey2 := upstreamSecretKey, upstreamSecretKey
			if tt.mode == "passthrough" {
				upKey1, upKey2 = tt.c1, tt.c2
			}
			fresh := func() string { return e.Sim.Create(simulator.CreateRequest{InputFileID: "file_in"}).ID }

			lt.grpcUnary("grpc ok", a, simulator.DemoCompleted, "", codes.OK, "1")
			lt.grpcUnary("grpc no credential", "", simulator.DemoCompleted, "", codes.Unauthenticated, "-")
			lt.grpcUnary("grpc basic scheme", "Basic "+tt.c1, simulator.DemoCompleted, "", codes.Unauthenticated, "-")
			lt.grpcUnary("grpc credential too long", bearer(long), simulator.DemoCompleted, "", codes.Unauthenticated, "-")
			if tt.bad != "" {
				lt.grpcUnary("grpc wrong token", bearer(tt.bad), simulator.DemoCompleted, "", codes.Unauthenticated, "-")
				lt.rest("rest wrong token", "/v1/batches/"+simulator.DemoCompleted, bearer(tt.bad), "", http.StatusUnauthorized, "-")
				lt.grpcWatch("grpc watch wrong token", bearer(tt.bad), simulator.DemoValidating, codes.Unauthenticated, "-")
			}
			if id := lt.grpcUnary("grpc caller's request id", a, simulator.DemoCompleted, "req-from-test_0001", codes.OK, "1"); id != "req-from-test_0001" {
				t.Errorf("request id %q, want the caller's req-from-test_0001", id)
			}
			if id := lt.grpcUnary("grpc malformed request id", a, simulator.DemoCompleted, "not an id/"+strings.Repeat("x", 80), codes.OK, "1"); !requestIDPattern.MatchString(id) || strings.Contains(id, "not an id") {
				t.Errorf("request id %q, want a fresh one for a malformed id", id)
			}
			lt.rest("rest ok", "/v1/batches/"+simulator.DemoFailed, b, "", http.StatusOK, "2")
			lt.rest("rest no credential", "/v1/batches/"+simulator.DemoFailed, "", "", http.StatusUnauthorized, "-")
			lt.rest("rest credential too long", "/v1/batches/"+simulator.DemoFailed, bearer(long), "", http.StatusUnauthorized, "-")
			if id := lt.rest("rest caller's request id", "/v1/batches/"+simulator.DemoFailed, b, "req-from-test_0002", http.StatusOK, "2"); id != "req-from-test_0002" {
				t.Errorf("request id %q, want the caller's req-from-test_0002", id)
			}

			// Upstream failures.
			id := fresh()
			e.Sim.InjectFaults(id, echo(upKey1))
			lt.grpcUnary("grpc upstream 401 echoing the key", a, id, "", codes.Unauthenticated, "1")
			id = fresh()
			e.Sim.InjectFaults(id, echo(upKey2))
			lt.rest("rest upstream 401 echoing the key", "/v1/batches/"+id, b, "", http.StatusUnauthorized, "2")
			id = fresh()
			e.Sim.InjectFaults(id, simulator.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3"})
			lt.grpcUnary("grpc upstream 429", a, id, "", codes.ResourceExhausted, "1")
			id = fresh()
			e.Sim.InjectFaults(id, simulator.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3"})
			lt.rest("rest upstream 429", "/v1/batches/"+id, b, "", http.StatusTooManyRequests, "2")
			id = fresh()
			e.Sim.InjectFaults(id, simulator.Fault{Status: http.StatusServiceUnavailable})
			lt.grpcUnary("grpc upstream 503", b, id, "", codes.Unavailable, "2")
			id = fresh()
			e.Sim.InjectFaults(id, simulator.Fault{Status: http.StatusServiceUnavailable})
			lt.rest("rest upstream 503", "/v1/batches/"+id, a, "", http.StatusServiceUnavailable, "1")
			lt.grpcUnary("grpc unknown batch", b, "batch_nope", "", codes.NotFound, "2")
			lt.rest("rest invalid id", "/v1/batches/bad.id", a, "", http.StatusBadRequest, "1")

			// Health, unauthenticated and exempt.
			lt.grpcUnary("grpc health", "", "", "", codes.OK, "-")
			lt.rest("healthz", "/healthz", "", "", http.StatusOK, "-")
			lt.rest("readyz", "/readyz", "", "", http.StatusOK, "-")

			// Watches: cancelled by the caller, refused, ended by an
			// upstream 401 echoing the key, and left open until shutdown.
			w, done := lt.grpcWatch("grpc watch cancelled", a, simulator.DemoValidating, codes.OK, "1")
			w.cancel()
			if st := w.end(t); st.Code() != codes.Canceled {
				t.Errorf("cancelled watch ended with %v", st)
			}
			done(codes.Canceled)
			rw := lt.restWatch("rest watch closed", b, simulator.DemoValidating, http.StatusOK, "2")
			rw.close()
			lt.grpcWatch("grpc watch no credential", "", simulator.DemoValidating, codes.Unauthenticated, "-")
			lt.restWatch("rest watch no credential", "", simulator.DemoValidating, http.StatusUnauthorized, "-")
			id = fresh()
			w, done = lt.grpcWatch("grpc watch ended by an upstream 401", b, id, codes.OK, "2")
			e.Sim.InjectFaults(id, echo(upKey2))
			st := w.end(t)
			if st.Code() != codes.Unauthenticated {
				t.Errorf("watch after an upstream 401 ended with %v", st)
			}
			lt.replies.WriteString(st.Message() + "\n")
			done(codes.Unauthenticated)
			openW, openDone := lt.grpcWatch("grpc watch open at shutdown", a, simulator.DemoProgress, codes.OK, "1")
			openRW := lt.restWatch("rest watch open at shutdown", b, simulator.DemoProgress, http.StatusOK, "2")

			e.Stop()
			if st := openW.end(t); st.Code() != codes.Unavailable {
				t.Errorf("watch open at shutdown ended with %v", st)
			}
			openDone(codes.Unavailable)
			for ev := openRW.next(t); ev.Type != "error"; ev = openRW.next(t) {
			}
			openRW.end(t)

			// Handlers may log just after their stream ends: wait for every
			// request's line.
			var lines []map[string]any
			waitFor(t, "a log line for every request", func() bool {
				lines = parseLogLines(t, logs.String())
				byID := requestLines(lines)
				for _, r := range lt.sent {
					if len(byID[r.id]) == 0 {
						return false
					}
				}
				return true
			})
			out := logs.String()

			// No secret, nor either half of one, in the logs or in replies.
			for _, s := range secrets {
				for _, part := range []string{s, s[:len(s)/2], s[len(s)/2:]} {
					if strings.Contains(out, part) {
						t.Errorf("the logs contain a secret (or half of one): %q", part)
					}
					if strings.Contains(lt.replies.String(), part) {
						t.Errorf("a reply contains a secret (or half of one): %q", part)
					}
				}
			}
			if !strings.Contains(out, `"level":"DEBUG"`) {
				t.Error("no debug line: the test did not run at debug level")
			}

			// One request line per request, saying what it should.
			byID := requestLines(lines)
			names := map[string]string{"1": tt.names[0], "2": tt.names[1]}
			for _, r := range lt.sent {
				got := byID[r.id]
				if len(got) != 1 {
					t.Errorf("%s: %d request lines for request id %q, want 1: %v", r.what, len(got), r.id, got)
					continue
				}
				l := got[0]
				checkRequestLine(t, r, l, names)
			}
			if n := countRequestLines(lines); n != len(lt.sent) {
				t.Errorf("%d request lines for %d requests", n, len(lt.sent))
			}
			if tt.names[0] == "" && (names["1"] == names["2"] || !strings.HasPrefix(names["1"], "passthrough:")) {
				t.Errorf("passthrough caller names %q and %q: want two distinct passthrough: names", names["1"], names["2"])
			}
		})
	}
}

// checkRequestLine checks one request's log line. names maps caller
// labels to names; a label mapped to "" learns its name from its first
// line and must keep it.
func checkRequestLine(t *testing.T, r sentRequest, l map[string]any, names map[string]string) {
	t.Helper()
	if l["transport"] != r.transport || l["method"] != r.method {
		t.Errorf("%s: line %v, want transport %s and method %s", r.what, l, r.transport, r.method)
	}
	if r.transport == "http" && l["path"] != r.path {
		t.Errorf("%s: path %v, want %s", r.what, l["path"], r.path)
	}
	if code := strings.TrimSuffix(jsonString(l["code"]), ".0"); code != r.code {
		t.Errorf("%s: code %v, want %s", r.what, l["code"], r.code)
	}
	if d, ok := l["duration"].(float64); !ok || d < 0 {
		t.Errorf("%s: duration %v, want a number of nanoseconds", r.what, l["duration"])
	}
	caller, ok := l["caller"].(string)
	switch {
	case !ok:
		t.Errorf("%s: no caller in %v", r.what, l)
	case r.who == "-":
		if caller != "" && caller != "unauthenticated" {
			t.Errorf("%s: caller %q, want none", r.what, caller)
		}
	case names[r.who] == "":
		if caller == "" || caller == "unauthenticated" {
			t.Errorf("%s: caller %q, want the caller's name", r.what, caller)
		}
		names[r.who] = caller
	case caller != names[r.who]:
		t.Errorf("%s: caller %q, want %q", r.what, caller, names[r.who])
	}
}

func jsonString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func parseLogLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// requestLines groups the "request" lines by request id.
func requestLines(lines []map[string]any) map[string][]map[string]any {
	out := map[string][]map[string]any{}
	for _, l := range lines {
		if l["msg"] == "request" {
			id, _ := l["request_id"].(string)
			out[id] = append(out[id], l)
		}
	}
	return out
}

func countRequestLines(lines []map[string]any) int {
	n := 0
	for _, l := range lines {
		if l["msg"] == "request" {
			n++
		}
	}
	return n
}
