package gateway

import (
	"context"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// restClient is the BatchServiceClient that grpc-gateway's REST handlers
// call. Unary RPCs go straight to the service, through the same unary
// interceptors as gRPC calls, saving a gRPC round trip per REST call;
// streaming RPCs, which grpc-gateway cannot serve in process, go over the
// in-memory gRPC connection.
type restClient struct {
	batchv1.BatchServiceClient // over the in-memory connection: WatchBatch

	srv         batchv1.BatchServiceServer
	interceptor grpc.UnaryServerInterceptor // nil: none
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
