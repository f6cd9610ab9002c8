package telemetry

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc"
)

// Caller label values that are not caller names.
const (
	// callerUnknown labels requests without a caller name: rejected before
	// authentication, or served without authentication.
	callerUnknown = "unknown"
	// callerOther labels names too long or not UTF-8, and, without
	// Options.CapCaller, requests of callers beyond the cap.
	callerOther = "other"
	// defaultMaxCallers caps the distinct capped caller names of one group
	// used as labels.
	defaultMaxCallers = 100
	// maxCallerLen is the longest caller name used as a label, in bytes.
	maxCallerLen = 128
)

// callerSet bounds the caller label. A name that its group function says is
// capped (one of a group anyone can add names to) keeps its own label only
// if it is among the first max distinct names of its group, which is
// identified by its overflow label; later ones get that overflow label.
// Other names (known callers) always keep their own label.
type callerSet struct {
	group func(name string) (overflow string, capped bool)
	seen  sync.Map // string → struct{}: names that keep their own label
	mu    sync.Mutex
	n     map[string]int // kept capped names per overflow label, under mu
	max   int
}

// newCallerSet returns a callerSet that keeps max names per group; a nil
// group puts every name in one group whose overflow label is "other".
func newCallerSet(max int, group func(string) (string, bool)) *callerSet {
	if group == nil {
		group = func(string) (string, bool) { return callerOther, true }
	}
	return &callerSet{group: group, n: make(map[string]int), max: max}
}

// label returns the caller label value for name.
func (c *callerSet) label(name string) string {
	if name == "" {
		return callerUnknown
	}
	if _, ok := c.seen.Load(name); ok {
		return name
	}
	if len(name) > maxCallerLen || !utf8.ValidString(name) {
		return callerOther
	}
	overflow, capped := c.group(name)
	if !capped {
		c.seen.Store(name, struct{}{})
		return name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen.Load(name); ok {
		return name
	}
	if c.n[overflow] >= c.max {
		return overflow
	}
	c.seen.Store(name, struct{}{})
	c.n[overflow]++
	return name
}

// callerSlot carries the caller name (and, for HTTP, the ServeMux
// pattern) from an inner interceptor or middleware (after authentication)
// out to the outer one that counts the request. It is atomic because a
// handler may run the inner part on another goroutine (http.TimeoutHandler
// does).
type callerSlot struct{ name, pattern atomic.Pointer[string] }

type callerSlotKey struct{}

func withCallerSlot(ctx context.Context) (context.Context, *callerSlot) {
	s := new(callerSlot)
	return context.WithValue(ctx, callerSlotKey{}, s), s
}

// note records the caller name found in ctx in the slot the outer
// interceptor placed there, if any.
func (t *Telemetry) note(ctx context.Context) {
	if s, ok := ctx.Value(callerSlotKey{}).(*callerSlot); ok {
		name := t.callerName(ctx)
		s.name.Store(&name)
	}
}

// caller returns the caller label for a request whose outer context is
// ctx: the name noted by an inner interceptor, else CallerName(ctx).
func (t *Telemetry) caller(ctx context.Context, s *callerSlot) string {
	if p := s.name.Load(); p != nil {
		return t.callers.label(*p)
	}
	return t.callers.label(t.callerName(ctx))
}

// CallerUnaryServerInterceptor notes the caller name (Options.CallerName)
// for batchgate_requests_by_caller_total. It is needed only when the
// interceptor that authenticates callers runs after UnaryServerInterceptor,
// as it should so that rejected calls are counted: chain it right after the
// authenticating one. Without it the caller is read from the context
// UnaryServerInterceptor sees.
func (t *Telemetry) CallerUnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		t.note(ctx)
		return handler(ctx, req)
	}
}

// CallerStreamServerInterceptor is CallerUnaryServerInterceptor for
// streaming calls.
func (t *Telemetry) CallerStreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		t.note(ss.Context())
		return handler(srv, ss)
	}
}

// CallerHTTPMiddleware is CallerUnaryServerInterceptor for HTTP: wrap the
// handler the authenticating middleware calls with it, inside
// HTTPMiddleware, ideally right around the http.ServeMux. Besides the
// caller name it notes the ServeMux pattern that served the request, which
// HTTPMiddleware cannot see when a middleware in between passes on a copy
// of the request (as one adding the caller to the context does).
func (t *Telemetry) CallerHTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.note(r.Context())
		next.ServeHTTP(w, r)
		// http.ServeMux has set the pattern on r (only if r is what it got).
		if r.Pattern != "" {
			if s, ok := r.Context().Value(callerSlotKey{}).(*callerSlot); ok {
				p := r.Pattern
				s.pattern.Store(&p)
			}
		}
	})
}
