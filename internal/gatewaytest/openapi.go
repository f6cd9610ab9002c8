package gatewaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/batchgate/batchgate/openapi"
)

// OpenAPITransport returns base (http.DefaultTransport when nil) wrapped so
// that every response it carries from the gateway's HTTP port is checked
// against openapi/batchgate.yaml, and one that does not conform fails t
// (t.Errorf, naming the request, the status and what is wrong). Start
// wraps Env.HTTP with it; tests that make clients of their own wrap them
// with it too.
//
// What is checked:
//
//   - the operation is found by method and path (HEAD as the GET of the
//     path); a request no operation matches (an unknown path, a wrong
//     method) is checked against the document's UnknownURL (404),
//     MethodNotAllowed (405), InvalidURL (400) and HeadersTooLarge (431)
//     responses;
//   - the status must be one the operation lists (or its default), with
//     the response's headers and content type, by
//     openapi3filter.ValidateResponse;
//   - a JSON or text body is read whole before the response is returned
//     (the test gets the same bytes, or the same read error) and validated
//     against its schema;
//   - a stream is never buffered: an NDJSON body (watch, results) is
//     validated line by line as the test reads it, each line against the
//     media type's x-line-schema, and an SSE body (watch) event by event,
//     each event's data against the schema its x-sse-events entry names;
//     only what the test reads is checked, and a stream cut short (a
//     cancelled request) leaves its last partial line unchecked. Raw file
//     content (application/octet-stream) is checked for status and headers
//     only;
//   - HEAD responses are checked for their status only (they have no
//     body).
//
// Requests are not checked: tests send bad ones on purpose. CORS
// preflights (OPTIONS with Access-Control-Request-Method) and the 301s
// with which http.ServeMux cleans a path are not described by the
// document and pass unchecked. What a test reads after
// it has finished (a reader goroutine draining a stream during cleanup)
// is not reported.
func OpenAPITransport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	t.Helper()
	c, err := loadConformance()
	if err != nil {
		t.Fatalf("openapi: %v", err)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	r := &reporter{t: t}
	t.Cleanup(r.stop)
	return &openAPITransport{base: base, c: c, r: r}
}

// reporter fails the test for a nonconforming response, until the test
// has ended (testing.T must not be used after that).
type reporter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (r *reporter) errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		r.t.Errorf(format, args...)
	}
}

func (r *reporter) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
}

// conformance is the loaded document and its router, shared by every
// transport.
type conformance struct {
	doc    *openapi3.T
	router routers.Router
	// unrouted is the operation a request no operation matches is
	// checked against.
	unrouted *openapi3.Operation
}

var loadConformance = sync.OnceValues(func() (*conformance, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Document())
	if err != nil {
		return nil, fmt.Errorf("loading batchgate.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("batchgate.yaml is not valid: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing batchgate.yaml: %w", err)
	}
	c := &conformance{doc: doc, router: router}
	var opts []openapi3.NewResponsesOption
	for status, name := range map[int]string{400: "InvalidURL", 404: "UnknownURL", 405: "MethodNotAllowed", 431: "HeadersTooLarge"} {
		ref := doc.Components.Responses[name]
		if ref == nil {
			return nil, fmt.Errorf("batchgate.yaml has no components.responses.%s", name)
		}
		opts = append(opts, openapi3.WithStatus(status, ref))
	}
	c.unrouted = &openapi3.Operation{Responses: openapi3.NewResponses(opts...)}
	return c, nil
})

// schema returns the component schema that ref ("#/components/schemas/X")
// names, or nil.
func (c *conformance) schema(ref any) *openapi3.Schema {
	s, _ := ref.(string)
	name, ok := strings.CutPrefix(s, "#/components/schemas/")
	if !ok {
		return nil
	}
	if sr := c.doc.Components.Schemas[name]; sr != nil {
		return sr.Value
	}
	return nil
}

type openAPITransport struct {
	base http.RoundTripper
	c    *conformance
	r    *reporter
}

// CloseIdleConnections closes the base transport's idle connections.
func (o *openAPITransport) CloseIdleConnections() {
	if ci, ok := o.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// RoundTrip sends req with the base transport and checks the response.
func (o *openAPITransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.base.RoundTrip(req)
	if err != nil || resp == nil {
		return resp, err
	}
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
		return resp, nil // a CORS preflight: not the API's
	}
	if resp.StatusCode == http.StatusMovedPermanently && !isClean(req.URL.Path) {
		return resp, nil // http.ServeMux cleaning the path: not the API's
	}
	o.check(req, resp)
	return resp, nil
}

// isClean reports whether http.ServeMux serves p as it is rather than
// redirecting to its cleaned form (no "//", "." or ".." segments).
func isClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np == p
}

// Media types whose bodies are streams: never read ahead of the test.
const (
	mediaNDJSON = "application/x-ndjson"
	mediaSSE    = "text/event-stream"
	mediaBytes  = "application/octet-stream"
)

func (o *openAPITransport) check(req *http.Request, resp *http.Response) {
	ct := resp.Header.Get("Content-Type")
	fail := func(format string, args ...any) {
		o.r.errorf("openapi: %s %s answered %d %q: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, ct, fmt.Sprintf(format, args...))
	}
	find := req
	if req.Method == http.MethodHead {
		find = req.Clone(req.Context())
		find.Method = http.MethodGet
	}
	route, params, err := o.c.router.FindRoute(find)
	if err != nil {
		route, params = &routers.Route{Spec: o.c.doc, Path: "(a path or method the port does not serve)", Method: req.Method, Operation: o.c.unrouted}, nil
	}
	responses := route.Operation.Responses
	ref := responses.Status(resp.StatusCode)
	if ref == nil {
		ref = responses.Default()
	}
	if ref == nil || ref.Value == nil {
		fail("status %d is not described for %s %s", resp.StatusCode, route.Method, route.Path)
		return
	}
	if req.Method == http.MethodHead {
		return // no body; the status is described
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	input.Options.WithCustomSchemaErrorFunc(schemaError)
	mt, _, _ := mime.ParseMediaType(ct)
	switch mt {
	case mediaNDJSON, mediaSSE, mediaBytes:
		input.Options.ExcludeResponseBody = true
		if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
			fail("%v", err)
		}
		media := ref.Value.Content.Get(ct)
		if media == nil {
			fail("content type not described for %s %s", route.Method, route.Path)
			return
		}
		if s := o.c.schema(media.Extensions["x-line-schema"]); mt == mediaNDJSON && s != nil {
			resp.Body = &lineChecker{rc: resp.Body, line: ndjsonLine(s, fail), eof: ndjsonEOF(fail)}
		}
		if events, ok := media.Extensions["x-sse-events"].(map[string]any); mt == mediaSSE && ok {
			sc := &sseChecker{c: o.c, events: events, fail: fail}
			resp.Body = &lineChecker{rc: resp.Body, line: sc.line, eof: sc.eof}
		}
	default:
		data, rerr := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data), errReader{rerr}))
		if rerr != nil {
			input.Options.ExcludeResponseBody = true // the test sees the same failure
		} else {
			input.SetBodyBytes(data)
		}
		if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
			fail("%v\nbody: %.500s", err, data)
		}
	}
}

// errReader returns err (io.EOF when nil) from every Read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

// maxCheckedLine bounds the line a lineChecker holds: longer lines are
// reported and not checked.
const maxCheckedLine = 64 << 20

// lineChecker passes a body through, handing each complete line (without
// its "\n") to line as the reader reads it, and what is left at a clean
// end of the body to eof.
type lineChecker struct {
	rc    io.ReadCloser
	line  func([]byte)
	eof   func(rest []byte)
	buf   []byte
	long  bool // the current line went over maxCheckedLine
	ended bool
}

func (l *lineChecker) Read(p []byte) (int, error) {
	n, err := l.rc.Read(p)
	l.feed(p[:n])
	if errors.Is(err, io.EOF) && !l.ended {
		l.ended = true
		if !l.long {
			l.eof(l.buf)
		}
	}
	return n, err
}

func (l *lineChecker) Close() error { return l.rc.Close() }

func (l *lineChecker) feed(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			l.hold(data)
			return
		}
		l.hold(data[:i])
		if !l.long {
			l.line(l.buf)
		}
		l.buf, l.long = l.buf[:0], false
		data = data[i+1:]
	}
}

func (l *lineChecker) hold(data []byte) {
	if l.long {
		return
	}
	if len(l.buf)+len(data) > maxCheckedLine {
		l.line([]byte("(a line over 64 MiB, not checked)"))
		l.buf, l.long = l.buf[:0], true
		return
	}
	l.buf = append(l.buf, data...)
}

// decodeJSON reads data as exactly one JSON value, numbers kept exact.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func visit(s *openapi3.Schema, data []byte) error {
	v, err := decodeJSON(data)
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.VisitJSON(v, openapi3.VisitAsResponse(), openapi3.MultiErrors(), openapi3.SetSchemaErrorMessageCustomizer(schemaError))
}

// schemaError words a schema violation as where it is and why, without
// the schema and the value that kin-openapi's own message prints.
func schemaError(err *openapi3.SchemaError) string {
	return "at /" + strings.Join(err.JSONPointer(), "/") + ": " + err.Reason
}

// ndjsonLine checks each line of an NDJSON stream against s.
func ndjsonLine(s *openapi3.Schema, fail func(string, ...any)) func([]byte) {
	return func(line []byte) {
		if err := visit(s, line); err != nil {
			fail("NDJSON line: %v\nline: %.300q", err, line)
		}
	}
}

// ndjsonEOF reports a stream whose last line has no "\n".
func ndjsonEOF(fail func(string, ...any)) func([]byte) {
	return func(rest []byte) {
		if len(rest) > 0 {
			fail("the stream ends inside a line: %.300q", rest)
		}
	}
}

// sseChecker checks Server-Sent Events: each event's data against the
// schema of its event name.
type sseChecker struct {
	c      *conformance
	events map[string]any
	fail   func(string, ...any)
	// The event being read.
	name, data string
	fields     int
}

func (s *sseChecker) line(line []byte) {
	if len(line) == 0 {
		s.dispatch()
		return
	}
	if line[0] == ':' {
		return // a comment
	}
	field, value, _ := strings.Cut(string(line), ":")
	value = strings.TrimPrefix(value, " ")
	s.fields++
	switch field {
	case "event":
		s.name = value
	case "data":
		if s.data != "" {
			s.data += "\n"
		}
		s.data += value
	case "id", "retry":
	default:
		s.fail("SSE field %q is not one the stream sends", field)
	}
}

func (s *sseChecker) dispatch() {
	if s.fields == 0 {
		return
	}
	name, data := s.name, s.data
	s.name, s.data, s.fields = "", "", 0
	if name == "" {
		name = "message"
	}
	schema := s.c.schema(s.events[name])
	if schema == nil {
		s.fail("SSE event %q is not described", name)
		return
	}
	if err := visit(schema, []byte(data)); err != nil {
		s.fail("SSE event %q: %v\ndata: %.300q", name, err, data)
	}
}

func (s *sseChecker) eof(rest []byte) {
	if len(rest) > 0 || s.fields > 0 {
		s.fail("the stream ends inside an event")
	}
}
