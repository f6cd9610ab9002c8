package gateway

import (
	"context"
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/fanout"
)

// restClient is the BatchServiceClient that grpc-gateway's REST handlers
// call. Every RPC runs in process, through the REST interceptors: unary
// ones as direct calls, WatchBatch through a channel (grpc-gateway's own
// in-process registration cannot stream). There is no gRPC round trip per
// REST call.
type restClient struct {
	srv               batchv1.BatchServiceServer
	interceptor       grpc.UnaryServerInterceptor  // nil: none
	streamInterceptor grpc.StreamServerInterceptor // nil: none
}

// GetBatch implements batchv1.BatchServiceClient.
func (c *restClient) GetBatch(ctx context.Context, in *batchv1.GetBatchRequest, opts ...grpc.CallOption) (*batchv1.GetBatchResponse, error) {
	resp, err := c.unary(ctx, in, batchv1.BatchService_GetBatch_FullMethodName, opts, func(ctx context.Context, req any) (any, error) {
		return c.srv.GetBatch(ctx, req.(*batchv1.GetBatchRequest))
	})
	if err != nil {
		return nil, err
	}
	return resp.(*batchv1.GetBatchResponse), nil
}

// unary calls handler as the gRPC server would: with the caller's outgoing
// metadata as incoming metadata, a transport stream that collects headers
// and trailers, and the interceptor. It hands the headers and trailers to
// the grpc.Header and grpc.Trailer call options grpc-gateway passes.
func (c *restClient) unary(ctx context.Context, req any, method string, opts []grpc.CallOption, handler grpc.UnaryHandler) (any, error) {
	recordRoute(ctx)
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md)
	stream := &runtime.ServerTransportStream{}
	ctx = grpc.NewContextWithServerTransportStream(ctx, stream)

	var resp any
	var err error
	if c.interceptor != nil {
		resp, err = c.interceptor(ctx, req, &grpc.UnaryServerInfo{Server: c.srv, FullMethod: method}, handler)
	} else {
		resp, err = handler(ctx, req)
	}
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = stream.Header()
		case grpc.TrailerCallOption:
			*o.TrailerAddr = stream.Trailer()
		}
	}
	return resp, err
}

// recordRoute records grpc-gateway's path pattern of a REST call, such as
// "/v1/batches/{batch_id}", in the call's callinfo.Record, for the HTTP
// metrics' route label.
func recordRoute(ctx context.Context) {
	if p, ok := runtime.HTTPPathPattern(ctx); ok {
		callinfo.FromContext(ctx).SetRoute(p)
	}
}

// chainUnary composes interceptors, outermost first, into one; nil for
// none.
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	if len(ics) == 0 {
		return nil
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		next := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, h := ics[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, h) }
		}
		return next(ctx, req)
	}
}

// WatchBatch implements batchv1.BatchServiceClient for REST watches: the
// service's handler runs in process, behind the stream interceptors, and
// its events reach the REST handler through a channel. There is no gRPC
// transport in between (no framing, no transport goroutines), and the
// HTTP request's context (with its metrics and log slots) reaches the
// interceptors. Cancelling ctx ends the handler.
func (c *restClient) WatchBatch(ctx context.Context, in *batchv1.WatchBatchRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[batchv1.WatchBatchResponse], error) {
	recordRoute(ctx)
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx, cancel := context.WithCancel(metadata.NewIncomingContext(ctx, md))
	p := &pipe{ctx: ctx, cancel: cancel, events: make(chan *batchv1.WatchBatchResponse), done: make(chan struct{})}
	info := &grpc.StreamServerInfo{FullMethod: batchv1.BatchService_WatchBatch_FullMethodName, IsServerStream: true}
	handler := func(_ any, ss grpc.ServerStream) error {
		return c.srv.WatchBatch(in, &grpc.GenericServerStream[batchv1.WatchBatchRequest, batchv1.WatchBatchResponse]{ServerStream: ss})
	}
	go func() {
		defer close(p.done)
		if c.streamInterceptor != nil {
			p.err = c.streamInterceptor(c.srv, (*pipeServer)(p), info, handler)
		} else {
			p.err = handler(c.srv, (*pipeServer)(p))
		}
	}()
	return (*pipeClient)(p), nil
}

// pipe connects an in-process server stream to its client.
type pipe struct {
	ctx    context.Context
	cancel context.CancelFunc
	events chan *batchv1.WatchBatchResponse // unbuffered: Send waits for Recv
	done   chan struct{}                    // closed when the handler returned
	err    error                            // the handler's result, set before done closes
}

// pipeServer is the grpc.ServerStream side of a pipe.
type pipeServer pipe

func (p *pipeServer) SetHeader(metadata.MD) error  { return nil }
func (p *pipeServer) SendHeader(metadata.MD) error { return nil }
func (p *pipeServer) SetTrailer(metadata.MD)       {}
func (p *pipeServer) Context() context.Context     { return p.ctx }
func (p *pipeServer) RecvMsg(any) error            { return io.EOF }

// SendMsg hands one event to the client, waiting until it takes it (the
// REST handler's pace) or the call ends.
func (p *pipeServer) SendMsg(m any) error {
	var ev *batchv1.WatchBatchResponse
	switch m := m.(type) {
	case *batchv1.WatchBatchResponse:
		ev = m
	case *fanout.Event:
		ev = m.Message()
	default:
		return status.Errorf(codes.Internal, "unexpected message %T", m)
	}
	select {
	case p.events <- ev:
		return nil
	case <-p.ctx.Done():
		return status.FromContextError(p.ctx.Err()).Err()
	}
}

// pipeClient is the grpc.ServerStreamingClient side of a pipe.
type pipeClient pipe

// Recv returns the next event, io.EOF after the handler returned OK, or
// the handler's error.
func (p *pipeClient) Recv() (*batchv1.WatchBatchResponse, error) {
	select {
	case ev := <-p.events:
		return ev, nil
	case <-p.done:
		if p.err != nil {
			return nil, p.err
		}
		return nil, io.EOF
	}
}

func (p *pipeClient) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (p *pipeClient) Trailer() metadata.MD         { return metadata.MD{} }
func (p *pipeClient) CloseSend() error             { return nil }
func (p *pipeClient) Context() context.Context     { return p.ctx }
func (p *pipeClient) SendMsg(any) error            { return nil }

// RecvMsg receives the next event into m.
func (p *pipeClient) RecvMsg(m any) error {
	ev, err := p.Recv()
	if err != nil {
		return err
	}
	dst, ok := m.(*batchv1.WatchBatchResponse)
	if !ok {
		return status.Errorf(codes.Internal, "unexpected message %T", m)
	}
	proto.Reset(dst)
	proto.Merge(dst, ev)
	return nil
}

// chainStream composes stream interceptors, outermost first, into one; nil
// for none.
func chainStream(ics []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	if len(ics) == 0 {
		return nil
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		next := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, h := ics[i], next
			next = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, h) }
		}
		return next(srv, ss)
	}
}
