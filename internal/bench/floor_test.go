package bench

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/loadtest"
)

// startCannedGRPC serves resp from a plain gRPC server on loopback and
// returns a client connected to it.
func startCannedGRPC(b *testing.B, resp *batchv1.GetBatchResponse) batchv1.BatchServiceClient {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := loadtest.NewCannedGRPC(resp)
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return batchv1.NewBatchServiceClient(conn)
}

// startCannedHTTP serves body with contentType from a plain net/http
// server on loopback, for any request, and returns its base URL.
func startCannedHTTP(b *testing.B, contentType string, body []byte) string {
	b.Helper()
	srv := httptest.NewServer(loadtest.NewCannedHTTP(contentType, body))
	b.Cleanup(srv.Close)
	return srv.URL
}

// fetchREST returns the Content-Type and body of the gateway's REST
// answer at url, failing on anything but 200.
func fetchREST(b *testing.B, client *http.Client, url string) (string, []byte) {
	b.Helper()
	resp, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return resp.Header.Get("Content-Type"), body
}
