package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// cannedService answers every GetBatch with one pre-built response and
// does nothing else: no interceptors, no upstream call.
type cannedService struct {
	batchv1.UnimplementedBatchServiceServer
	resp *batchv1.GetBatchResponse
}

func (c *cannedService) GetBatch(context.Context, *batchv1.GetBatchRequest) (*batchv1.GetBatchResponse, error) {
	return c.resp, nil
}

// NewCannedGRPC returns a plain grpc.Server (no options) whose
// BatchService answers every GetBatch with resp: the gRPC canned hop of
// the floor.
func NewCannedGRPC(resp *batchv1.GetBatchResponse) *grpc.Server {
	srv := grpc.NewServer()
	batchv1.RegisterBatchServiceServer(srv, &cannedService{resp: proto.CloneOf(resp)})
	return srv
}

// NewCannedHTTP returns a plain handler that answers any request with body
// as contentType: the REST canned hop of the floor.
func NewCannedHTTP(contentType string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	})
}

// ServeCanned serves the canned hops of f on loopback ports until ctx
// ends: it prints their addresses to ready as one line (what RunFloor
// waits for), then serves.
func ServeCanned(ctx context.Context, f CannedFlags, ready io.Writer) error {
	body, err := os.ReadFile(f.BodyFile)
	if err != nil {
		return err
	}
	msg, err := os.ReadFile(f.ResponseFile)
	if err != nil {
		return err
	}
	resp := &batchv1.GetBatchResponse{}
	if err := proto.Unmarshal(msg, resp); err != nil {
		return fmt.Errorf("%s: %w", f.ResponseFile, err)
	}
	var lc net.ListenConfig
	hl, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gl, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		_ = hl.Close()
		return err
	}
	hs := &http.Server{Handler: NewCannedHTTP(f.ContentType, body), ReadHeaderTimeout: 10 * time.Second}
	gs := NewCannedGRPC(resp)
	if _, err := fmt.Fprintf(ready, cannedReady+"\n", hl.Addr(), gl.Addr()); err != nil {
		_ = hl.Close()
		_ = gl.Close()
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { return gs.Serve(gl) })
	g.Go(func() error {
		<-gctx.Done()
		gs.Stop()
		return hs.Close()
	})
	return g.Wait()
}
