// Package reqlog gives every request an id and logs one line per request:
// method, code, duration, caller name and request id. The id is taken from
// the caller's x-request-id when it is well formed, otherwise generated, and
// is returned to the caller (gRPC header metadata, HTTP X-Request-Id).
// Nothing secret is logged: no credentials, no bodies.
package reqlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Header is the request id header (HTTP) and metadata key (gRPC).
const Header = "x-request-id"

// Options configures the loggers.
type Options struct {
	// Logger receives one Info line per request. Nil discards.
	Logger *slog.Logger
	// CallerName names the caller of a gRPC call. It runs in
	// CallerUnaryInterceptor / CallerStreamInterceptor, which go after
	// authentication in the chain. Nil: no caller attribute.
	CallerName func(ctx context.Context) string
	// HTTPCallerName names the caller of an HTTP request whose caller no
	// CallerUnaryInterceptor recorded (REST calls served in process carry
	// the request's context through the gRPC interceptors; others do not).
	// Nil: such requests are logged without a caller.
	HTTPCallerName func(r *http.Request) string
}

type idKey struct{}

// entry is what the logging interceptor learns from interceptors further
// in: the caller, known only after authentication.
type entry struct{ caller string }

type entryKey struct{}

// ID returns the request id of ctx, or "".
func ID(ctx context.Context) string {
	s, _ := ctx.Value(idKey{}).(string)
	return s
}

// CallerUnaryInterceptor records the caller for the log line; put it after
// authentication. Calls rejected before it are logged without a caller.
func CallerUnaryInterceptor(o Options) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		setCaller(ctx, o)
		return handler(ctx, req)
	}
}

// CallerStreamInterceptor is CallerUnaryInterceptor for streams.
func CallerStreamInterceptor(o Options) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		setCaller(ss.Context(), o)
		return handler(srv, ss)
	}
}

func setCaller(ctx context.Context, o Options) {
	if e, ok := ctx.Value(entryKey{}).(*entry); ok && o.CallerName != nil {
		e.caller = o.CallerName(ctx)
	}
}

// requestID returns v if it is a well-formed id (1–64 characters of
// letters, digits, '-', '_', '.'), else a new random one.
func requestID(v string) string {
	if len(v) > 0 && len(v) <= 64 && !strings.ContainsFunc(v, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return v
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func incomingID(ctx context.Context) string {
	// ValueFromIncomingContext reads one key without copying the metadata.
	if v := metadata.ValueFromIncomingContext(ctx, Header); len(v) > 0 {
		return v[0]
	}
	return ""
}

// UnaryInterceptor assigns the request id, returns it as header metadata
// and logs the call, with the caller recorded by CallerUnaryInterceptor.
func UnaryInterceptor(o Options) grpc.UnaryServerInterceptor {
	log := logger(o)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		id := requestID(incomingID(ctx))
		e := &entry{}
		ctx = context.WithValue(context.WithValue(ctx, idKey{}, id), entryKey{}, e)
		_ = grpc.SetHeader(ctx, metadata.Pairs(Header, id))
		resp, err := handler(ctx, req)
		logGRPC(ctx, log, o, info.FullMethod, id, e.caller, start, err)
		return resp, err
	}
}

// StreamInterceptor is UnaryInterceptor for streams; the line is logged
// when the stream ends.
func StreamInterceptor(o Options) grpc.StreamServerInterceptor {
	log := logger(o)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ctx := ss.Context()
		id := requestID(incomingID(ctx))
		e := &entry{}
		ctx = context.WithValue(context.WithValue(ctx, idKey{}, id), entryKey{}, e)
		_ = ss.SetHeader(metadata.Pairs(Header, id))
		err := handler(srv, &stream{ServerStream: ss, ctx: ctx})
		logGRPC(ctx, log, o, info.FullMethod, id, e.caller, start, err)
		return err
	}
}

// stream carries the request id and log entry in its context.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

func logGRPC(ctx context.Context, log *slog.Logger, o Options, method, id, caller string, start time.Time, err error) {
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("transport", "grpc"),
		slog.String("method", method),
		slog.String("code", status.Code(err).String()),
		slog.Duration("duration", time.Since(start)),
		slog.String("request_id", id),
	}
	if o.CallerName != nil {
		attrs = append(attrs, slog.String("caller", caller))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}

// HTTPMiddleware assigns the request id (also forwarded to the gRPC layer
// in the x-request-id header), returns it in X-Request-Id and logs the
// request when it ends.
func HTTPMiddleware(o Options, next http.Handler) http.Handler {
	log := logger(o)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r.Header.Get(Header))
		r.Header.Set(Header, id)
		w.Header().Set(Header, id)
		e := &entry{}
		ctx := context.WithValue(context.WithValue(r.Context(), idKey{}, id), entryKey{}, e)
		rw := &responseWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rw, r.WithContext(ctx))
		if !log.Enabled(ctx, slog.LevelInfo) {
			return
		}
		attrs := []slog.Attr{
			slog.String("transport", "http"),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("code", rw.code),
			slog.Duration("duration", time.Since(start)),
			slog.String("request_id", id),
		}
		if e.caller == "" && o.HTTPCallerName != nil && log.Enabled(ctx, slog.LevelInfo) {
			e.caller = o.HTTPCallerName(r)
		}
		if e.caller != "" || o.HTTPCallerName != nil {
			attrs = append(attrs, slog.String("caller", e.caller))
		}
		log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
	})
}

// responseWriter records the status code. It keeps Flush working (watch
// streams flush per event) and unwraps for http.ResponseController.
type responseWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		w.wroteHeader = true
		f.Flush()
	}
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func logger(o Options) *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}
