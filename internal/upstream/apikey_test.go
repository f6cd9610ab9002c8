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
)

// callerKey is a per-call key; like testKey, no error string may contain it.
const callerKey = "sk-caller-0a1b2c3d4e5f-PERCALL"

func TestWithAPIKeyChoosesTheKeySent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ctx  func() context.Context
		want string // Authorization header; "" means absent
	}{
		{"config key without WithAPIKey", context.Background, "Bearer " + testKey},
		{"per-call key", func() context.Context {
			return WithAPIKey(context.Background(), callerKey)
		}, "Bearer " + callerKey},
		{"innermost WithAPIKey wins", func() context.Context {
			return WithAPIKey(WithAPIKey(context.Background(), "sk-outer-key-0000"), callerKey)
		}, "Bearer " + callerKey},
		{"empty per-call key sends none, never the config key", func() context.Context {
			return WithAPIKey(context.Background(), "")
		}, ""},
		{"per-call key copied", func() context.Context {
			return WithAPIKeyFrom(context.Background(), WithAPIKey(context.Background(), callerKey))
		}, "Bearer " + callerKey},
		{"empty per-call key copied", func() context.Context {
			return WithAPIKeyFrom(context.Background(), WithAPIKey(context.Background(), ""))
		}, ""},
		{"nothing to copy", func() context.Context {
			return WithAPIKeyFrom(context.Background(), context.Background())
		}, "Bearer " + testKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				got, present := r.Header["Authorization"]
				switch {
				case tt.want == "" && present:
					t.Errorf("Authorization = %q, want none", got)
				case tt.want != "" && r.Header.Get("Authorization") != tt.want:
					t.Errorf("Authorization = %q, want %q", r.Header.Get("Authorization"), tt.want)
				}
				io.WriteString(w, `{"id":"b"}`)
			})
			c := newTestClient(t, srv.URL, nil)
			if _, err := c.GetBatch(tt.ctx(), "b"); err != nil {
				t.Fatalf("GetBatch: %v", err)
			}
		})
	}
}

// TestWithAPIKeyRedacted has an upstream that echoes the Authorization
// header and the gateway's own key into its error envelope; neither key may
// reach an error string, an *Error field or a debug log line.
func TestWithAPIKeyRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		configKey string
		callKey   string
		status    int
	}{
		{"400 not retried", testKey, callerKey, http.StatusBadRequest},
		{"503 retried and logged", testKey, callerKey, http.StatusServiceUnavailable},
		{"config key inside the call key", "PERCALL", callerKey, http.StatusBadRequest},
		{"call key inside the config key", testKey, "SECRET", http.StatusBadRequest},
		{"no config key", "", callerKey, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf syncBuffer
			srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				auth := r.Header.Get("Authorization")
				if auth != "Bearer "+tt.callKey {
					t.Errorf("Authorization = %q, want the call's key", auth)
				}
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error":{"message":"bad key %[1]s, not %[2]s","type":"t %[1]s","param":"p %[2]s","code":"c %[1]s"}}`, auth, tt.configKey)
			})
			c := newTestClient(t, srv.URL, func(c *Config) {
				c.APIKey = tt.configKey
				c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			_, err := c.GetBatch(WithAPIKey(context.Background(), tt.callKey), "b")
			var ue *Error
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if tt.status == http.StatusServiceUnavailable && count.Load() != DefaultMaxAttempts {
				t.Errorf("requests = %d, want %d", count.Load(), DefaultMaxAttempts)
			}
			texts := map[string]string{
				"err.Error()": err.Error(), "Message": ue.Message, "Type": ue.Type,
				"Param": ue.Param, "Code": ue.Code, "log": buf.String(),
			}
			for what, s := range texts {
				for _, secret := range []string{tt.configKey, tt.callKey} {
					if secret != "" && strings.Contains(s, secret) {
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

func TestWithAPIKeyControlCharsSendNothing(t *testing.T) {
	t.Parallel()
	srv, count := countingServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"id":"b"}`)
	})
	c := newTestClient(t, srv.URL, nil)
	for _, k := range []string{callerKey + "\n", "\r" + callerKey, callerKey + "\x00", callerKey + "\x7f"} {
		_, err := c.GetBatch(WithAPIKey(context.Background(), k), "b")
		if err == nil {
			t.Fatalf("key %q: want an error", k)
		}
		if strings.Contains(err.Error(), callerKey) {
			t.Errorf("error leaks the key: %q", err)
		}
	}
	if n := count.Load(); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
}
