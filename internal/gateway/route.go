package gateway

import (
	"context"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// recordRouteUnary records grpc-gateway's path pattern of a REST call, such
// as "/v1/batches/{batch_id}", in the call's callinfo.Record, for the HTTP
// metrics' route label. It is the first REST interceptor.
func recordRouteUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	recordRoute(ctx)
	return h(ctx, req)
}

// recordRouteStream is recordRouteUnary for streams.
func recordRouteStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	recordRoute(ss.Context())
	return h(srv, ss)
}

func recordRoute(ctx context.Context) {
	if p, ok := runtime.HTTPPathPattern(ctx); ok {
		callinfo.FromContext(ctx).SetRoute(p)
	}
}
