package gateway_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/ui"
)

// TestStatusPageMounted: the HTTP port serves the status page at /ui/
// (GET and HEAD, without a token even in key mode: the files are public,
// the API calls they make are not), /ui redirects there, and -ui=false
// turns it off. A plain client: the page is not part of the REST wire of
// openapi/batchgate.yaml.
func TestStatusPageMounted(t *testing.T) {
	t.Parallel()
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(t *testing.T, method, url string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	t.Run("on", func(t *testing.T) {
		t.Parallel()
		tokens := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(tokens, []byte("alice tok-alice-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		e := gatewaytest.Start(t, gatewaytest.Options{}, keyMode(tokens))
		resp, body := get(t, http.MethodGet, e.BaseURL+"/ui/")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "app.js") {
			t.Fatalf("GET /ui/: %d %s %.80q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ui.CSP {
			t.Errorf("GET /ui/: CSP %q", got)
		}
		if resp, _ := get(t, http.MethodHead, e.BaseURL+"/ui/app.js"); resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD /ui/app.js: %d", resp.StatusCode)
		}
		resp, _ = get(t, http.MethodGet, e.BaseURL+"/ui")
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
			t.Errorf("GET /ui: %d Location %q, want 301 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp, _ := get(t, http.MethodGet, e.BaseURL+"/ui/nope.js"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /ui/nope.js: %d, want 404", resp.StatusCode)
		}
		if resp, _ := get(t, http.MethodPost, e.BaseURL+"/ui/"); resp.StatusCode/100 != 4 {
			t.Errorf("POST /ui/: %d, want a 4xx", resp.StatusCode)
		}
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		e := gatewaytest.Start(t, gatewaytest.Options{}, func(c *config.Config) { c.Server.UI = false })
		if resp, _ := get(t, http.MethodGet, e.BaseURL+"/ui/"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("-ui=false: GET /ui/: %d, want 404", resp.StatusCode)
		}
	})
}
