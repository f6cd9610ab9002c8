// Package ui is the gateway's status page: a few static files embedded in
// the binary (no frameworks, no external scripts, fonts or CDNs) that list
// the caller's batches and follow them live through the REST watch
// streams. The gateway mounts Handler at /ui/ on its HTTP port.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every response: the page loads
// only its own files and talks only to its own origin.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Prefix is where the gateway mounts Handler.
const Prefix = "/ui/"

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Files returns the names of the embedded files (index.html, app.js...).
func Files() []string {
	var names []string
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimPrefix(p, "static/"))
		}
		return err
	})
	return names
}

// File returns the content of the embedded file name.
func File(name string) ([]byte, error) { return static.ReadFile("static/" + name) }

// Handler serves the embedded files under Prefix (GET and HEAD; other
// methods get 405): "/ui/" is index.html. Every answer carries the CSP,
// nosniff and no-referrer. index.html is revalidated on each load (no-cache
// with an ETag) so that a new binary's page is picked up at once; the
// other files too, as their names carry no hash.
func Handler() http.Handler {
	files := map[string]file{}
	for _, name := range Files() {
		body, _ := File(name)
		ct := mime.TypeByExtension(path.Ext(name))
		switch path.Ext(name) { // not left to the system's MIME tables
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		sum := sha256.Sum256(body)
		files[name] = file{body: body, contentType: ct, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
	}
	modTime := time.Time{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, Prefix)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			h.Set("Cache-Control", "no-store")
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, name, modTime, bytes.NewReader(f.body))
	})
}
