// Package reqlog logs one line per request: method, code, duration, caller
// name and request id, all but the code and duration read from the call's
// callinfo.Record (which callinfo's interceptors and middleware create
// further out, and authentication fills). Nothing secret is logged: no
// credentials, no bodies.
package reqlog

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/felixge/httpsnoop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// Options configures the loggers.
type Options struct {
	// Logger receives one Info line per request. Nil discards.
	Logger *slog.Logger
}

// UnaryInterceptor logs the call when it returns, with the request id and
// caller of its callinfo.Record (empty without one).
func UnaryInterceptor(o Options) grpc.UnaryServerInterceptor {
	log := logger(o)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logGRPC(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
}

// StreamInterceptor is UnaryInterceptor for streams; the line is logged
// when the stream ends.
func StreamInterceptor(o Options) grpc.StreamServerInterceptor {
	log := logger(o)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logGRPC(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}

func logGRPC(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	rec := callinfo.FromContext(ctx)
	var id string
	if rec != nil {
		id = rec.RequestID
	}
	log.LogAttrs(ctx, slog.LevelInfo, "request",
		slog.String("transport", "grpc"),
		slog.String("method", method),
		slog.String("code", status.Code(err).String()),
		slog.Duration("duration", time.Since(start)),
		slog.String("request_id", id),
		slog.String("caller", rec.CallerName()),
	)
}

// HTTPMiddleware logs the request when its handler returns, with the
// request id and caller of its callinfo.Record (empty without one). The
// caller is read after ServeHTTP returns; callinfo.Record makes that safe
// even when authentication ran on another goroutine. The handler gets a
// ResponseWriter with the same optional interfaces (http.Flusher,
// http.Hijacker...) as the one this middleware got.
func HTTPMiddleware(o Options, next http.Handler) http.Handler {
	log := logger(o)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := httpsnoop.CaptureMetrics(next, w, r)
		ctx := r.Context()
		if !log.Enabled(ctx, slog.LevelInfo) {
			return
		}
		rec := callinfo.FromContext(ctx)
		var id string
		if rec != nil {
			id = rec.RequestID
		}
		log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("transport", "http"),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("code", m.Code),
			slog.Duration("duration", m.Duration),
			slog.String("request_id", id),
			slog.String("caller", rec.CallerName()),
		)
	})
}

func logger(o Options) *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}
