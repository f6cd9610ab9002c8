// Package callinfo carries one record per call, from the outermost layer
// that sees the call to the innermost: its request id, the caller that
// authentication found and the route that served it. Logs (reqlog) and
// metrics (telemetry) read it after the call; authentication (auth) and
// routing (the gateway's muxes) fill it in.
//
// The record is created once per call, by the first gRPC interceptor
// (UnaryServerInterceptor, StreamServerInterceptor) or the outermost HTTP
// middleware (HTTPMiddleware), which also assign the request id: the
// caller's x-request-id when it is well formed, otherwise a random one, and
// return it to the caller (gRPC header metadata, HTTP X-Request-Id).
// A layer that finds a record in the context already uses it: REST calls,
// served in process, go through the gRPC interceptors with the HTTP
// request's record.
//
// Concurrency: RequestID is set before the record is shared and never
// changes. The caller and the route are written by layers inside the call
// and read by layers outside it after the call returns, which in the
// simple case orders the writes before the reads; but an inner layer may
// run on another goroutine (the REST watch runs the gRPC handler on one,
// http.TimeoutHandler runs the handler on one and returns without waiting
// for it), so they are atomic: a read sees either nothing or a complete
// value.
package callinfo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Header is the request id header (HTTP) and metadata key (gRPC).
const Header = "x-request-id"

// Caller is who made a call, as authentication found it.
type Caller struct {
	// Name is safe for logs and metric labels (never a secret).
	Name string
	// CredentialHash is the keyed hash (HMAC) of the caller's credential
	// in passthrough mode, "" otherwise.
	CredentialHash string
	// Scopes is what the caller may do. The zero value allows nothing.
	Scopes Scopes
}

// Record is what is known about one call. Create it with New; its methods
// are safe for concurrent use, and a nil *Record ignores writes and reads
// as empty.
type Record struct {
	// RequestID is the call's request id. It is set by New and never
	// changes.
	RequestID string

	caller atomic.Pointer[Caller]
	route  atomic.Pointer[string]
}

// New returns a record with the request id incoming when it is well formed
// (1–64 letters, digits, '-', '_', '.'), else a random one.
func New(incoming string) *Record {
	return &Record{RequestID: requestID(incoming)}
}

// SetCaller records the authenticated caller.
func (r *Record) SetCaller(c Caller) {
	if r != nil {
		r.caller.Store(&c)
	}
}

// Caller returns the recorded caller, and whether there is one: calls
// rejected before or exempt from authentication have none.
func (r *Record) Caller() (Caller, bool) {
	if r == nil {
		return Caller{}, false
	}
	if c := r.caller.Load(); c != nil {
		return *c, true
	}
	return Caller{}, false
}

// CallerName returns the recorded caller's name, or "".
func (r *Record) CallerName() string {
	c, _ := r.Caller()
	return c.Name
}

// SetRoute records the route template that served the call, such as
// "/v1/batches/{batch_id}" or "GET /healthz". The first one recorded
// stays: it is the most specific (inner layers record first).
func (r *Record) SetRoute(route string) {
	if r != nil && route != "" {
		r.route.CompareAndSwap(nil, &route)
	}
}

// Route returns the recorded route, or "".
func (r *Record) Route() string {
	if r == nil {
		return ""
	}
	if p := r.route.Load(); p != nil {
		return *p
	}
	return ""
}

type recordKey struct{}

// NewContext returns a copy of ctx carrying r.
func NewContext(ctx context.Context, r *Record) context.Context {
	return context.WithValue(ctx, recordKey{}, r)
}

// FromContext returns the record in ctx, or nil.
func FromContext(ctx context.Context) *Record {
	r, _ := ctx.Value(recordKey{}).(*Record)
	return r
}

// ensure returns ctx's record and ctx, or a new record for the incoming
// request id and ctx carrying it; created reports which.
func ensure(ctx context.Context, incoming func() string) (context.Context, *Record, bool) {
	if r := FromContext(ctx); r != nil {
		return ctx, r, false
	}
	r := New(incoming())
	return NewContext(ctx, r), r, true
}

// UnaryServerInterceptor puts a record in the call's context and returns
// its request id in the header metadata. Chain it first.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, r, created := ensure(ctx, func() string { return incomingID(ctx) })
		if created {
			_ = grpc.SetHeader(ctx, metadata.Pairs(Header, r.RequestID))
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, r, created := ensure(ss.Context(), func() string { return incomingID(ss.Context()) })
		if !created {
			return handler(srv, ss)
		}
		_ = ss.SetHeader(metadata.Pairs(Header, r.RequestID))
		w := middleware.WrapServerStream(ss)
		w.WrappedContext = ctx
		return handler(srv, w)
	}
}

// HTTPMiddleware puts a record in the request's context, returns its
// request id in X-Request-Id and sets it on the request's x-request-id
// header for the layers inside. Wrap the whole HTTP port with it,
// outermost.
func HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, rec, created := ensure(r.Context(), func() string { return r.Header.Get(Header) })
		if created {
			r = r.WithContext(ctx)
			r.Header.Set(Header, rec.RequestID)
			w.Header().Set(Header, rec.RequestID)
		}
		next.ServeHTTP(w, r)
	})
}

func incomingID(ctx context.Context) string {
	// ValueFromIncomingContext reads one key without copying the metadata.
	if v := metadata.ValueFromIncomingContext(ctx, Header); len(v) > 0 {
		return v[0]
	}
	return ""
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
