package auth

import (
	"context"
	"strings"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// exemptPrefixes are the gRPC services every client may call without a
// token: health checks (load balancers, orchestrators) and reflection.
var exemptPrefixes = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

func exempt(fullMethod string) bool {
	for _, p := range exemptPrefixes {
		if strings.HasPrefix(fullMethod, p) {
			return true
		}
	}
	return false
}

// authorization returns the first "authorization" value of the incoming
// metadata, or "".
func authorization(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		return v[0]
	}
	return ""
}

// checked selects the calls the interceptors authenticate: all but the
// exempt ones.
var checked = selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
	return !exempt(c.FullMethod())
})

// UnaryInterceptor returns a gRPC interceptor that runs Authenticate on the
// first "authorization" metadata value of every unary call and hands the
// handler the context it returns, or fails the call with its error. Health
// checks (grpc.health.v1.Health) and reflection are let through unchecked,
// without a Caller.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return selector.UnaryServerInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.Authenticate(ctx, authorization(ctx))
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}, checked)
}

// StreamInterceptor is UnaryInterceptor for streaming calls: the handler's
// stream returns the authenticated context from Context.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return selector.StreamServerInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.Authenticate(ss.Context(), authorization(ss.Context()))
		if err != nil {
			return err
		}
		w := middleware.WrapServerStream(ss)
		w.WrappedContext = ctx
		return handler(srv, w)
	}, checked)
}
