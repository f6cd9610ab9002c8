package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
)

// grpcTLS and httpsClient make TLS clients trusting pool, presenting
// certs (none: no client certificate).
func grpcTLS(pool *x509.CertPool, certs ...tls.Certificate) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}))
}

func httpsClient(pool *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
}

// TestTLS serves both ports over TLS, then mTLS, with certificates made
// up here, and checks who gets through.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca, otherCA := testutil.NewCA(t, "batchgate test CA"), testutil.NewCA(t, "some other CA")
	dir := t.TempDir()
	srvCert, srvKey := ca.Issue(t, "batchgate", true)
	certFile, keyFile := testutil.WriteFile(t, dir, "server.pem", srvCert), testutil.WriteFile(t, dir, "server-key.pem", srvKey)
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	client := ca.ClientCert(t, "svc-a")
	stranger := otherCA.ClientCert(t, "svc-a") // same name, wrong CA

	for _, mtls := range []bool{false, true} {
		name := "tls"
		if mtls {
			name = "mtls"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var certs []tls.Certificate
			if mtls {
				certs = []tls.Certificate{client}
			}
			e := startWith(t, gatewaytest.Options{Dial: []grpc.DialOption{grpcTLS(ca.Pool, certs...)}, HTTPClient: httpsClient(ca.Pool, certs...)},
				func(c *config.Config) {
					c.Server.TLSCert, c.Server.TLSKey = certFile, keyFile
					if mtls {
						c.Server.TLSClientCA = caFile
					}
				})
			addr := e.GW.GRPCAddr().String()

			t.Run("grpc client trusting the CA", func(t *testing.T) {
				t.Parallel()
				resp, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
				if err != nil || resp.GetBatch().GetId() != simulator.DemoCompleted {
					t.Fatalf("GetBatch over TLS: %v, %v", resp, err)
				}
				h, err := healthpb.NewHealthClient(e.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
				if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("health over TLS: %v, %v", h, err)
				}
				w := e.watch(t, simulator.DemoCompleted)
				if ev := w.next(t); !ev.GetTerminal() {
					t.Fatalf("watch over TLS: %v", ev)
				}
				if st := w.end(t); st.Code() != codes.OK {
					t.Fatalf("watch over TLS ended with %v", st)
				}
			})
			t.Run("https client trusting the CA", func(t *testing.T) {
				t.Parallel()
				for _, path := range []string{"/healthz", "/readyz", "/v1/batches/" + simulator.DemoCompleted} {
					resp, body := restRequest(t, e, http.MethodGet, path, "", nil, nil)
					if resp.StatusCode != http.StatusOK || resp.TLS == nil {
						t.Fatalf("GET %s over TLS: %d %s (TLS %v)", path, resp.StatusCode, body, resp.TLS != nil)
					}
					if resp.ProtoMajor != 2 {
						t.Errorf("GET %s: %s, want HTTP/2 (ALPN)", path, resp.Proto)
					}
				}
				// A REST watch streams over HTTP/2 and TLS.
				w := openRESTWatch(t, e, simulator.DemoCompleted, "", nil)
				if w.resp.StatusCode != http.StatusOK {
					t.Fatalf("REST watch over TLS: status %d", w.resp.StatusCode)
				}
				if ev := w.next(t); ev.Type != "snapshot" || !ev.Terminal {
					t.Fatalf("REST watch over TLS: %+v", ev)
				}
				w.end(t)
			})
			t.Run("plaintext grpc client", func(t *testing.T) {
				t.Parallel()
				expectGRPCRefused(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			})
			t.Run("plaintext http client", func(t *testing.T) {
				t.Parallel()
				// Not through e.HTTP: the answer is Go's TLS server's, not the
				// REST API's, so openapi/batchgate.yaml does not describe it.
				resp, err := http.Get("http://" + e.GW.HTTPAddr().String() + "/v1/batches/" + simulator.DemoCompleted)
				if err == nil {
					resp.Body.Close()
					// Go's TLS server answers plain HTTP with a 400.
					if resp.StatusCode != http.StatusBadRequest {
						t.Fatalf("plaintext HTTP to the TLS port: %d, want 400 or an error", resp.StatusCode)
					}
				}
			})
			t.Run("clients not trusting the server", func(t *testing.T) {
				t.Parallel()
				expectGRPCRefused(t, addr, grpcTLS(otherCA.Pool, certs...))
				expectHTTPSRefused(t, e, httpsClient(otherCA.Pool, certs...))
			})
			if !mtls {
				return
			}
			t.Run("mtls without a client certificate", func(t *testing.T) {
				t.Parallel()
				expectGRPCRefused(t, addr, grpcTLS(ca.Pool))
				expectHTTPSRefused(t, e, httpsClient(ca.Pool))
			})
			t.Run("mtls with a certificate from another CA", func(t *testing.T) {
				t.Parallel()
				expectGRPCRefused(t, addr, grpcTLS(ca.Pool, stranger))
				expectHTTPSRefused(t, e, httpsClient(ca.Pool, stranger))
			})
		})
	}
}

// expectGRPCRefused checks that a client dialled with opt cannot call:
// the connection fails, so calls fail with Unavailable.
func expectGRPCRefused(t *testing.T, addr string, opt grpc.DialOption) {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), restWatchGuard)
	defer cancel()
	_, err = batchv1.NewBatchServiceClient(conn).GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
	if st := status.Convert(err); st.Code() != codes.Unavailable {
		t.Fatalf("GetBatch: %v, want Unavailable (a failed handshake)", err)
	}
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable {
		t.Fatalf("health: %v, want Unavailable (a failed handshake)", err)
	}
}

// expectHTTPSRefused checks that hc's requests fail in the handshake (the
// error's wording varies with the protocol and the side that notices).
func expectHTTPSRefused(t *testing.T, e *e2e, hc *http.Client) {
	t.Helper()
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), restWatchGuard)
	defer cancel()
	for _, path := range []string{"/readyz", "/v1/batches/" + simulator.DemoCompleted} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.BaseURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s: %d, want a failed handshake", path, resp.StatusCode)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("GET %s: %v, want a failed handshake", path, err)
		}
	}
}

// TestTLSBadMaterial: New fails, naming the problem, for missing or
// mismatched files, and starts nothing.
func TestTLSBadMaterial(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "batchgate test CA")
	dir := t.TempDir()
	c1, k1 := ca.Issue(t, "one", true)
	_, k2 := ca.Issue(t, "two", true)
	cert, key := testutil.WriteFile(t, dir, "c1.pem", c1), testutil.WriteFile(t, dir, "k1.pem", k1)
	otherKey := testutil.WriteFile(t, dir, "k2.pem", k2)
	notPEM := testutil.WriteFile(t, dir, "junk.pem", []byte("not a certificate\n"))
	tests := []struct {
		name                string
		cert, key, clientCA string
	}{
		{"missing certificate", filepath.Join(dir, "nope.pem"), key, ""},
		{"key of another certificate", cert, otherKey, ""},
		{"client CA file missing", cert, key, filepath.Join(dir, "nope-ca.pem")},
		{"client CA without a certificate", cert, key, notPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Defaults()
			cfg.Auth.Mode = "none"
			cfg.Upstream.BaseURL, cfg.Upstream.APIKey = "http://127.0.0.1:1", testKey
			cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Server.TLSCert, cfg.Server.TLSKey, cfg.Server.TLSClientCA = tt.cert, tt.key, tt.clientCA
			g, err := gateway.New(t.Context(), cfg, nil)
			if err == nil {
				t.Fatalf("New succeeded (%v)", g.GRPCAddr())
			}
			if !strings.Contains(err.Error(), "tls") {
				t.Errorf("error %q does not say it is about TLS", err)
			}
		})
	}
}
