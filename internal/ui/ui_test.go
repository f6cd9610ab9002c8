package ui_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/ui"
)

func serve(t *testing.T, method, path string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	ui.Handler().ServeHTTP(rec, req)
	return rec
}

func checkSecurityHeaders(t *testing.T, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if got := rec.Header().Get("Content-Security-Policy"); got != ui.CSP {
		t.Errorf("%s: Content-Security-Policy %q, want %q", path, got, ui.CSP)
	}
	if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", path, got)
	}
}

func TestFilesServedWithHeaders(t *testing.T) {
	want := map[string]string{
		"/ui/":           "text/html; charset=utf-8",
		"/ui/index.html": "text/html; charset=utf-8",
		"/ui/app.js":     "text/javascript; charset=utf-8",
		"/ui/app.css":    "text/css; charset=utf-8",
	}
	if n := len(ui.Files()); n != 3 {
		t.Errorf("embedded files %v, want index.html, app.js and app.css", ui.Files())
	}
	for path, ct := range want {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec := serve(t, method, path, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("%s %s: %d", method, path, rec.Code)
			}
			checkSecurityHeaders(t, path, rec)
			if got := rec.Header().Get("Content-Type"); got != ct {
				t.Errorf("%s %s: Content-Type %q, want %q", method, path, got, ct)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-cache" {
				t.Errorf("%s %s: Cache-Control %q, want no-cache", method, path, got)
			}
			etag := rec.Header().Get("ETag")
			if etag == "" {
				t.Fatalf("%s %s: no ETag", method, path)
			}
			if method == http.MethodHead && rec.Body.Len() != 0 {
				t.Errorf("HEAD %s: a body", path)
			}
			if method == http.MethodGet && rec.Body.Len() == 0 {
				t.Errorf("GET %s: empty", path)
			}
			again := serve(t, http.MethodGet, path, http.Header{"If-None-Match": {etag}})
			if again.Code != http.StatusNotModified {
				t.Errorf("%s with its ETag: %d, want 304", path, again.Code)
			}
			checkSecurityHeaders(t, path+" (304)", again)
		}
	}
}

func TestUnknownAndMethods(t *testing.T) {
	for _, path := range []string{"/ui/nope.js", "/ui/static/app.js", "/ui/../go.mod", "/ui/index.html/", "/elsewhere"} {
		rec := serve(t, http.MethodGet, path, nil)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
		checkSecurityHeaders(t, path, rec)
	}
	rec := serve(t, http.MethodPost, "/ui/", nil)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// stripComments removes /* */ and whole-line // comments (JS, CSS) and
// <!-- --> comments (HTML): the scan below looks at what runs.
func stripComments(s string) string {
	s = regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(s, "")
	s = regexp.MustCompile(`(?s)<!--.*?-->`).ReplaceAllString(s, "")
	return regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(s, "")
}

// TestNoExternalURLs: nothing embedded names another origin, absolute
// (http:, https:) or protocol-relative ("//host").
func TestNoExternalURLs(t *testing.T) {
	bad := regexp.MustCompile(`(?i)https?:|["'(=\x60\s]//|\bsrc\s*=\s*["']?[a-z]+:|@import`)
	for _, name := range ui.Files() {
		body, err := ui.File(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(stripComments(string(body)), "\n") {
			if m := bad.FindString(line); m != "" {
				t.Errorf("%s:%d: %q names another origin: %s", name, i+1, m, strings.TrimSpace(line))
			}
		}
	}
	// The scan itself finds what it should.
	for _, s := range []string{`<script src="https://cdn.example/x.js">`, `fetch("//evil.example/")`, `url(//x/y.woff)`} {
		if !bad.MatchString(stripComments(s)) {
			t.Errorf("the scan misses %s", s)
		}
	}
}

// TestPageNeverUsesEventSourceOrURLTokens: the watch streams are read with
// fetch (EventSource cannot send Authorization) and the token only goes
// into the Authorization header.
func TestPageNeverUsesEventSourceOrURLTokens(t *testing.T) {
	js, err := ui.File("app.js")
	if err != nil {
		t.Fatal(err)
	}
	code := stripComments(string(js))
	for _, s := range []string{"EventSource", "localStorage", "innerHTML", "eval(", "access_token", "token="} {
		if strings.Contains(code, s) {
			t.Errorf("app.js uses %s", s)
		}
	}
	for _, s := range []string{"getReader()", "'Bearer '", "sessionStorage"} {
		if !strings.Contains(code, s) {
			t.Errorf("app.js does not use %s", s)
		}
	}
}
