package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"

	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/auth"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/limit"
	"github.com/batchgate/batchgate/internal/reqlog"
	"github.com/batchgate/batchgate/internal/telemetry"
)

// ChainDeps are the parts the gateway's call chains are made of.
type ChainDeps struct {
	Auth      *auth.Authenticator
	Limits    *limit.Limiter
	Telemetry *telemetry.Telemetry
	// Logger receives the request logs and the panics; nil discards them.
	Logger *slog.Logger
	// CORSOrigins lists the allowed browser origins, comma-separated.
	CORSOrigins string
}

// Chains are the gateway's interceptor and middleware chains, outermost
// first: the ones New serves with, and the ones the benchmarks measure.
type Chains struct {
	// Unary and Stream run on calls to the public gRPC port.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// RESTUnary and RESTStream run on calls that arrive over REST, in
	// process; HTTP logs and measures those.
	RESTUnary  []grpc.UnaryServerInterceptor
	RESTStream []grpc.StreamServerInterceptor
	// HTTP wraps the whole HTTP port.
	HTTP func(http.Handler) http.Handler
}

// NewChains builds the gateway's chains from d.
func NewChains(d ChainDeps) Chains {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	logOpts := reqlog.Options{Logger: log}
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in a call", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		return apierr.Internal("internal error").Err()
	})
	return buildChains(stages{
		callinfo:  stage{callinfo.UnaryServerInterceptor(), callinfo.StreamServerInterceptor(), callinfo.HTTPMiddleware},
		telemetry: stage{d.Telemetry.UnaryServerInterceptor(), d.Telemetry.StreamServerInterceptor(), d.Telemetry.HTTPMiddleware},
		recovery:  stage{recovery.UnaryServerInterceptor(onPanic), recovery.StreamServerInterceptor(onPanic), nil},
		reqlog: stage{reqlog.UnaryInterceptor(logOpts), reqlog.StreamInterceptor(logOpts), func(h http.Handler) http.Handler {
			return reqlog.HTTPMiddleware(logOpts, h)
		}},
		auth:   stage{d.Auth.UnaryInterceptor(), d.Auth.StreamInterceptor(), nil},
		limits: stage{d.Limits.UnaryInterceptor(), d.Limits.StreamInterceptor(), nil},
		cors: stage{http: func(h http.Handler) http.Handler {
			return corsMiddleware(d.CORSOrigins, h)
		}},
	})
}

// stage is one layer of the chains, as each kind of call sees it; nil
// where it does not apply.
type stage struct {
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
	http   func(http.Handler) http.Handler
}

// stages are the layers buildChains orders.
type stages struct {
	callinfo, telemetry, recovery, reqlog, auth, limits, cors stage
}

// buildChains puts the layers in their order, the one place that decides
// it (TestChainUnaryOrder checks it).
func buildChains(s stages) Chains {
	// The call record first: it carries the request id, and the caller that
	// authentication writes into it, out to the metrics and the log.
	// Metrics next, so that rejected and panicking calls are counted.
	grpcOrder := []stage{s.callinfo, s.telemetry, s.recovery, s.reqlog, s.auth, s.limits}
	// REST calls are logged and measured by the HTTP middleware, which
	// reads the caller from the record these fill (the request's context
	// reaches them in process): authenticated once, here.
	restOrder := []stage{s.recovery, s.auth, s.limits}
	httpOrder := []stage{s.callinfo, s.telemetry, s.reqlog, s.cors}
	var c Chains
	for _, st := range grpcOrder {
		c.Unary = append(c.Unary, st.unary)
		c.Stream = append(c.Stream, st.stream)
	}
	for _, st := range restOrder {
		c.RESTUnary = append(c.RESTUnary, st.unary)
		c.RESTStream = append(c.RESTStream, st.stream)
	}
	c.HTTP = func(h http.Handler) http.Handler {
		for i := len(httpOrder) - 1; i >= 0; i-- {
			h = httpOrder[i].http(h)
		}
		return h
	}
	return c
}
