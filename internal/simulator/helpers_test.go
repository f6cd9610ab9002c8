package simulator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

const (
	testKey    = "sk-test"
	testBearer = "Bearer " + testKey
)

// t0 is the fake clock's start: the provider sample's created_at.
var t0 = time.Unix(1710000000, 0)

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one test's simulator, fake clock and server.
type env struct {
	t      *testing.T
	clock  *fakeClock
	sim    *Simulator
	srv    *httptest.Server
	client *http.Client
}

// newEnv starts a simulator on a fresh server. opts.Now defaults to a fake
// clock at t0 and opts.APIKey to testKey ("-" for none).
func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clock := &fakeClock{t: t0}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	switch opts.APIKey {
	case "":
		opts.APIKey = testKey
	case "-":
		opts.APIKey = ""
	}
	sim := New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	// No keep-alive: each request has its own connection, so a Reset fault
	// never hits a reused one, on which net/http's Transport may retry an
	// idempotent request by itself.
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	t.Cleanup(tr.CloseIdleConnections)
	return &env{t: t, clock: clock, sim: sim, srv: srv, client: &http.Client{Transport: tr}}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// try sends one request; auth is the whole Authorization header ("" for
// none).
func (e *env) try(ctx context.Context, method, path, auth, body string) (response, error) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// do is try that fails the test on a transport error.
func (e *env) do(method, path, auth, body string) response {
	e.t.Helper()
	r, err := e.try(context.Background(), method, path, auth, body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// get fetches a batch with the test key, expecting 200.
func (e *env) get(id string) (wire.Batch, map[string]any) {
	e.t.Helper()
	r := e.do(http.MethodGet, "/v1/batches/"+id, testBearer, "")
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: status %d, body %s", id, r.status, r.body)
	}
	var b wire.Batch
	if err := json.Unmarshal(r.body, &b); err != nil {
		e.t.Fatalf("GET %s: %v in %s", id, err, r.body)
	}
	return b, decodeMap(e.t, r.body)
}

func decodeMap(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return m
}

// checkEnvelope checks that r is the upstream's error envelope with the
// given status, type and code, and returns its param (nil for null).
func checkEnvelope(t *testing.T, r response, status int, typ, code string) any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	m := decodeMap(t, r.body)
	if len(m) != 1 {
		t.Errorf("envelope has keys %v, want only error", keys(m))
	}
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			t.Errorf("error object lacks %q: %s", k, r.body)
		}
	}
	if len(e) != 4 {
		t.Errorf("error object has keys %v", keys(e))
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("empty message: %s", r.body)
	}
	if e["type"] != typ {
		t.Errorf("type %v, want %q", e["type"], typ)
	}
	if c, ok := e["code"].(string); !ok || (code != "" && c != code) {
		t.Errorf("code %#v, want string %q", e["code"], code)
	}
	return e["param"]
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func unix(t time.Time) *wire.Int { return unixAt(t) }

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func str[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	b, _ := json.Marshal(*p)
	return string(b)
}

// numberedInput returns an input file of n requests, custom_ids
// "request-1" to "request-n", of which every failEvery-th (none when 0)
// fails: its custom_id is "fail-<i>".
func numberedInput(n, failEvery int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		id := "request-" + strconv.Itoa(i)
		if failEvery > 0 && i%failEvery == 0 {
			id = "fail-" + strconv.Itoa(i)
		}
		b.WriteString(inputLineJSON(id, "gpt-4o-mini"))
		b.WriteByte('\n')
	}
	return b.String()
}

// inputLineJSON is one valid input line.
func inputLineJSON(customID, model string) string {
	line, _ := json.Marshal(wire.InputLine{CustomID: customID, Method: "POST", URL: SupportedEndpoint,
		Body: json.RawMessage(`{"model":` + strconv.Quote(model) + `,"messages":[{"role":"user","content":"Hi"}]}`)})
	return string(line)
}
