package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	good, bad, unknown := HealthGood, HealthBad, HealthUnknown
	tests := []struct {
		name string
		err  error
		want Outcome
	}{
		{"success", nil, Outcome{Health: good}},
		{"301 redirect", &Error{HTTPStatus: 301}, Outcome{Health: bad, MayHaveApplied: true}},
		{"303 after a POST", &Error{HTTPStatus: 303}, Outcome{Health: bad, MayHaveApplied: true}},
		{"304", &Error{HTTPStatus: 304}, Outcome{Health: bad, MayHaveApplied: true}},
		{"100", &Error{HTTPStatus: 100}, Outcome{Health: bad, MayHaveApplied: true}},
		{"400", &Error{HTTPStatus: 400}, Outcome{Permanent: true, Health: good}},
		{"401", &Error{HTTPStatus: 401}, Outcome{Permanent: true, Health: good}},
		{"402", &Error{HTTPStatus: 402}, Outcome{Permanent: true, Health: good}},
		{"404", &Error{HTTPStatus: 404}, Outcome{Permanent: true, Health: good}},
		{"408", &Error{HTTPStatus: 408}, Outcome{Retryable: true, Health: bad}},
		{"409", &Error{HTTPStatus: 409}, Outcome{Retryable: true, Health: good}},
		{"429", &Error{HTTPStatus: 429}, Outcome{Retryable: true, RateLimited: true, Health: bad}},
		{"499", &Error{HTTPStatus: 499}, Outcome{Permanent: true, Health: good}},
		{"500", &Error{HTTPStatus: 500}, Outcome{Retryable: true, Health: bad, MayHaveApplied: true}},
		{"501", &Error{HTTPStatus: 501}, Outcome{Retryable: true, Health: bad, MayHaveApplied: true}},
		{"503 wrapped", fmt.Errorf("poll: %w", &Error{HTTPStatus: 503}), Outcome{Retryable: true, Health: bad, MayHaveApplied: true}},
		{"599", &Error{HTTPStatus: 599}, Outcome{Retryable: true, Health: bad, MayHaveApplied: true}},
		{"unreachable after sending", unreachableError(errors.New("connection reset by peer")), Outcome{Retryable: true, Health: bad, MayHaveApplied: true}},
		{"unreachable, never sent", noEffect(unreachableError(errors.New("connection refused"))), Outcome{Retryable: true, Health: bad}},
		{"unreachable, never sent, wrapped", fmt.Errorf("create: %w", noEffect(unreachableError(errors.New("no such host")))), Outcome{Retryable: true, Health: bad}},
		{"attempt timeout", timeoutError(0), Outcome{Retryable: true, Health: bad, MayHaveApplied: true}},
		{"attempt timeout while connecting", noEffect(timeoutError(0)), Outcome{Retryable: true, Health: bad}},
		{"malformed", fmt.Errorf("%w: x", ErrMalformedResponse), Outcome{Health: bad, MayHaveApplied: true}},
		{"too large", ErrResponseTooLarge, Outcome{Health: bad, MayHaveApplied: true}},
		{"invalid batch id", fmt.Errorf("%w: x", ErrInvalidBatchID), Outcome{Permanent: true, Health: unknown}},
		{"invalid file id", fmt.Errorf("%w: x", ErrInvalidFileID), Outcome{Permanent: true, Health: unknown}},
		{"invalid filename", fmt.Errorf("%w: x", ErrInvalidFilename), Outcome{Permanent: true, Health: unknown}},
		{"upload content failed", uploadContentError(errors.New("disk gone")), Outcome{Health: unknown}},
		{"upload content canceled", uploadContentError(context.Canceled), Outcome{Health: unknown}},
		{"upload content deadline", uploadContentError(context.DeadlineExceeded), Outcome{Health: unknown}},
		{"caller canceled", callerContextError(context.Canceled, nil), Outcome{Health: unknown, MayHaveApplied: true}},
		{"caller canceled before the first attempt", noEffect(callerContextError(context.Canceled, nil)), Outcome{Health: unknown}},
		{"caller deadline", callerContextError(context.DeadlineExceeded, &Error{HTTPStatus: 503}), Outcome{Health: bad, MayHaveApplied: true}},
		{"caller deadline before the first attempt", noEffect(callerContextError(context.DeadlineExceeded, nil)), Outcome{Health: bad}},
		{"unknown error", errors.New("boom"), Outcome{Health: bad, MayHaveApplied: true}},
		{"unknown error, nothing sent", noEffect(errors.New("bad key")), Outcome{Health: bad}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}

// TestMayHaveAppliedOverTheWire: the retry loop marks what real failures
// say about whether the call may have taken effect.
func TestMayHaveAppliedOverTheWire(t *testing.T) {
	t.Parallel()
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}
	serve := func(h http.HandlerFunc) func(t *testing.T) string {
		return func(t *testing.T) string {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			return srv.URL
		}
	}
	hangUp := func(w http.ResponseWriter, _ *http.Request) {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}
	tlsServer := func(t *testing.T) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"id":"b"}`)
		}))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are the point
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL // the default client does not trust its certificate
	}
	tests := []struct {
		name    string
		base    func(t *testing.T) string
		ctx     func() context.Context
		want    bool
		wantErr error
	}{
		{"connection refused", refused, nil, false, ErrUnreachable},
		{"certificate rejected", tlsServer, nil, false, ErrUnreachable},
		{"hang up after the request", serve(hangUp), nil, true, ErrUnreachable},
		{"500", serve(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }), nil, true, nil},
		{"404", serve(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) }), nil, false, nil},
		{"malformed 2xx", serve(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "{") }), nil, true, ErrMalformedResponse},
		{"canceled before the first attempt", serve(hangUp), func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, false, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, tt.base(t), nil)
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			_, err := c.GetBatch(ctx, "b")
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := Classify(err).MayHaveApplied; got != tt.want {
				t.Errorf("MayHaveApplied = %v for %v, want %v", got, err, tt.want)
			}
		})
	}
}

// TestMayHaveAppliedSticks: once an attempt may have taken effect, a later
// failure to connect does not make the call look harmless.
func TestMayHaveAppliedSticks(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL, func(c *Config) { c.MaxAttempts = 2 })
	c.wait = func(context.Context, time.Duration) error {
		srv.Close() // the retry finds nobody listening
		return nil
	}
	_, err := c.GetBatch(context.Background(), "b")
	var op *net.OpError
	if !errors.Is(err, ErrUnreachable) || !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("err = %v, want a dial failure", err)
	}
	if !Classify(err).MayHaveApplied {
		t.Errorf("MayHaveApplied = false for %v after a 502", err)
	}
}

func TestIsConnectError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"dial refused", &url.Error{Op: "Post", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, true},
		{"DNS", &url.Error{Op: "Post", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}}, true},
		{"proxy", &net.OpError{Op: "proxyconnect", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"certificate", &url.Error{Op: "Get", Err: &tls.CertificateVerificationError{}}, true},
		{"read reset", &url.Error{Op: "Post", Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, false},
		{"write broken pipe", &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, false},
		{"EOF", &url.Error{Op: "Post", Err: io.EOF}, false},
		{"context", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := isConnectError(tt.err); got != tt.want {
				t.Errorf("isConnectError(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
