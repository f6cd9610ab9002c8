package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestValidateBatchID(t *testing.T) {
	t.Parallel()
	valid := []string{"b", "batch_01abc", "file_abc123", "A-Z_a-z_0-9", "-", "_", strings.Repeat("x", MaxBatchIDLen)}
	for _, id := range valid {
		if err := ValidateBatchID(id); err != nil {
			t.Errorf("ValidateBatchID(%q) = %v, want nil", id, err)
		}
	}
	invalid := []struct{ id, reason string }{
		{"", "batch id is empty"},
		{strings.Repeat("x", MaxBatchIDLen+1), "longer than 256"},
		{"a/b", `character '/' not allowed`},
		{"a\x00", `character '\x00' not allowed`},
		{"bätch", `character 'ä' not allowed`},
		{"a\xff", "byte 0xff, which is not valid UTF-8"},
	}
	for _, tt := range invalid {
		err := ValidateBatchID(tt.id)
		if !errors.Is(err, ErrInvalidBatchID) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("ValidateBatchID(%q) = %v, want ErrInvalidBatchID mentioning %q", tt.id, err, tt.reason)
		}
	}
}

// recordingTransport answers every request with a 200 holding a batch
// whose id is the last path segment, and records the URLs it was asked
// for; no network is involved.
type recordingTransport struct {
	mu   sync.Mutex
	urls []*url.URL
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	u := *req.URL
	rt.urls = append(rt.urls, &u)
	rt.mu.Unlock()
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(`{"id":` + strconv.Quote(path.Base(req.URL.Path)) + `}`)),
		Request:    req,
	}, nil
}

func FuzzBatchIDPath(f *testing.F) {
	for _, s := range []string{
		"batch_01abc", "file_abc123", "", "/", ".", "..", "...", "a/b", "a%2Fb", "%2e%2e", "%2F",
		"a?b", "?", "a#b", "#", "a b", " ", "\x00", "\t", "\r\n", "\x7f", "é", "\uff0f", "\u2215",
		"\xff", "\xc0\xaf", "../v1/files", "..%2F..%2Fv1%2Ffiles", "batch_01abc/cancel", "a;b", `a\b`,
		"a+b", "a&b=c", "//evil.example/x", "http://evil.example/", "@evil.example", "%", "%zz",
		strings.Repeat("a", MaxBatchIDLen), strings.Repeat("a", MaxBatchIDLen+1), strings.Repeat("-", 10),
	} {
		f.Add(s)
	}
	const prefix = "/prefix"
	f.Fuzz(func(t *testing.T, id string) {
		rt := &recordingTransport{}
		c, err := New(Config{
			BaseURL:     "http://upstream.test" + prefix + "/",
			APIKey:      testKey,
			HTTPClient:  &http.Client{Transport: rt},
			MaxAttempts: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetBatch(context.Background(), id)
		if verr := ValidateBatchID(id); verr != nil {
			if !errors.Is(err, ErrInvalidBatchID) {
				t.Fatalf("GetBatch(%q) = %v, want ErrInvalidBatchID", id, err)
			}
			if len(rt.urls) != 0 {
				t.Fatalf("GetBatch(%q) sent %d requests for an invalid id", id, len(rt.urls))
			}
			return
		}
		if err != nil {
			t.Fatalf("GetBatch(%q): %v", id, err)
		}
		if len(rt.urls) != 1 {
			t.Fatalf("GetBatch(%q) sent %d requests", id, len(rt.urls))
		}
		u := rt.urls[0]
		want := prefix + "/v1/batches/" + id
		if u.Path != want || u.EscapedPath() != want {
			t.Fatalf("GetBatch(%q) path %q (escaped %q), want %q", id, u.Path, u.EscapedPath(), want)
		}
		if u.Scheme != "http" || u.Host != "upstream.test" || u.User != nil {
			t.Fatalf("GetBatch(%q) went to %s", id, u.Redacted())
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
			t.Fatalf("GetBatch(%q) URL has query or fragment: %s", id, u.Redacted())
		}
	})
}

func TestValidateFileID(t *testing.T) {
	t.Parallel()
	valid := []string{"f", "file_abc123", "file-abc123", "A-Z_a-z_0-9", strings.Repeat("x", MaxFileIDLen)}
	for _, id := range valid {
		if err := ValidateFileID(id); err != nil {
			t.Errorf("ValidateFileID(%q) = %v, want nil", id, err)
		}
	}
	invalid := []struct{ id, reason string }{
		{"", "file id is empty"},
		{strings.Repeat("x", MaxFileIDLen+1), "file id is 257 bytes long, longer than 256"},
		{"a/b", `character '/' not allowed in file ids`},
		{"..", `character '.' not allowed`},
		{"file_1/content", `character '/' not allowed`},
		{"a%2Fb", `character '%' not allowed`},
		{"a\r\nb", `character '\r' not allowed`},
		{"fïle", `character 'ï' not allowed`},
		{"a\xff", "file id contains byte 0xff, which is not valid UTF-8"},
	}
	for _, tt := range invalid {
		err := ValidateFileID(tt.id)
		if !errors.Is(err, ErrInvalidFileID) || errors.Is(err, ErrInvalidBatchID) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("ValidateFileID(%q) = %v, want ErrInvalidFileID mentioning %q", tt.id, err, tt.reason)
		}
		if len(tt.id) > 1 && strings.Contains(err.Error(), tt.id) {
			t.Errorf("ValidateFileID(%q) repeats the id: %v", tt.id, err)
		}
	}
}
