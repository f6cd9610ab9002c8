package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/wire"
)

// methodCase is one Client method, called with fixed arguments.
type methodCase struct {
	name string
	// once: never retried (not safe to repeat).
	once bool
	call func(ctx context.Context, c *Client) error
	// uri is the request's URI below the base URL.
	uri string
}

func everyMethod() []methodCase {
	return []methodCase{
		{"GetBatch", false, func(ctx context.Context, c *Client) error {
			_, err := c.GetBatch(ctx, "batch_1")
			return err
		}, "/v1/batches/batch_1"},
		{"CreateBatch", true, func(ctx context.Context, c *Client) error {
			_, err := c.CreateBatch(ctx, wire.CreateBatchRequest{InputFileID: "file_1", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
			return err
		}, "/v1/batches"},
		{"ListBatches", false, func(ctx context.Context, c *Client) error {
			_, err := c.ListBatches(ctx, "batch_0", 5)
			return err
		}, "/v1/batches?after=batch_0&limit=5"},
		{"CancelBatch", false, func(ctx context.Context, c *Client) error {
			_, err := c.CancelBatch(ctx, "batch_1")
			return err
		}, "/v1/batches/batch_1/cancel"},
		{"UploadFile", true, func(ctx context.Context, c *Client) error {
			_, err := c.UploadFile(ctx, "in.jsonl", "batch", strings.NewReader("{}\n"))
			return err
		}, "/v1/files"},
		{"GetFile", false, func(ctx context.Context, c *Client) error {
			_, err := c.GetFile(ctx, "file_1")
			return err
		}, "/v1/files/file_1"},
		{"ListFiles", false, func(ctx context.Context, c *Client) error {
			_, err := c.ListFiles(ctx, "file_0", 5, "batch")
			return err
		}, "/v1/files?after=file_0&limit=5&purpose=batch"},
		{"DeleteFile", false, func(ctx context.Context, c *Client) error {
			_, err := c.DeleteFile(ctx, "file_1")
			return err
		}, "/v1/files/file_1"},
		{"FileContent", false, func(ctx context.Context, c *Client) error {
			rc, err := c.FileContent(ctx, "file_1")
			if rc != nil {
				rc.Close()
			}
			return err
		}, "/v1/files/file_1/content"},
	}
}

// TestEveryMethodRetryPolicy: against an upstream that always answers 500
// (echoing the key into its envelope), the idempotent calls are retried
// and logged under their name, the others are sent exactly once, and no
// error or log line carries a key.
func TestEveryMethodRetryPolicy(t *testing.T) {
	t.Parallel()
	for _, m := range everyMethod() {
		for _, perCall := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/per-call key %v", m.name, perCall), func(t *testing.T) {
				t.Parallel()
				var buf syncBuffer
				srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					auth := r.Header.Get("Authorization")
					w.WriteHeader(http.StatusInternalServerError)
					fmt.Fprintf(w, `{"error":{"message":"key %[1]s","type":"t %[1]s","param":"p %[1]s","code":"c %[1]s"}}`, auth)
				})
				c := newTestClient(t, srv.URL, func(c *Config) {
					c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
				})
				ctx := context.Background()
				if perCall {
					ctx = WithAPIKey(ctx, callerKey)
				}
				err := m.call(ctx, c)
				var ue *Error
				if !errors.As(err, &ue) || ue.HTTPStatus != 500 {
					t.Fatalf("err = %v, want the 500", err)
				}
				want := int64(DefaultMaxAttempts)
				if m.once {
					want = 1
				}
				if n := count.Load(); n != want {
					t.Errorf("requests = %d, want %d", n, want)
				}
				if s := c.Stats(); s.Requests != uint64(want) || s.Retries != uint64(want-1) {
					t.Errorf("Stats = %+v", s)
				}
				log := buf.String()
				if !m.once && !strings.Contains(log, "op="+m.name) {
					t.Errorf("retry log does not name the call:\n%s", log)
				}
				for what, s := range map[string]string{"error": err.Error(), "Message": ue.Message, "Type": ue.Type, "Param": ue.Param, "Code": ue.Code, "log": log} {
					for _, key := range []string{testKey, callerKey} {
						if strings.Contains(s, key) {
							t.Errorf("%s leaks a key: %q", what, s)
						}
					}
				}
				if !strings.Contains(ue.Type, "[redacted]") {
					t.Errorf("Type = %q, want the key redacted", ue.Type)
				}
			})
		}
	}
}

// TestEveryMethodURL: every call goes to its path below a base URL whose
// prefix is escaped, with the escaping kept.
func TestEveryMethodURL(t *testing.T) {
	t.Parallel()
	for _, m := range everyMethod() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			const prefix = "/pro%2Fxy"
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if r.RequestURI != prefix+m.uri {
					t.Errorf("RequestURI = %q, want %q", r.RequestURI, prefix+m.uri)
				}
				w.WriteHeader(http.StatusNotFound)
			})
			c := newTestClient(t, srv.URL+prefix+"/", nil)
			var ue *Error
			if err := m.call(context.Background(), c); !errors.As(err, &ue) || ue.HTTPStatus != 404 {
				t.Errorf("err = %v, want the 404", err)
			}
			if count.Load() != 1 {
				t.Errorf("requests = %d", count.Load())
			}
		})
	}
}

// TestEveryMethodKeyControlCharsSendNothing: a per-call key that cannot be
// sent fails every call before any request, as one that had no effect.
func TestEveryMethodKeyControlCharsSendNothing(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	c := newTestClient(t, srv.URL, nil)
	for _, m := range everyMethod() {
		err := m.call(WithAPIKey(context.Background(), callerKey+"\r\n"), c)
		if err == nil || strings.Contains(err.Error(), callerKey) {
			t.Errorf("%s: err = %v", m.name, err)
		}
		if Classify(err).MayHaveApplied {
			t.Errorf("%s: MayHaveApplied for %v", m.name, err)
		}
	}
	if count.Load() != 0 {
		t.Errorf("requests = %d", count.Load())
	}
}

// TestEveryFileMethodValidatesID: the file calls check their ids (and
// ListFiles its after) with ValidateFileID before any request.
func TestEveryFileMethodValidatesID(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	c := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	calls := map[string]func(id string) error{
		"GetFile":    func(id string) error { _, err := c.GetFile(ctx, id); return err },
		"DeleteFile": func(id string) error { _, err := c.DeleteFile(ctx, id); return err },
		"FileContent": func(id string) error {
			rc, err := c.FileContent(ctx, id)
			if rc != nil {
				rc.Close()
			}
			return err
		},
		"ListFiles after": func(id string) error {
			if id == "" {
				id = "." // empty is no after at all
			}
			_, err := c.ListFiles(ctx, id, 0, "")
			return err
		},
	}
	ids := []string{"", "..", "file_1/content", "file_1?x", "file%2F1", "file 1", "fïle", "a\xff", "a\nb", strings.Repeat("f", MaxFileIDLen+1)}
	for name, call := range calls {
		for _, id := range ids {
			err := call(id)
			if !errors.Is(err, ErrInvalidFileID) {
				t.Errorf("%s(%q) = %v, want ErrInvalidFileID", name, id, err)
			}
			if o := Classify(err); !o.Permanent || o.MayHaveApplied || o.Health != HealthUnknown {
				t.Errorf("%s(%q): Classify = %+v", name, id, o)
			}
		}
	}
	if count.Load() != 0 {
		t.Errorf("requests = %d", count.Load())
	}
}
