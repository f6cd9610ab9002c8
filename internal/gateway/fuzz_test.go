package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
)

// FuzzHTTP sends arbitrary methods, paths and headers to the whole HTTP
// handler (in process, against an upstream that knows one terminal batch):
// nothing panics, every error answer is the upstream-style JSON envelope,
// and every success is JSON or an event stream.
func FuzzHTTP(f *testing.F) {
	for _, s := range []struct{ method, path, accept, authz string }{
		{"GET", "/v1/batches/batch_done", "", ""},
		{"GET", "/v1/batches/batch_done/watch", "text/event-stream", "Bearer x"},
		{"GET", "/v1/batches/batch_nope", "*/*", "Basic zzz"},
		{"POST", "/v1/batches/batch_done", "application/json", ""},
		{"HEAD", "/v1/batches/%2e%2e/watch", "", ""},
		{"GET", "/v1/batches/a%00b", "text/event-stream;q=0.5, application/x-ndjson", ""},
		{"DELETE", "/metrics/../v1/batches/x", "", ""},
		{"GET", "/v1/batches/" + strings.Repeat("a", 300), "", ""},
		{"OPTIONS", "*", "", ""},
	} {
		f.Add(s.method, s.path, s.accept, s.authz)
	}
	fetch := fetchFunc(func(_ context.Context, id string) (*batchv1.Batch, error) {
		if id == "batch_done" {
			return &batchv1.Batch{Id: id, Object: "batch", Status: batchv1.BatchStatus_BATCH_STATUS_COMPLETED, UpstreamStatus: "completed"}, nil
		}
		return nil, &upstream.Error{HTTPStatus: 404, Type: "not_found_error"}
	})
	hub := watch.New(fetch, watch.Options{PollInterval: time.Hour})
	f.Cleanup(hub.Close)
	srv, err := NewServer(context.Background(), Services{Batch: service.New(hub, service.Options{})}, ServerOptions{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.grpc.Stop(); srv.closeListeners() })
	h := srv.http.Handler
	f.Fuzz(func(t *testing.T, method, path, accept, authz string) {
		req, err := http.NewRequest(method, "http://gateway"+"/", nil)
		if err != nil {
			return // not a method net/http would hand to a handler
		}
		req.URL.Path, req.URL.RawPath = "", ""
		if req.URL, err = req.URL.Parse(path); err != nil || req.URL.Host != "gateway" {
			return // not a request target the server would route here
		}
		req.RequestURI = req.URL.RequestURI()
		req.Body = http.NoBody // as the server gives a handler
		if accept != "" && !strings.ContainsAny(accept, "\r\n") {
			req.Header.Set("Accept", accept)
		}
		if authz != "" && !strings.ContainsAny(authz, "\r\n") {
			req.Header.Set("Authorization", authz)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		ct := rec.Header().Get("Content-Type")
		switch {
		case rec.Code >= 400:
			var env struct {
				Error *struct {
					Message string `json:"message"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if method == http.MethodHead {
				return // no body to check
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Message == "" || env.Error.Type == "" {
				t.Fatalf("%s %q: %d %q is not an error envelope", method, path, rec.Code, rec.Body.String())
			}
		case rec.Code == http.StatusOK:
			if !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "application/x-ndjson") &&
				!strings.HasPrefix(ct, "text/event-stream") && !strings.HasPrefix(ct, "text/plain") {
				t.Fatalf("%s %q: 200 with Content-Type %q", method, path, ct)
			}
		}
	})
}
