package gateway_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gateway"
	"github.com/batchgate/batchgate/internal/simulator"
	"github.com/batchgate/batchgate/internal/testutil"
)

// getText GETs a text page of the HTTP port.
func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// waitText waits until the page at url contains want, with status 200.
func waitText(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := getText(t, url)
		if code == http.StatusOK && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q, want %q", url, code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With -cluster-nats-url the gateway shares leases through NATS and says
// so on /readyz and /metrics; without a reachable NATS it stays ready,
// polls alone and says that.
func TestClusterReadiness(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	up := fmt.Sprintf("nats://%s", s.Addr().(*net.TCPAddr))

	// A port nobody listens on.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "nats://" + lis.Addr().String()
	lis.Close()

	for _, tt := range []struct{ name, url, ready, shared string }{
		{"shared", up, "cluster: sharing leases", "batchgate_cluster_shared 1"},
		{"nats unreachable", down, "cluster: NATS unavailable, polling alone", "batchgate_cluster_shared 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, func(c *config.Config) { c.Cluster = config.ClusterConfig{NATSURL: tt.url, Bucket: "gw"} })
			waitText(t, e.BaseURL+"/readyz", tt.ready)
			waitText(t, e.BaseURL+"/metrics", tt.shared)
			resp, err := e.Client.GetBatch(t.Context(), &batchv1.GetBatchRequest{BatchId: simulator.DemoCompleted})
			if err != nil || resp.GetBatch().GetStatus() != batchv1.BatchStatus_BATCH_STATUS_COMPLETED {
				t.Fatalf("GetBatch: %v %v", resp, err)
			}
			// The hub's and the fencing counts are exported with the rest.
			for _, m := range []string{"batchgate_cluster_shared_gets_total", "batchgate_cluster_states_followed_total", "batchgate_cluster_states_fenced_total"} {
				waitText(t, e.BaseURL+"/metrics", m+" ")
			}
		})
	}
}

// With -cluster-nats-ca, -cluster-nats-cert and -cluster-nats-key the
// gateway shares leases through a NATS that requires client certificates;
// with a TLS file missing or not PEM, New fails naming the flag, and does
// not start polling alone.
func TestClusterTLS(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "batchgate NATS CA")
	dir := t.TempDir()
	srvCert, srvKey := ca.Issue(t, "nats", true)
	c, k := ca.Issue(t, "gateway", false)
	_, otherKey := ca.Issue(t, "other", false)
	caFile, certFile, keyFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM), testutil.WriteFile(t, dir, "tls.crt", c), testutil.WriteFile(t, dir, "tls.key", k)
	otherKeyFile := testutil.WriteFile(t, dir, "other.key", otherKey)
	junk := testutil.WriteFile(t, dir, "junk.pem", []byte("sekrit, not PEM\n"))
	missing := filepath.Join(dir, "nope.pem")

	cert, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSTimeout: 2, TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	url := fmt.Sprintf("tls://%s", s.Addr().(*net.TCPAddr))

	t.Run("shared over mTLS", func(t *testing.T) {
		t.Parallel()
		e := start(t, func(c *config.Config) {
			c.Cluster = config.ClusterConfig{NATSURL: url, NATSCA: caFile, NATSCert: certFile, NATSKey: keyFile, Bucket: "gwtls"}
		})
		waitText(t, e.BaseURL+"/readyz", "cluster: sharing leases")
		waitText(t, e.BaseURL+"/metrics", "batchgate_cluster_shared 1")
	})
	for _, tt := range []struct {
		name, ca, cert, key, flag string
	}{
		{"CA missing", missing, certFile, keyFile, "-cluster-nats-ca (CLUSTER_NATS_CA)"},
		{"CA not PEM", junk, certFile, keyFile, "-cluster-nats-ca (CLUSTER_NATS_CA)"},
		{"certificate missing", caFile, missing, keyFile, "-cluster-nats-cert (CLUSTER_NATS_CERT)"},
		{"certificate not PEM", caFile, junk, keyFile, "-cluster-nats-cert (CLUSTER_NATS_CERT)"},
		{"key not PEM", caFile, certFile, junk, "-cluster-nats-key (CLUSTER_NATS_KEY)"},
		{"key of another certificate", caFile, certFile, otherKeyFile, "-cluster-nats-key (CLUSTER_NATS_KEY)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Defaults()
			cfg.Auth.Mode = "none"
			cfg.Upstream.BaseURL, cfg.Upstream.APIKey = "http://127.0.0.1:1", testKey
			cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Cluster = config.ClusterConfig{NATSURL: url, NATSCA: tt.ca, NATSCert: tt.cert, NATSKey: tt.key, Bucket: "gwtls"}
			g, err := gateway.New(t.Context(), cfg, nil)
			if err == nil {
				t.Fatalf("New succeeded (%v)", g.GRPCAddr())
			}
			if !strings.HasPrefix(err.Error(), tt.flag+": ") {
				t.Errorf("error %q does not start with the flag %s", err, tt.flag)
			}
			for _, leak := range []string{"sekrit", "BEGIN", string(k[40:60]), string(otherKey[40:60])} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q repeats a file's contents (%q)", err, leak)
				}
			}
		})
	}
}
