package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
	"github.com/batchgate/batchgate/internal/wire"
)

// This file and its siblings auth_e2e, tls_e2e, limits_e2e and logs_e2e
// test the production posture end to end: a real gateway on loopback
// ports, real gRPC and HTTP clients, and a real upstream (the simulator,
// or a handler of the test's own).

// keyMode switches a config to key mode with the tokens file at path.
func keyMode(path string) func(*config.Config) {
	return func(c *config.Config) { c.Auth.Mode = "key"; c.Auth.TokensFile = path }
}

// writeTokens writes a tokens file ("name token" lines) and returns its
// path.
func writeTokens(t *testing.T, path string, lines ...string) string {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "tokens")
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bearer returns an authorization value for token; "" for none.
func bearer(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}

// withAuthz adds an authorization value (not added when "") to ctx's
// outgoing gRPC metadata.
func withAuthz(ctx context.Context, authz string) context.Context {
	if authz == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", authz)
}

// outcome is what one call got, over either transport.
type outcome struct {
	code       codes.Code // gRPC code (OK over REST when 2xx)
	httpStatus int        // REST only
	errType    string     // the envelope's type (REST) or ErrorInfo type (gRPC)
	errCode    string     // the envelope's code (REST) or ErrorInfo code (gRPC)
	message    string     // the error message, for leak checks
	header     http.Header
	batch      map[string]any // the batch (REST JSON)
	pb         *batchv1.Batch // the batch (gRPC)
	owner      string         // the batch's metadata["owner"]
	requestID  string         // x-request-id returned to the caller
}

func (o outcome) ok() bool {
	return o.code == codes.OK && (o.httpStatus == 0 || o.httpStatus == http.StatusOK)
}

// probe makes one call with an authorization value and reports its
// outcome. Watches are closed after their first event.
type probe struct {
	name string
	call func(t *testing.T, e *e2e, authz, id string) outcome
}

var probes = []probe{
	{"grpc GetBatch", grpcGet},
	{"grpc WatchBatch", grpcWatchFirst},
	{"rest GetBatch", restGet},
	{"rest WatchBatch", restWatchFirst},
}

func grpcOutcome(err error, md metadata.MD) outcome {
	st := status.Convert(err)
	o := outcome{code: st.Code(), message: st.Message()}
	if info := errorInfo(st); info != nil {
		o.errType = info.GetMetadata()["type"]
		o.errCode = info.GetMetadata()["code"]
	}
	if v := md.Get("x-request-id"); len(v) > 0 {
		o.requestID = v[0]
	}
	return o
}

func (o *outcome) setPB(b *batchv1.Batch) {
	o.pb = b
	o.owner = b.GetMetadata().GetPairs()["owner"]
}

func grpcGet(t *testing.T, e *e2e, authz, id string) outcome {
	t.Helper()
	var md metadata.MD
	resp, err := e.Client.GetBatch(withAuthz(t.Context(), authz), &batchv1.GetBatchRequest{BatchId: id}, grpc.Header(&md))
	o := grpcOutcome(err, md)
	if err == nil {
		o.setPB(resp.GetBatch())
	}
	return o
}

func grpcWatchFirst(t *testing.T, e *e2e, authz, id string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(withAuthz(t.Context(), authz), restWatchGuard)
	defer cancel()
	stream, err := e.Client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id})
	if err != nil {
		return grpcOutcome(err, nil)
	}
	ev, err := stream.Recv()
	md, _ := stream.Header()
	o := grpcOutcome(err, md)
	if err == nil {
		if ev.GetType() != batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
			t.Errorf("first event %v, want a snapshot", ev)
		}
		o.setPB(ev.GetBatch())
	}
	return o
}

// restRequest sends one request with the authorization value (none when
// "") and extra headers, and returns the response with its body read.
func restRequest(t *testing.T, e *e2e, method, path, authz string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), restWatchGuard)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.BaseURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, data
}

// restOutcome reads a REST answer: a batch for 200, else the envelope.
func restOutcome(t *testing.T, resp *http.Response, body []byte) outcome {
	t.Helper()
	o := outcome{httpStatus: resp.StatusCode, header: resp.Header, requestID: resp.Header.Get("X-Request-Id")}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &o.batch); err != nil {
			t.Fatalf("200 with body %q: %v", body, err)
		}
		if md, ok := o.batch["metadata"].(map[string]any); ok {
			o.owner, _ = md["owner"].(string)
		}
		return o
	}
	o.code = codes.Unknown
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("status %d with Content-Type %q, want application/json", resp.StatusCode, ct)
	}
	var env struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil {
		t.Fatalf("status %d with body %q: want the upstream error envelope (%v)", resp.StatusCode, body, err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := env.Error[k]; !ok {
			t.Errorf("envelope %s lacks %q", body, k)
		}
	}
	o.errType, _ = env.Error["type"].(string)
	o.errCode, _ = env.Error["code"].(string)
	o.message, _ = env.Error["message"].(string)
	return o
}

func restGet(t *testing.T, e *e2e, authz, id string) outcome {
	t.Helper()
	resp, body := restRequest(t, e, http.MethodGet, "/v1/batches/"+id, authz, nil, nil)
	return restOutcome(t, resp, body)
}

func restWatchFirst(t *testing.T, e *e2e, authz, id string) outcome {
	t.Helper()
	w := openRESTWatch(t, e, id, authz, nil)
	defer w.close()
	if w.resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(w.resp.Body)
		return restOutcome(t, w.resp, body)
	}
	ev := w.next(t)
	if ev.Type != "snapshot" {
		t.Errorf("first event %+v, want a snapshot", ev)
	}
	return restOutcome(t, w.resp, ev.Batch)
}

// restWatcher is an open REST NDJSON watch whose lines are read in the
// background.
type restWatcher struct {
	resp   *http.Response
	lines  chan restEvent
	done   chan error // the read error that ended the body (io.EOF: clean end)
	cancel context.CancelFunc
}

// openRESTWatch opens GET /v1/batches/{id}/watch (NDJSON). For a 200 the
// lines are read in the background; otherwise the body is left to the
// caller.
func openRESTWatch(t *testing.T, e *e2e, id, authz string, hdr http.Header) *restWatcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), restWatchGuard)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.BaseURL+"/v1/batches/"+id+"/watch", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("watch %s: %v", id, err)
	}
	w := &restWatcher{resp: resp, lines: make(chan restEvent, 64), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(w.close)
	if resp.StatusCode != http.StatusOK {
		return w
	}
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				w.done <- err
				return
			}
			var ev restEvent
			if err := json.Unmarshal(line, &ev); err != nil {
				w.done <- errors.New("bad NDJSON line " + string(line) + ": " + err.Error())
				return
			}
			w.lines <- ev
		}
	}()
	return w
}

func (w *restWatcher) close() {
	w.cancel()
	_ = w.resp.Body.Close()
}

func (w *restWatcher) next(t *testing.T) restEvent {
	t.Helper()
	ev, err := testutil.Next(w.lines, w.done, waitLimit)
	if err != nil {
		t.Fatalf("REST watch ended (%v) while an event was expected", err)
	}
	return ev
}

// end waits for the body to end and fails on any event received first.
func (w *restWatcher) end(t *testing.T) {
	t.Helper()
	ev, err := testutil.Next(w.lines, w.done, waitLimit)
	switch {
	case err == nil:
		t.Fatalf("unexpected REST event %+v", ev)
	case errors.Is(err, testutil.ErrNoMessage):
		t.Fatal("REST watch did not end")
	case !errors.Is(err, io.EOF):
		t.Fatalf("REST watch ended with %v, want the end of the body", err)
	}
}

// Tokens of the key-mode tests: recognisable, at least 16 characters.
const (
	tokAlice    = "tok-CLIENT-SECRET-alice-5c1e0f"
	tokAlice2   = "tok-CLIENT-SECRET-alice-rotated-93ab"
	tokBob      = "tok-CLIENT-SECRET-bob-7d24e8a1"
	tokCarol    = "tok-CLIENT-SECRET-carol-0b6f3c"
	tokUnlisted = "tok-CLIENT-SECRET-nobody-e41a9d"
)

// checkUnauthenticated checks the outcome of a call without a valid
// credential: Unauthenticated, or a 401 with the upstream-style envelope
// of code invalid_api_key, and no credential in the message.
func checkUnauthenticated(t *testing.T, o outcome, authz string) {
	t.Helper()
	if o.httpStatus != 0 {
		if o.httpStatus != http.StatusUnauthorized {
			t.Errorf("HTTP status %d, want 401", o.httpStatus)
		}
	} else if o.code != codes.Unauthenticated {
		t.Errorf("code %v (%s), want Unauthenticated", o.code, o.message)
	}
	if o.errType != "invalid_request_error" || o.errCode != "invalid_api_key" {
		t.Errorf("error type %q code %q, want invalid_request_error, invalid_api_key", o.errType, o.errCode)
	}
	if f := strings.Fields(authz); len(f) > 0 && len(f[len(f)-1]) >= 8 && strings.Contains(o.message, f[len(f)-1]) {
		t.Errorf("the error message %q echoes the credential", o.message)
	}
}

// TestAuthKeyMode runs every call, over gRPC and REST, with no, wrong and
// good tokens, then reloads a rewritten tokens file.
func TestAuthKeyMode(t *testing.T) {
	t.Parallel()
	path := writeTokens(t, "", "# callers", "alice "+tokAlice+" all", "bob\t"+tokBob+" all")
	e := startWith(t, gatewaytest.Options{}, keyMode(path), slowPolls, quietHeartbeat)
	id := simulator.DemoValidating // never terminal: watches stay open until closed

	type credential struct {
		name  string
		authz string
		ok    bool
	}
	check := func(t *testing.T, creds []credential) {
		t.Helper()
		for _, p := range probes {
			for _, c := range creds {
				t.Run(p.name+"/"+c.name, func(t *testing.T) {
					t.Parallel()
					o := p.call(t, e, c.authz, id)
					if !c.ok {
						checkUnauthenticated(t, o, c.authz)
						return
					}
					if !o.ok() {
						t.Fatalf("got %+v, want the batch", o)
					}
					if got := batchID(o); got != id {
						t.Fatalf("batch id %q, want %q", got, id)
					}
				})
			}
		}
	}
	t.Run("initial", func(t *testing.T) {
		check(t, []credential{
			{"no token", "", false},
			{"empty bearer", "Bearer ", false},
			{"unlisted token", bearer(tokUnlisted), false},
			{"token with a suffix", bearer(tokAlice + "x"), false},
			{"token prefix", bearer(tokAlice[:len(tokAlice)-1]), false},
			{"basic scheme", "Basic " + tokAlice, false},
			{"bare token", tokAlice, false},
			{"alice", bearer(tokAlice), true},
			{"alice lower-case scheme", "bearer " + tokAlice, true},
			{"bob", bearer(tokBob), true},
			{"not yet listed", bearer(tokAlice2), false},
		})
	})

	// Rotate alice's token and drop bob.
	writeTokens(t, path, "alice "+tokAlice2+" all", "carol "+tokCarol+" all")
	e.GW.ReloadTokens()
	t.Run("reloaded", func(t *testing.T) {
		check(t, []credential{
			{"old alice", bearer(tokAlice), false},
			{"bob removed", bearer(tokBob), false},
			{"new alice", bearer(tokAlice2), true},
			{"carol added", bearer(tokCarol), true},
			{"no token", "", false},
		})
	})

	// A broken file, or one without tokens, keeps the tokens in force.
	for _, bad := range [][]string{{"alice short"}, {"# nobody"}, {"alice " + tokAlice, "alice " + tokBob}} {
		writeTokens(t, path, bad...)
		e.GW.ReloadTokens()
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	e.GW.ReloadTokens()
	t.Run("failed reloads", func(t *testing.T) {
		check(t, []credential{
			{"new alice", bearer(tokAlice2), true},
			{"carol", bearer(tokCarol), true},
			{"old alice", bearer(tokAlice), false},
		})
	})
}

func batchID(o outcome) string {
	if o.pb != nil {
		return o.pb.GetId()
	}
	id, _ := o.batch["id"].(string)
	return id
}

// TestAuthExemptions: health checks, readiness and reflection need no
// token in key mode, and a wrong token does not hurt them.
func TestAuthExemptions(t *testing.T) {
	t.Parallel()
	e := startWith(t, gatewaytest.Options{}, keyMode(writeTokens(t, "", "alice "+tokAlice+" all")))
	for _, authz := range []string{"", bearer(tokUnlisted)} {
		hc := healthpb.NewHealthClient(e.Conn)
		for _, svc := range []string{"", "batch.v1.BatchService"} {
			resp, err := hc.Check(withAuthz(t.Context(), authz), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health %q with authorization %q: %v, %v", svc, authz, resp, err)
			}
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, body := restRequest(t, e, http.MethodGet, path, authz, nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s with authorization %q: %d %s", path, authz, resp.StatusCode, body)
			}
		}
	}
	// Reflection (grpcurl's way to learn the API) works without a token.
	stream, err := reflectionpb.NewServerReflectionClient(e.Conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("reflection without a token: %v", err)
	}
	_ = stream.CloseSend()
}

// TestAuthNoneMode lets every caller in, whatever it sends.
func TestAuthNoneMode(t *testing.T) {
	t.Parallel()
	e := startWith(t, gatewaytest.Options{}, slowPolls, quietHeartbeat)
	for _, p := range probes {
		for _, authz := range []string{"", bearer(tokUnlisted), "Basic dXNlcjpwYXNz", "Bearer "} {
			t.Run(p.name+"/"+authz, func(t *testing.T) {
				t.Parallel()
				o := p.call(t, e, authz, simulator.DemoValidating)
				if !o.ok() || batchID(o) != simulator.DemoValidating {
					t.Fatalf("got %+v, want the batch", o)
				}
			})
		}
	}
}

// ownerUpstream is an upstream that gives each bearer key its own
// batches: GET /v1/batches/{id} answers the batch stored under the
// request's key, 404 when that key has no such batch, 401 for an unknown
// key. It counts requests per key and batch, and every authorization
// value it was sent.
type ownerUpstream struct {
	mu      sync.Mutex
	batches map[string]map[string]wire.Batch // key -> id -> batch
	calls   map[[2]string]int                // {key, id} -> GETs
	authz   map[string]int                   // authorization value -> requests
}

func newOwnerUpstream(keys ...string) *ownerUpstream {
	u := &ownerUpstream{batches: map[string]map[string]wire.Batch{}, calls: map[[2]string]int{}, authz: map[string]int{}}
	for _, k := range keys {
		u.batches[k] = map[string]wire.Batch{}
	}
	return u
}

func ownedBatch(id, owner string) wire.Batch {
	return wire.Batch{
		ID: id, Object: "batch", Endpoint: simulator.SupportedEndpoint, Status: simulator.StatusInProgress,
		InputFileID: "file_in_" + owner, CompletionWindow: simulator.SupportedCompletionWindow,
		RequestCounts: &wire.RequestCounts{Total: 10}, CreatedAt: new(wire.Int(1710000000)),
		Metadata: wire.Metadata{"owner": owner},
	}
}

func (u *ownerUpstream) put(key string, b wire.Batch) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.batches[key][b.ID] = b
}

// update changes the batch id stored under key. f changes a copy (its
// request counts copied too), so that answers being written from the old
// batch are not changed under them.
func (u *ownerUpstream) update(key, id string, f func(*wire.Batch)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.batches[key][id]
	if b.RequestCounts != nil {
		rc := *b.RequestCounts
		b.RequestCounts = &rc
	}
	f(&b)
	u.batches[key][id] = b
}

func (u *ownerUpstream) callsFor(key, id string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[[2]string{key, id}]
}

func (u *ownerUpstream) authorizations() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]int, len(u.authz))
	for k, v := range u.authz {
		out[k] = v
	}
	return out
}

func (u *ownerUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, found := strings.CutPrefix(r.URL.Path, "/v1/batches/")
	if r.Method != http.MethodGet || !found || strings.Contains(id, "/") {
		writeEnvelope(w, http.StatusNotFound, "invalid_request_error", "unknown URL")
		return
	}
	authz := r.Header.Get("Authorization")
	key, _ := strings.CutPrefix(authz, "Bearer ")
	u.mu.Lock()
	u.authz[authz]++
	mine, known := u.batches[key]
	var b wire.Batch
	ok := false
	if known {
		u.calls[[2]string{key, id}]++
		b, ok = mine[id]
	}
	u.mu.Unlock()
	switch {
	case !known:
		writeEnvelope(w, http.StatusUnauthorized, "invalid_api_key", "Incorrect API key provided.")
	case !ok:
		writeEnvelope(w, http.StatusNotFound, "not_found_error", "No batch found with id '"+id+"'.")
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b)
	}
}

func writeEnvelope(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}})
}

// Passthrough callers' upstream keys, and the gateway's own key, which
// must never reach the upstream in passthrough mode.
const (
	keyA              = "sk-CALLER-A-SECRET-4f9a2c7e1b"
	keyB              = "sk-CALLER-B-SECRET-8d3e6a0f5c"
	upstreamSecretKey = "sk-UPSTREAM-SECRET-123-d00dfeed"
)

func passthroughMode(c *config.Config) { c.Auth.Mode = "passthrough" }

// startPassthrough fronts an ownerUpstream where key A sees batch_shared
// as {"owner":"A"} and batch_only_a, and key B sees batch_shared as
// {"owner":"B"}.
func startPassthrough(t *testing.T, mutate ...func(*config.Config)) (*e2e, *ownerUpstream) {
	t.Helper()
	up := newOwnerUpstream(keyA, keyB)
	up.put(keyA, ownedBatch("batch_shared", "A"))
	up.put(keyA, ownedBatch("batch_only_a", "A"))
	up.put(keyB, ownedBatch("batch_shared", "B"))
	e := startWith(t, gatewaytest.Options{Upstream: up, UpstreamKey: upstreamSecretKey}, append([]func(*config.Config){passthroughMode}, mutate...)...)
	t.Cleanup(func() {
		for authz := range up.authorizations() {
			// Only what callers sent ("Bearer sk-CALLER-..."); never no
			// key, never the gateway's.
			if !strings.HasPrefix(authz, "Bearer sk-CALLER-") {
				t.Errorf("the upstream was sent authorization %q; want only the callers' own keys", authz)
			}
			if strings.Contains(authz, upstreamSecretKey) {
				t.Errorf("the gateway's own upstream key reached the upstream in passthrough mode")
			}
		}
	})
	return e, up
}

// TestPassthroughGetBatchIsolation: two keys that see different batches
// under one id each get their own, the cache (on by default) answers each
// key from its own copy, and a batch only one key sees is not found for
// the other.
func TestPassthroughGetBatchIsolation(t *testing.T) {
	t.Parallel()
	e, up := startPassthrough(t)
	a, b := bearer(keyA), bearer(keyB)

	steps := []struct {
		what      string
		probe     func(*testing.T, *e2e, string, string) outcome
		authz, id string
		owner     string     // want the batch of this owner, or
		code      codes.Code // this gRPC code (REST: its status)
		httpCode  int
	}{
		{"A first", grpcGet, a, "batch_shared", "A", codes.OK, 0},
		{"B after A: not A's cached copy", grpcGet, b, "batch_shared", "B", codes.OK, 0},
		{"A again", grpcGet, a, "batch_shared", "A", codes.OK, 0},
		{"A over REST", restGet, a, "batch_shared", "A", codes.OK, 0},
		{"B over REST", restGet, b, "batch_shared", "B", codes.OK, 0},
		{"A's own batch", grpcGet, a, "batch_only_a", "A", codes.OK, 0},
		{"A's own batch over REST", restGet, a, "batch_only_a", "A", codes.OK, 0},
		{"B cannot see A's batch", grpcGet, b, "batch_only_a", "", codes.NotFound, 0},
		{"B cannot see A's batch over REST", restGet, b, "batch_only_a", "", 0, http.StatusNotFound},
		{"B cannot watch A's batch", grpcWatchFirst, b, "batch_only_a", "", codes.NotFound, 0},
		{"B cannot watch A's batch over REST", restWatchFirst, b, "batch_only_a", "", 0, http.StatusNotFound},
		{"no credential", grpcGet, "", "batch_shared", "", codes.Unauthenticated, 0},
		{"no credential over REST", restGet, "", "batch_shared", "", 0, http.StatusUnauthorized},
		{"another key the upstream refuses", grpcGet, bearer("sk-CALLER-C-unknown-2222"), "batch_shared", "", codes.Unauthenticated, 0},
		{"another key over REST", restGet, bearer("sk-CALLER-C-unknown-2222"), "batch_shared", "", 0, http.StatusUnauthorized},
	}
	for _, s := range steps {
		o := s.probe(t, e, s.authz, s.id)
		switch {
		case s.owner != "":
			if !o.ok() || o.owner != s.owner || batchID(o) != s.id {
				t.Fatalf("%s: got %+v, want %s with owner %s", s.what, o, s.id, s.owner)
			}
		case s.httpCode != 0:
			if o.httpStatus != s.httpCode {
				t.Fatalf("%s: got %+v, want HTTP %d", s.what, o, s.httpCode)
			}
		default:
			if o.code != s.code {
				t.Fatalf("%s: got %+v, want %v", s.what, o, s.code)
			}
		}
	}
	// The cache answered the repeated calls, each key from its own copy:
	// one upstream call per key and batch.
	for _, c := range []struct{ key, id string }{{keyA, "batch_shared"}, {keyB, "batch_shared"}, {keyA, "batch_only_a"}} {
		if n := up.callsFor(c.key, c.id); n != 1 {
			t.Errorf("upstream GETs of %s with key %s = %d, want 1 (cached)", c.id, c.key[:11], n)
		}
	}
	// B's misses are not cached as A's hits, nor the other way round:
	// each of B's calls for batch_only_a asked the upstream with B's key.
	if n := up.callsFor(keyB, "batch_only_a"); n < 1 {
		t.Errorf("B's calls for batch_only_a never reached the upstream with B's key")
	}
}

// TestPassthroughWatchIsolation: A and B watch batch_shared at the same
// time, over gRPC and REST; each gets its own snapshot and only its own
// changes, from its own poller.
func TestPassthroughWatchIsolation(t *testing.T) {
	t.Parallel()
	e, up := startPassthrough(t, restFastPolls)
	a, b := bearer(keyA), bearer(keyB)

	type streams struct {
		grpc *watcher
		rest *restWatcher
	}
	open := func(authz string) streams {
		s := streams{grpc: e.watchAs(t, authz, "batch_shared"), rest: openRESTWatch(t, e, "batch_shared", authz, nil)}
		if s.rest.resp.StatusCode != http.StatusOK {
			t.Fatalf("REST watch: status %d", s.rest.resp.StatusCode)
		}
		return s
	}
	byOwner := map[string]streams{"A": open(a), "B": open(b)}

	// expect checks the next event of both of owner's streams: a change
	// (or the snapshot) of its own batch with the given completed count.
	expect := func(owner, kind string, completed int64, terminal bool) {
		t.Helper()
		s := byOwner[owner]
		ev := s.grpc.next(t)
		if got := ev.GetBatch().GetMetadata().GetPairs()["owner"]; got != owner || ev.GetBatch().GetRequestCounts().GetCompleted() != completed ||
			ev.GetTerminal() != terminal || !strings.HasSuffix(strings.ToLower(ev.GetType().String()), kind) {
			t.Fatalf("%s's gRPC watch: event %v, want a %s of its own batch with %d completed", owner, ev, kind, completed)
		}
		rev := s.rest.next(t)
		var rb wire.Batch
		if err := json.Unmarshal(rev.Batch, &rb); err != nil {
			t.Fatalf("%s's REST watch: %+v: %v", owner, rev, err)
		}
		if rev.Type != kind || rb.Metadata["owner"] != owner || rb.RequestCounts == nil || int64(rb.RequestCounts.Completed) != completed || rev.Terminal != terminal {
			t.Fatalf("%s's REST watch: event %+v, want a %s of its own batch with %d completed", owner, rev, kind, completed)
		}
	}
	// quiet checks that owner's streams got nothing while its poller
	// polled twice more.
	quiet := func(owner, key string) {
		t.Helper()
		n := up.callsFor(key, "batch_shared")
		waitFor(t, owner+"'s poller to poll twice more", func() bool { return up.callsFor(key, "batch_shared") >= n+2 })
		s := byOwner[owner]
		select {
		case ev := <-s.grpc.events:
			t.Fatalf("%s's gRPC watch got %v, a change of the other key's batch", owner, ev)
		case ev := <-s.rest.lines:
			t.Fatalf("%s's REST watch got %+v, a change of the other key's batch", owner, ev)
		default:
		}
	}

	expect("A", "snapshot", 0, false)
	expect("B", "snapshot", 0, false)
	if st := e.GW.HubStats(); st.Pollers != 2 {
		t.Fatalf("hub stats %+v, want one poller per key", st)
	}

	up.update(keyA, "batch_shared", func(b *wire.Batch) { b.RequestCounts.Completed = 4 })
	expect("A", "change", 4, false)
	quiet("B", keyB)

	up.update(keyB, "batch_shared", func(b *wire.Batch) { b.RequestCounts.Completed = 7 })
	expect("B", "change", 7, false)
	quiet("A", keyA)

	// GetBatch is answered from each key's own poller.
	for owner, authz := range map[string]string{"A": a, "B": b} {
		if o := grpcGet(t, e, authz, "batch_shared"); o.owner != owner {
			t.Errorf("%s's GetBatch while watching: %+v", owner, o)
		}
	}

	// Each batch completes in its own time; each stream ends after its own
	// terminal change.
	for _, c := range []struct {
		owner, key string
		completed  int64
	}{{"B", keyB, 10}, {"A", keyA, 9}} {
		up.update(c.key, "batch_shared", func(b *wire.Batch) {
			b.Status = simulator.StatusCompleted
			b.RequestCounts.Completed = wire.Int(c.completed)
		})
		expect(c.owner, "change", c.completed, true)
		if st := byOwner[c.owner].grpc.end(t); st.Code() != codes.OK {
			t.Fatalf("%s's gRPC watch ended with %v", c.owner, st)
		}
		byOwner[c.owner].rest.end(t)
	}
	waitFor(t, "the pollers to stop", func() bool { return e.GW.HubStats().Pollers == 0 })
}

// watchAs opens a gRPC watch with an authorization value.
func (e *env) watchAs(t *testing.T, authz, id string) *watcher {
	t.Helper()
	return e.watchCtx(t, withAuthz(t.Context(), authz), id)
}
