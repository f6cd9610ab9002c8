package inproc_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/inproc"
	"github.com/batchgate/batchgate/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// scripted is a BatchServiceServer and FileServiceServer whose calls do
// what their fields say.
type scripted struct {
	batchv1.UnimplementedBatchServiceServer
	batchv1.UnimplementedFileServiceServer
	n     int                       // WatchBatch: events to send
	block bool                      // WatchBatch: then wait for the context
	end   error                     // WatchBatch: then return this
	ended chan error                // WatchBatch's return value
	last  *batchv1.GetBatchResponse // GetBatch's last answer
}

func (s *scripted) GetBatch(ctx context.Context, req *batchv1.GetBatchRequest) (*batchv1.GetBatchResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if err := grpc.SetHeader(ctx, metadata.MD{"x-seen": md.Get("x-in")}); err != nil {
		return nil, err
	}
	if req.GetBatchId() == "missing" {
		return nil, status.Error(codes.NotFound, "no such batch")
	}
	s.last = &batchv1.GetBatchResponse{Batch: &batchv1.Batch{Id: req.GetBatchId(), Metadata: &batchv1.Metadata{Pairs: map[string]string{"k": "v"}}}}
	return s.last, nil
}

func (s *scripted) WatchBatch(_ *batchv1.WatchBatchRequest, stream batchv1.BatchService_WatchBatchServer) (err error) {
	defer func() { s.ended <- err }()
	for i := range s.n {
		if err := stream.Send(&batchv1.WatchBatchResponse{Sequence: uint64(i + 1)}); err != nil {
			return err
		}
	}
	if s.block {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return s.end
}

// UploadFile counts the bytes of the chunks after a metadata message.
func (s *scripted) UploadFile(stream batchv1.FileService_UploadFileServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetMetadata() == nil {
		return status.Error(codes.InvalidArgument, "metadata first")
	}
	var n int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&batchv1.File{Filename: first.GetMetadata().GetFilename(), Bytes: n})
		}
		if err != nil {
			return err
		}
		n += int64(len(msg.GetChunk()))
	}
}

func newConn(srv *scripted, unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) *inproc.Conn {
	c := inproc.New(unary, stream)
	batchv1.RegisterBatchServiceServer(c, srv)
	batchv1.RegisterFileServiceServer(c, srv)
	return c
}

// TestUnary: a unary call runs behind the interceptor with the caller's
// outgoing metadata as incoming, hands headers to grpc.Header, shares the
// answer's sub-messages instead of copying them, and passes errors as they
// are.
func TestUnary(t *testing.T) {
	t.Parallel()
	var method string
	srv := &scripted{}
	conn := newConn(srv, []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		method = info.FullMethod
		return h(ctx, req)
	}}, nil)
	client := batchv1.NewBatchServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-in", "hello")
	var header metadata.MD
	resp, err := client.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: "b1"}, grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetBatch().GetId() != "b1" || resp.GetBatch().GetMetadata().GetPairs()["k"] != "v" {
		t.Fatalf("got %v", resp)
	}
	if method != batchv1.BatchService_GetBatch_FullMethodName {
		t.Errorf("interceptor saw %q", method)
	}
	if got := header.Get("x-seen"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("header x-seen = %q, want [hello]", got)
	}
	if _, err := client.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: "missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("missing: %v, want NotFound", err)
	}
	if _, err := client.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: "b1"}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unimplemented method: %v", err)
	}
	if err := conn.Invoke(ctx, "/no.Such/Method", &batchv1.GetBatchRequest{}, &batchv1.GetBatchResponse{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v", err)
	}
}

// TestCallUnary: CallUnary runs the handler behind the interceptors with
// ctx's incoming metadata, returns the handler's own answer and the
// headers it set (on errors too), and refuses unknown methods.
func TestCallUnary(t *testing.T) {
	t.Parallel()
	calls := 0
	srv := &scripted{}
	conn := newConn(srv, []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls++
		return h(ctx, req)
	}}, nil)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-in", "direct"))
	req := &batchv1.GetBatchRequest{BatchId: "b1"}
	reply, header, trailer, err := conn.CallUnary(ctx, batchv1.BatchService_GetBatch_FullMethodName, req)
	if err != nil {
		t.Fatal(err)
	}
	if reply != any(srv.last) || srv.last == nil {
		t.Errorf("reply %p is not the handler's answer %p", reply, srv.last)
	}
	if got := header.Get("x-seen"); len(got) != 1 || got[0] != "direct" {
		t.Errorf("header x-seen = %q, want [direct]", got)
	}
	if trailer != nil {
		t.Errorf("trailer = %v, want none", trailer)
	}
	_, header, _, err = conn.CallUnary(ctx, batchv1.BatchService_GetBatch_FullMethodName, &batchv1.GetBatchRequest{BatchId: "missing"})
	if status.Code(err) != codes.NotFound || len(header.Get("x-seen")) != 1 {
		t.Errorf("missing: %v with header %v, want NotFound with x-seen", err, header)
	}
	if _, _, _, err := conn.CallUnary(ctx, "/no.Such/Method", req); status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v", err)
	}
	if calls != 2 {
		t.Errorf("interceptor ran %d times, want 2", calls)
	}
}

func TestServerStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int
		end     error
		wantErr codes.Code // codes.OK: io.EOF
	}{
		{"events then OK", 3, nil, codes.OK},
		{"events then an error", 2, status.Error(codes.NotFound, "gone"), codes.NotFound},
		{"no events", 0, status.Error(codes.InvalidArgument, "bad"), codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := &scripted{n: tt.n, end: tt.end, ended: make(chan error, 1)}
			var intercepted bool
			conn := newConn(srv, nil, []grpc.StreamServerInterceptor{
				func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
					intercepted = info.FullMethod == batchv1.BatchService_WatchBatch_FullMethodName && info.IsServerStream
					return h(srv, ss)
				},
			})
			stream, err := batchv1.NewBatchServiceClient(conn).WatchBatch(context.Background(), &batchv1.WatchBatchRequest{BatchId: "b"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.n {
				ev, err := stream.Recv()
				if err != nil || ev.GetSequence() != uint64(i+1) {
					t.Fatalf("event %d: %v, %v", i+1, ev, err)
				}
			}
			_, err = stream.Recv()
			if tt.wantErr == codes.OK {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("end: %v, want io.EOF", err)
				}
			} else if status.Code(err) != tt.wantErr {
				t.Fatalf("end: %v, want %v", err, tt.wantErr)
			}
			if !intercepted {
				t.Error("the stream interceptor did not run")
			}
		})
	}
}

// TestServerStreamCancel: cancelling the caller's context ends the
// handler, also while it waits to hand over an event nobody reads.
func TestServerStreamCancel(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 5} {
		srv := &scripted{n: n, block: true, ended: make(chan error, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := batchv1.NewBatchServiceClient(newConn(srv, nil, nil)).WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: "b"}); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-srv.ended:
			if status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
				t.Fatalf("n=%d: handler ended with %v", n, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("n=%d: the handler did not end after cancel", n)
		}
	}
}

// TestClientStream: an upload's messages reach the handler in order, its
// answer comes back after CloseSend, and a handler that fails early makes
// Send return io.EOF and CloseAndRecv the error.
func TestClientStream(t *testing.T) {
	t.Parallel()
	client := batchv1.NewFileServiceClient(newConn(&scripted{}, nil, nil))
	stream, err := client.UploadFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	send := func(m *batchv1.UploadFileRequest) {
		t.Helper()
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Metadata{Metadata: &batchv1.UploadFileMetadata{Filename: "in.jsonl"}}})
	for range 3 {
		send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Chunk{Chunk: make([]byte, 1000)}})
	}
	f, err := stream.CloseAndRecv()
	if err != nil || f.GetBytes() != 3000 || f.GetFilename() != "in.jsonl" {
		t.Fatalf("got %v, %v; want 3000 bytes of in.jsonl", f, err)
	}

	bad, err := client.UploadFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	for range 3 { // the handler returns after the first
		if sendErr = bad.Send(&batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Chunk{Chunk: []byte("x")}}); sendErr != nil {
			break
		}
	}
	if !errors.Is(sendErr, io.EOF) {
		t.Errorf("Send after the handler failed: %v, want io.EOF", sendErr)
	}
	if _, err := bad.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CloseAndRecv: %v, want InvalidArgument", err)
	}
}
