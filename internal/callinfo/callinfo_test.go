package callinfo_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/batchgate/batchgate/internal/callinfo"
)

func TestNewRequestID(t *testing.T) {
	t.Parallel()
	for in, keep := range map[string]bool{
		"":                      false,
		"req-123_abc.9":         true,
		"bad id\n":              false,
		strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false,
	} {
		got := callinfo.New(in).RequestID
		if got == "" || (keep && got != in) || (!keep && got == in) {
			t.Errorf("New(%q).RequestID = %q", in, got)
		}
	}
}

func TestRecord(t *testing.T) {
	t.Parallel()
	var nilRec *callinfo.Record
	nilRec.SetCaller(callinfo.Caller{Name: "x"}) // ignored
	nilRec.SetRoute("/x")
	if c, ok := nilRec.Caller(); ok || c != (callinfo.Caller{}) || nilRec.CallerName() != "" || nilRec.Route() != "" {
		t.Errorf("nil record: %v %v %q", c, ok, nilRec.Route())
	}
	if callinfo.FromContext(context.Background()) != nil {
		t.Error("FromContext of a bare context is not nil")
	}

	r := callinfo.New("id-1")
	if _, ok := r.Caller(); ok {
		t.Error("new record has a caller")
	}
	r.SetCaller(callinfo.Caller{Name: "alice", CredentialHash: "abc"})
	if c, ok := r.Caller(); !ok || c.Name != "alice" || c.CredentialHash != "abc" || r.CallerName() != "alice" {
		t.Errorf("Caller() = %v, %v", c, ok)
	}
	r.SetRoute("")
	r.SetRoute("/v1/batches/{batch_id}")
	r.SetRoute("GET /other") // the first recorded stays
	if got := r.Route(); got != "/v1/batches/{batch_id}" {
		t.Errorf("Route() = %q", got)
	}
	if got := callinfo.FromContext(callinfo.NewContext(context.Background(), r)); got != r {
		t.Error("FromContext does not return the record of NewContext")
	}
}

// TestRecordConcurrent: a writer on another goroutine (as the REST watch's
// handler is) and readers race freely (run with -race).
func TestRecordConcurrent(t *testing.T) {
	t.Parallel()
	r := callinfo.New("")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			r.SetCaller(callinfo.Caller{Name: "alice"})
			r.SetRoute("/r")
		})
		wg.Go(func() {
			if n := r.CallerName(); n != "" && n != "alice" {
				t.Errorf("caller %q", n)
			}
			_ = r.Route()
		})
	}
	wg.Wait()
}

// TestSetOnce: the outermost layer creates the record; layers further in
// (a second interceptor, the HTTP middleware twice) use the same one.
func TestSetOnce(t *testing.T) {
	t.Parallel()
	var seen []*callinfo.Record
	inner := func(ctx context.Context, req any) (any, error) {
		seen = append(seen, callinfo.FromContext(ctx))
		return nil, nil
	}
	ic := callinfo.UnaryServerInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(callinfo.Header, "abc-1"))
	_, _ = ic(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, req any) (any, error) {
		seen = append(seen, callinfo.FromContext(ctx))
		return ic(ctx, req, &grpc.UnaryServerInfo{}, inner)
	})
	if len(seen) != 2 || seen[0] == nil || seen[0] != seen[1] || seen[0].RequestID != "abc-1" {
		t.Fatalf("records %v", seen)
	}

	var recs []*callinfo.Record
	h := callinfo.HTTPMiddleware(callinfo.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recs = append(recs, callinfo.FromContext(r.Context()))
		if r.Header.Get(callinfo.Header) != recs[0].RequestID {
			t.Error("request id not set on the request")
		}
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if len(recs) != 1 || recs[0] == nil || rec.Header().Get(callinfo.Header) != recs[0].RequestID {
		t.Fatalf("records %v, X-Request-Id %q", recs, rec.Header().Get(callinfo.Header))
	}
}

// TestStreamInterceptor: the stream's context carries the record, created
// once.
func TestStreamInterceptor(t *testing.T) {
	t.Parallel()
	ic := callinfo.StreamServerInterceptor()
	ss := &fakeStream{ctx: metadata.NewIncomingContext(context.Background(), metadata.Pairs(callinfo.Header, "s-1"))}
	var got []*callinfo.Record
	err := ic(nil, ss, &grpc.StreamServerInfo{}, func(_ any, s grpc.ServerStream) error {
		got = append(got, callinfo.FromContext(s.Context()))
		return ic(nil, s, &grpc.StreamServerInfo{}, func(_ any, s grpc.ServerStream) error {
			got = append(got, callinfo.FromContext(s.Context()))
			return nil
		})
	})
	if err != nil || len(got) != 2 || got[0] == nil || got[0] != got[1] || got[0].RequestID != "s-1" {
		t.Fatalf("records %v, %v", got, err)
	}
	if v := ss.header.Get(callinfo.Header); len(v) != 1 || v[0] != "s-1" {
		t.Errorf("header %v", ss.header)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx    context.Context
	header metadata.MD
}

func (s *fakeStream) Context() context.Context { return s.ctx }
func (s *fakeStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}
