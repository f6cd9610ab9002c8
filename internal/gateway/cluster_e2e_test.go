package gateway_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/simulator"
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
