package rest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/batchgate/batchgate/internal/apierr"
)

// bodyLimitKey is the context key of the *limitedBody of a request.
type bodyLimitKey struct{}

// limitedBody is http.MaxBytesReader that remembers that the limit was hit,
// so that the error handler can answer 413 instead of the 400 that
// grpc-gateway makes of a body it could not read.
type limitedBody struct {
	io.ReadCloser
	limit int64
	hit   bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		b.hit = true
	}
	return n, err
}

// LimitBody caps request bodies at n bytes: a handler that reads past the
// limit fails with 413, having read at most n+1 bytes. A request that is
// refused before its body is read (an unknown path, a wrong method) keeps
// its own status.
func LimitBody(h http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			lb := &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, n), limit: n}
			r = r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, lb))
			r.Body = lb
		}
		h.ServeHTTP(w, r)
	})
}

// bodyTooLarge reports whether r's body went over LimitBody's limit, and
// the limit.
func bodyTooLarge(r *http.Request) (int64, bool) {
	lb, ok := r.Context().Value(bodyLimitKey{}).(*limitedBody)
	if !ok || !lb.hit {
		return 0, false
	}
	return lb.limit, true
}

// ListLimits answers a list request whose query names limit=0 with 400, as
// the upstream does: over gRPC a zero limit means the default (proto3 has
// no absent int32 there), but a REST client that sends limit=0 asked for
// something else than one that sends no limit.
func ListLimits(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/v1/batches" || r.URL.Path == FilesPath) {
			if v, ok := r.URL.Query()["limit"]; ok && len(v) > 0 {
				if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n <= 0 {
					writeStatus(w, apierr.Invalid("limit", apierr.CodeInvalidValue, "limit must be a positive integer"))
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}
