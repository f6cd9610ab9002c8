package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m)
}

const testKey = gatewaytest.Key

// env is a gateway started by gatewaytest.Start: one gateway fronting one
// simulator (or the test's own upstream), both on ephemeral loopback
// ports, with a gRPC client, an HTTP client and the HTTP base URL.
type env struct{ *gatewaytest.Env }

// e2e is env under the name the end-to-end files use.
type e2e = env

// start starts a gateway in front of a simulator that takes testKey;
// mutate changes the config (Auth "none" until then).
func start(t *testing.T, mutate ...func(*config.Config)) *env {
	t.Helper()
	return startWith(t, gatewaytest.Options{}, mutate...)
}

// startWith is start with the options of o.
func startWith(t *testing.T, o gatewaytest.Options, mutate ...func(*config.Config)) *env {
	t.Helper()
	return &env{gatewaytest.Start(t, o, mutate...)}
}

// checkedClient returns an HTTP client whose responses are checked against
// openapi/batchgate.yaml (gatewaytest.OpenAPITransport), for helpers that
// have a URL but no env (an env's HTTP is checked the same way).
func checkedClient(t *testing.T) *http.Client {
	t.Helper()
	return &http.Client{Transport: gatewaytest.OpenAPITransport(t, http.DefaultTransport)}
}

// getJSON GETs a JSON object from the gateway's HTTP port, its response
// checked against openapi/batchgate.yaml.
func getJSON(t *testing.T, url string, header http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	return getJSONWith(t, checkedClient(t), url, header)
}

// getJSONWith is getJSON with client hc.
func getJSONWith(t *testing.T, hc *http.Client, url string, header http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET %s: body %q is not a JSON object: %v", url, body, err)
	}
	return resp.StatusCode, resp.Header, m
}

func TestGetBatchGRPC(t *testing.T) {
	t.Parallel()
	// batch_demo_progress validates for one Phase; an hour outlasts the
	// wait of parallel subtests for a slot on a busy machine (the default
	// 10 s did not).
	e := startWith(t, gatewaytest.Options{Sim: simulator.Options{Phase: time.Hour}})
	tests := []struct {
		id       string
		status   batchv1.BatchStatus
		hasOut   bool
		hasError bool
	}{
		{simulator.DemoCompleted, batchv1.BatchStatus_BATCH_STATUS_COMPLETED, true, false},
		{simulator.DemoFailed, batchv1.BatchStatus_BATCH_STATUS_FAILED, false, true},
		{simulator.DemoExpired, batchv1.BatchStatus_BATCH_STATUS_EXPIRED, true, false},
		{simulator.DemoCancelled, batchv1.BatchStatus_BATCH_STATUS_CANCELLED, false, false},
		{simulator.DemoProgress, batchv1.BatchStatus_BATCH_STATUS_VALIDATING, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			t.Parallel()
			resp, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: tt.id})
			if err != nil {
				t.Fatalf("GetBatch: %v", err)
			}
			b := resp.GetBatch()
			if b.GetId() != tt.id || b.GetStatus() != tt.status || b.GetObject() != "batch" {
				t.Fatalf("got id=%q status=%v object=%q", b.GetId(), b.GetStatus(), b.GetObject())
			}
			if b.OutputFileId != nil != tt.hasOut {
				t.Errorf("output_file_id = %v, want present=%v", b.OutputFileId, tt.hasOut)
			}
			if (b.GetErrors() != nil) != tt.hasError {
				t.Errorf("errors = %v, want present=%v", b.GetErrors(), tt.hasError)
			}
			if b.GetCreatedAt() == 0 || b.GetRequestCounts() == nil {
				t.Errorf("created_at/request_counts missing: %v", b)
			}
		})
	}
}

// TestGetBatchRESTMatchesUpstream checks the drop-in promise: for every
// static demo batch, the gateway's JSON equals the upstream's JSON.
func TestGetBatchRESTMatchesUpstream(t *testing.T) {
	t.Parallel()
	e := start(t)
	auth := http.Header{"Authorization": {"Bearer " + testKey}}
	for _, id := range []string{simulator.DemoCompleted, simulator.DemoFailed, simulator.DemoExpired, simulator.DemoCancelled} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			// The upstream's answer is not the gateway's: not checked.
			upCode, _, want := getJSONWith(t, http.DefaultClient, e.Upstream.URL+"/v1/batches/"+id, auth)
			code, h, got := getJSON(t, e.BaseURL+"/v1/batches/"+id, nil)
			if upCode != 200 || code != 200 {
				t.Fatalf("status upstream=%d gateway=%d", upCode, code)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if !reflect.DeepEqual(got, want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(want)
				t.Fatalf("gateway JSON differs from upstream JSON\n got: %s\nwant: %s", g, w)
			}
		})
	}
}

func TestGetBatchErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		id         string
		path       string // REST path, default /v1/batches/{id}
		faults     []simulator.Fault
		key        string // upstream key the gateway uses, default testKey
		attempts   int    // upstream attempts per call, default 3
		timeout    time.Duration
		code       codes.Code
		httpStatus int
		errType    string
		retryAfter string
		upstreamN  int64 // GETs the simulator served for id; -1 skips the check
	}{
		{name: "unknown batch", id: "batch_nope", code: codes.NotFound, httpStatus: 404, errType: "not_found_error", upstreamN: 2},
		{name: "invalid id", id: "bad.id", code: codes.InvalidArgument, httpStatus: 400, errType: "invalid_request_error", upstreamN: 0},
		// Over REST an escaped slash makes a path no route matches.
		{name: "escaped slash", id: "a/b", path: "/v1/batches/a%2Fb", code: codes.InvalidArgument, httpStatus: 404, errType: "invalid_request_error", upstreamN: 0},
		{name: "wrong upstream key", id: simulator.DemoCompleted, key: "sk-wrong", code: codes.Unauthenticated, httpStatus: 401, errType: "invalid_api_key", upstreamN: -1},
		{name: "insufficient balance", id: simulator.DemoCompleted,
			faults: []simulator.Fault{{Status: 402, Type: "insufficient_balance"}, {Status: 402, Type: "insufficient_balance"}},
			code:   codes.FailedPrecondition, httpStatus: 402, errType: "insufficient_balance", upstreamN: 2},
		{name: "rate limited throughout", id: simulator.DemoCompleted,
			faults: repeat(simulator.Fault{Status: 429, RetryAfter: "0", Type: "rate_limit_error"}, 6),
			code:   codes.ResourceExhausted, httpStatus: 429, errType: "rate_limit_error", upstreamN: 6},
		{name: "upstream down", id: simulator.DemoCompleted,
			faults: repeat(simulator.Fault{Status: 503}, 6),
			code:   codes.Unavailable, httpStatus: 503, errType: "api_error", upstreamN: 6},
		{name: "malformed upstream JSON", id: simulator.DemoCompleted,
			faults: repeat(simulator.Fault{Status: 200, Body: `{"id":"batch_demo_completed","status":`}, 2),
			code:   codes.Internal, httpStatus: 502, errType: "api_error", upstreamN: 2},
		{name: "upstream too slow", id: simulator.DemoCompleted, attempts: 1, timeout: 50 * time.Millisecond,
			faults: repeat(simulator.Fault{Delay: time.Minute}, 2),
			code:   codes.DeadlineExceeded, httpStatus: 504, errType: "api_error", upstreamN: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, func(c *config.Config) {
				if tt.key != "" {
					c.Upstream.APIKey = tt.key
				}
				if tt.attempts != 0 {
					c.Upstream.MaxAttempts = tt.attempts
				}
				if tt.timeout != 0 {
					c.Upstream.AttemptTimeout = tt.timeout
				}
			})
			e.Sim.InjectFaults(tt.id, tt.faults...)
			_, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: tt.id})
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("gRPC code = %v (%v), want %v", st.Code(), err, tt.code)
			}
			if tt.code != codes.InvalidArgument && errorInfo(st) == nil {
				t.Errorf("no ErrorInfo detail on %v", st)
			}
			if strings.Contains(st.Message(), testKey) || strings.Contains(st.Message(), tt.key+"x") {
				t.Errorf("message leaks the key: %q", st.Message())
			}

			path := tt.path
			if path == "" {
				path = "/v1/batches/" + tt.id
			}
			code, _, body := getJSON(t, e.BaseURL+path, nil)
			if code != tt.httpStatus {
				t.Errorf("HTTP status = %d, want %d (body %v)", code, tt.httpStatus, body)
			}
			env, ok := body["error"].(map[string]any)
			if !ok {
				t.Fatalf("no error envelope: %v", body)
			}
			if env["type"] != tt.errType {
				t.Errorf("envelope type = %v, want %q", env["type"], tt.errType)
			}
			for _, k := range []string{"message", "param", "code"} {
				if _, ok := env[k]; !ok {
					t.Errorf("envelope lacks %q: %v", k, env)
				}
			}
			if tt.upstreamN >= 0 {
				// Each of the two calls (gRPC, REST) makes its attempts.
				if got := e.Sim.BatchRequests(tt.id); got != tt.upstreamN {
					t.Errorf("upstream GETs for %q = %d, want %d", tt.id, got, tt.upstreamN)
				}
			}
		})
	}
}

func TestRetryAfterReachesClients(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config) { c.Upstream.MaxAttempts = 1 })
	e.Sim.InjectFaults(simulator.DemoCompleted,
		simulator.Fault{Status: 429, RetryAfter: "7", Type: "rate_limit_error"},
		simulator.Fault{Status: 429, RetryAfter: "7", Type: "rate_limit_error"})

	_, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
	st := status.Convert(err)
	var delay time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	if st.Code() != codes.ResourceExhausted || delay != 7*time.Second {
		t.Fatalf("got %v with RetryInfo %v, want ResourceExhausted with 7s", st.Code(), delay)
	}
	code, h, _ := getJSON(t, e.BaseURL+"/v1/batches/"+simulator.DemoCompleted, nil)
	if code != 429 || h.Get("Retry-After") != "7" {
		t.Fatalf("REST: status %d Retry-After %q, want 429 and 7", code, h.Get("Retry-After"))
	}
}

func TestTransientFaultsAreRetried(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.Sim.InjectFaults(simulator.DemoCompleted, simulator.Fault{Status: 503}, simulator.Fault{Status: 429, RetryAfter: "0"})
	resp, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
	if err != nil {
		t.Fatalf("GetBatch after a 503 and a 429: %v", err)
	}
	if resp.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_COMPLETED {
		t.Fatalf("status = %v", resp.GetBatch().GetStatus())
	}
	if n := e.Sim.BatchRequests(simulator.DemoCompleted); n != 3 {
		t.Fatalf("upstream GETs = %d, want 3", n)
	}
}

func TestRoutingErrorsUseEnvelope(t *testing.T) {
	t.Parallel()
	e := start(t)
	code, _, body := getJSON(t, e.BaseURL+"/v1/nothing-here", nil)
	if code != 404 {
		t.Fatalf("status = %d, want 404", code)
	}
	if _, ok := body["error"].(map[string]any); !ok {
		t.Fatalf("no envelope: %v", body)
	}
	for _, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
		resp, err := e.HTTP.Post(e.BaseURL+"/v1/batches/"+simulator.DemoCompleted, ct, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST (%s) on a GET route: status %d, want 405", ct, resp.StatusCode)
		}
	}
}

func TestHealthAndReflection(t *testing.T) {
	t.Parallel()
	e := start(t)
	hc := healthpb.NewHealthClient(e.Conn)
	for _, svc := range []string{"", "batch.v1.BatchService"} {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, resp, err)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := e.HTTP.Get(e.BaseURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(e.Conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: ""},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), "batch.v1.BatchService") {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestDemoMode(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Auth.Mode = "none"
	cfg.Demo = true
	cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	ids := g.DemoBatchIDs()
	if len(ids) == 0 {
		t.Fatal("no demo batch ids")
	}
	for _, id := range ids {
		code, _, body := getJSON(t, "http://"+g.HTTPAddr().String()+"/v1/batches/"+id, nil)
		if code != 200 || body["id"] != id {
			t.Fatalf("demo batch %s: %d %v", id, code, body)
		}
	}
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return i
		}
	}
	return nil
}

func repeat(f simulator.Fault, n int) []simulator.Fault {
	out := make([]simulator.Fault, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// TestHugeGRPCMetadataRefused: a call whose header list exceeds 64 KiB is
// refused, and the gateway keeps serving.
func TestHugeGRPCMetadataRefused(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "x-junk", strings.Repeat("a", 100<<10))
	if _, err := e.Client.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted}); err == nil {
		t.Fatal("a 100 KiB header list was accepted")
	}
	if _, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted}); err != nil {
		t.Fatalf("the gateway stopped serving: %v", err)
	}
}

func TestHeadIsGetWithoutBody(t *testing.T) {
	t.Parallel()
	e := start(t)
	tests := []struct {
		path   string
		status int
	}{
		{"/v1/batches/" + simulator.DemoCompleted, http.StatusOK},
		{"/v1/batches/batch_nope", http.StatusNotFound},
		{"/v1/batches/" + simulator.DemoCompleted + "/watch", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		resp, err := e.HTTP.Head(e.BaseURL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || len(body) != 0 {
			t.Errorf("HEAD %s: %d with %d body bytes, want %d and none", tt.path, resp.StatusCode, len(body), tt.status)
		}
		if tt.status == http.StatusOK && resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("HEAD %s: Content-Type %q", tt.path, resp.Header.Get("Content-Type"))
		}
	}
}
