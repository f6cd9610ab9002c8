package auth

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/upstream"
)

// Response header keys the echo service reports the Caller in.
const (
	hdrCaller = "x-test-caller"
	hdrHash   = "x-test-credential-hash"
)

// echoService is a BatchService that reports the Caller it finds in the
// context as response headers, and, when up is set, fetches the batch from
// the upstream with the call's context.
type echoService struct {
	batchv1.UnimplementedBatchServiceServer
	up *upstream.Client
}

func callerHeader(ctx context.Context) (metadata.MD, error) {
	c, ok := FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "the handler found no Caller")
	}
	return metadata.Pairs(hdrCaller, c.Name, hdrHash, c.CredentialHash), nil
}

func (s *echoService) GetBatch(ctx context.Context, req *batchv1.GetBatchRequest) (*batchv1.GetBatchResponse, error) {
	md, err := callerHeader(ctx)
	if err != nil {
		return nil, err
	}
	if err := grpc.SetHeader(ctx, md); err != nil {
		return nil, err
	}
	if s.up == nil {
		return &batchv1.GetBatchResponse{Batch: &batchv1.Batch{Id: req.GetBatchId()}}, nil
	}
	b, err := s.up.GetBatch(ctx, req.GetBatchId())
	if err != nil {
		return nil, apierr.FromError(err).Err()
	}
	return &batchv1.GetBatchResponse{Batch: b}, nil
}

func (s *echoService) WatchBatch(req *batchv1.WatchBatchRequest, stream batchv1.BatchService_WatchBatchServer) error {
	md, err := callerHeader(stream.Context())
	if err != nil {
		return err
	}
	if err := stream.SetHeader(md); err != nil {
		return err
	}
	return stream.Send(&batchv1.WatchBatchResponse{
		Type:  batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT,
		Batch: &batchv1.Batch{Id: req.GetBatchId()},
	})
}

// testServer is a gRPC server on a loopback port with a's interceptors,
// the echo service and health, and a client connection to it.
type testServer struct {
	batch  batchv1.BatchServiceClient
	health healthpb.HealthClient
}

func startServer(t *testing.T, a *Authenticator, svc *echoService) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(a.UnaryInterceptor()), grpc.StreamInterceptor(a.StreamInterceptor()))
	batchv1.RegisterBatchServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
	})
	return &testServer{batch: batchv1.NewBatchServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}

// withAuth returns a context that sends authorization as metadata, or
// none when it is "".
func withAuth(t *testing.T, authorization string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if authorization == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", authorization)
}

// getBatch calls GetBatch and returns the Caller the handler saw.
func (s *testServer) getBatch(ctx context.Context, id string) (Caller, *batchv1.Batch, error) {
	var hdr metadata.MD
	resp, err := s.batch.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: id}, grpc.Header(&hdr))
	return headerCaller(hdr), resp.GetBatch(), err
}

// watchBatch runs WatchBatch to its end and returns the Caller the handler
// saw.
func (s *testServer) watchBatch(ctx context.Context, id string) (Caller, error) {
	stream, err := s.batch.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: id})
	if err != nil {
		return Caller{}, err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			hdr, _ := stream.Header()
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return headerCaller(hdr), err
		}
	}
}

func headerCaller(md metadata.MD) Caller {
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return Caller{Name: first(hdrCaller), CredentialHash: first(hdrHash)}
}

func TestInterceptorsKeyMode(t *testing.T) {
	t.Parallel()
	s := startServer(t, newAuth(t, ModeKey, goodTokensFile), &echoService{})
	tests := []struct {
		name          string
		authorization string
		want          Caller
		code          codes.Code
	}{
		{"no token", "", Caller{}, codes.Unauthenticated},
		{"wrong scheme", "Basic " + aliceToken, Caller{}, codes.Unauthenticated},
		{"wrong token", "Bearer " + carolToken, Caller{}, codes.Unauthenticated},
		{"alice", "Bearer " + aliceToken, Caller{Name: "alice"}, codes.OK},
		{"bob, lower-case scheme", "bearer " + bobToken, Caller{Name: "bob"}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for kind, call := range map[string]func(context.Context) (Caller, error){
				"unary": func(ctx context.Context) (Caller, error) {
					c, _, err := s.getBatch(ctx, "batch_1")
					return c, err
				},
				"stream": func(ctx context.Context) (Caller, error) { return s.watchBatch(ctx, "batch_1") },
			} {
				got, err := call(withAuth(t, tt.authorization))
				if status.Code(err) != tt.code {
					t.Errorf("%s: err = %v, want code %v", kind, err, tt.code)
				}
				if got != tt.want {
					t.Errorf("%s: handler saw %+v, want %+v", kind, got, tt.want)
				}
				if err != nil && strings.Contains(err.Error(), "SECRET") {
					t.Errorf("%s: error %q quotes the token", kind, err)
				}
			}
		})
	}
}

func TestInterceptorsHealthExempt(t *testing.T) {
	t.Parallel()
	s := startServer(t, newAuth(t, ModeKey, goodTokensFile), &echoService{})
	ctx := withAuth(t, "")
	resp, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check without a token = %v, %v; want SERVING", resp, err)
	}
	// The streaming health call goes through the stream interceptor.
	w, err := s.health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch without a token = %v, %v; want SERVING", resp, err)
	}
}

func TestExempt(t *testing.T) {
	t.Parallel()
	for method, want := range map[string]bool{
		"/grpc.health.v1.Health/Check":                                   true,
		"/grpc.health.v1.Health/Watch":                                   true,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      true,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": true,
		"/batch.v1.BatchService/GetBatch":                                false,
		"/batch.v1.BatchService/WatchBatch":                              false,
		"/grpc.health.v1.HealthX/Check":                                  false,
		"/grpc.health.v1.Health":                                         false,
		"/evil.v1.Svc/grpc.health.v1.Health/Check":                       false,
		"grpc.health.v1.Health/Check":                                    false,
		"/grpc.reflection.v1.ServerReflectionExtra/ServerReflectionInfo": false,
	} {
		if got := exempt(method); got != want {
			t.Errorf("exempt(%q) = %v, want %v", method, got, want)
		}
	}
}

func TestInterceptorsNoneMode(t *testing.T) {
	t.Parallel()
	s := startServer(t, newAuth(t, ModeNone, ""), &echoService{})
	want := Caller{Name: AnonymousName}
	if c, _, err := s.getBatch(withAuth(t, ""), "batch_1"); err != nil || c != want {
		t.Errorf("unary: %+v, %v", c, err)
	}
	if c, err := s.watchBatch(withAuth(t, "Bearer whatever"), "batch_1"); err != nil || c != want {
		t.Errorf("stream: %+v, %v", c, err)
	}
}

// Upstream keys of the passthrough test. Each sees its own batch only.
const (
	aliceKey   = "sk-alice-SECRET-upstream-1111"
	bobKey     = "sk-bob-SECRET-upstream-2222"
	gatewayKey = "sk-gateway-SECRET-own-3333"
)

// TestInterceptorsPassthrough runs calls with two upstream keys through the
// interceptors and a real upstream.Client: each caller's own key reaches
// the upstream (never the gateway's), each sees only its own batch, and
// the Callers differ between keys and agree for one key.
func TestInterceptorsPassthrough(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	owner := map[string]string{"Bearer " + aliceKey: "batch_alice", "Bearer " + bobKey: "batch_bob"}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		batch, known := owner[r.Header.Get("Authorization")]
		switch {
		case !known:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
		case r.URL.Path != "/v1/batches/"+batch:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"message":"No such batch","type":"invalid_request_error"}}`)
		default:
			io.WriteString(w, `{"id":"`+batch+`","object":"batch","status":"completed"}`)
		}
	}))
	t.Cleanup(up.Close)
	client, err := upstream.New(upstream.Config{BaseURL: up.URL, APIKey: gatewayKey, HTTPClient: up.Client(), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, newAuth(t, ModePassthrough, ""), &echoService{up: client})

	alice1, b, err := s.getBatch(withAuth(t, "Bearer "+aliceKey), "batch_alice")
	if err != nil || b.GetId() != "batch_alice" {
		t.Fatalf("alice, her batch: %v, %v", b, err)
	}
	alice2, _, err := s.getBatch(withAuth(t, "Bearer "+aliceKey), "batch_bob")
	if status.Code(err) != codes.NotFound {
		t.Errorf("alice, bob's batch: err = %v, want NotFound", err)
	}
	bob, b, err := s.getBatch(withAuth(t, "Bearer "+bobKey), "batch_bob")
	if err != nil || b.GetId() != "batch_bob" {
		t.Fatalf("bob, his batch: %v, %v", b, err)
	}
	if alice1 != alice2 || alice1.CredentialHash == "" {
		t.Errorf("one key, two Callers: %+v, %+v", alice1, alice2)
	}
	if alice1.CredentialHash == bob.CredentialHash || alice1.Name == bob.Name {
		t.Errorf("two keys, one Caller: %+v, %+v", alice1, bob)
	}
	if streamed, err := s.watchBatch(withAuth(t, "Bearer "+bobKey), "batch_bob"); err != nil || streamed != bob {
		t.Errorf("stream as bob: %+v, %v; want %+v", streamed, err, bob)
	}

	before := calls.Load()
	if _, _, err := s.getBatch(withAuth(t, ""), "batch_alice"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no key: err = %v, want Unauthenticated", err)
	}
	if n := calls.Load() - before; n != 0 {
		t.Errorf("a call without a key reached the upstream (%d requests)", n)
	}
	_, _, err = s.getBatch(withAuth(t, "Bearer sk-unknown-SECRET-4444"), "batch_alice")
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("unknown key: err = %v, want the upstream's 401 as Unauthenticated", err)
	}
	if err != nil && strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %q quotes a key", err)
	}
}
