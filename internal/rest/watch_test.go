package rest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

// hangGuard bounds every watch request of these tests, so that a response
// that is never flushed fails its test instead of hanging the package. No
// test waits for it in a passing run.
const hangGuard = 30 * time.Second

// watchServer is a BatchServiceServer whose WatchBatch runs a test's
// script.
type watchServer struct {
	batchv1.UnimplementedBatchServiceServer
	watch func(*batchv1.WatchBatchRequest, batchv1.BatchService_WatchBatchServer) error
}

func (s *watchServer) WatchBatch(req *batchv1.WatchBatchRequest, stream batchv1.BatchService_WatchBatchServer) error {
	return s.watch(req, stream)
}

// startWatch serves watch on a real gRPC server over an in-memory
// listener, behind a runtime.ServeMux made by NewServeMux with the
// generated handlers and then RegisterWatchHandler, in an httptest.Server.
// It returns the server, whose Client reads responses over real HTTP.
func startWatch(t *testing.T, watch func(*batchv1.WatchBatchRequest, batchv1.BatchService_WatchBatchServer) error) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(watchMux(t, watch))
	t.Cleanup(ts.Close)
	return ts
}

// watchMux is the REST mux of startWatch, without the HTTP server.
func watchMux(t *testing.T, watch func(*batchv1.WatchBatchRequest, batchv1.BatchService_WatchBatchServer) error) *runtime.ServeMux {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	batchv1.RegisterBatchServiceServer(gs, &watchServer{watch: watch})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
	})

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := batchv1.NewBatchServiceClient(conn)

	mux := NewServeMux()
	if err := batchv1.RegisterBatchServiceHandlerClient(t.Context(), mux, client); err != nil {
		t.Fatal(err)
	}
	if err := RegisterWatchHandler(mux, client); err != nil {
		t.Fatal(err)
	}
	return mux
}

// openWatch starts GET path with the given Accept header (none when
// empty) and returns the response, its body unread. Cancel ctx to hang
// up.
func openWatch(ctx context.Context, t *testing.T, ts *httptest.Server, path, accept string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// guardCtx returns a context for one watch request, ended by hangGuard
// or the test's end.
func guardCtx(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	t.Cleanup(cancel)
	return ctx, cancel
}

// script plays events one by one: each event after the first is sent only
// once the test has read (acked) the one before, and the stream ends with
// end only once the last one has been read. So a response that buffers
// events instead of flushing each makes its test fail.
type script struct {
	events []*batchv1.WatchBatchResponse
	end    error
	acks   chan struct{}
	seen   chan *batchv1.WatchBatchRequest // the request and its context's metadata
	md     chan metadata.MD
}

func newScript(end error, events ...*batchv1.WatchBatchResponse) *script {
	return &script{
		events: events, end: end,
		acks: make(chan struct{}, len(events)),
		seen: make(chan *batchv1.WatchBatchRequest, 1),
		md:   make(chan metadata.MD, 1),
	}
}

func (s *script) run(req *batchv1.WatchBatchRequest, stream batchv1.BatchService_WatchBatchServer) error {
	ctx := stream.Context()
	s.seen <- req
	md, _ := metadata.FromIncomingContext(ctx)
	s.md <- md
	for _, ev := range s.events {
		if err := stream.Send(ev); err != nil {
			return err
		}
		select {
		case <-s.acks:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.end
}

func (s *script) ack() { s.acks <- struct{}{} }

// watchEvents returns a snapshot of an in_progress batch with huge
// integers, a heartbeat, and a terminal change to a failed batch whose
// strings hold "<", ">" and "&", with the gateway JSON GET returns for
// each batch. The snapshot and the change carry their tags.
func watchEvents(t *testing.T) (evs []*batchv1.WatchBatchResponse, snapshotJSON, changeJSON string) {
	t.Helper()
	huge, html := decodeGolden(t, "huge_integers"), decodeGolden(t, "unicode_html")
	evs = []*batchv1.WatchBatchResponse{
		{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, Batch: huge, Sequence: 1, ObservedAtUnixMs: 1710000000123, Tag: wire.Tag(huge)},
		{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Sequence: 2, ObservedAtUnixMs: 1710000015123},
		{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE, Batch: html, Terminal: true, Sequence: 3, ObservedAtUnixMs: 1710000020456, Tag: wire.Tag(html)},
	}
	return evs, compact(t, readGolden(t, "huge_integers", "gateway")), compact(t, readGolden(t, "unicode_html", "gateway"))
}

// readLine returns the next NDJSON line, without its newline.
func readLine(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading a line: %v (got %q)", err, line)
	}
	return bytes.TrimSuffix(line, []byte{'\n'})
}

// expectEOF checks that the body ends here.
func expectEOF(t *testing.T, br *bufio.Reader) {
	t.Helper()
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the last event: %q, %v; want the end of the body", rest, err)
	}
}

// object decodes data as a JSON object of raw values and checks its exact
// key set.
func object(t *testing.T, data []byte, keys ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %v", data, err)
	}
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(keys)
	if !slices.Equal(got, keys) {
		t.Fatalf("%s has keys %v, want %v", data, got, keys)
	}
	return m
}

// checkEvent checks an event object (an NDJSON line, or the data of an SSE
// heartbeat): its keys, and its numbers written as JSON numbers. tag and
// batch are absent when empty.
func checkEvent(t *testing.T, data []byte, typ, seq, terminal, observed, tag, batch string) {
	t.Helper()
	keys := []string{"type", "sequence", "terminal", "observed_at_ms"}
	if batch != "" {
		keys = append(keys, "batch")
	}
	if tag != "" {
		keys = append(keys, "tag")
	}
	m := object(t, data, keys...)
	want := map[string]string{"type": `"` + typ + `"`, "sequence": seq, "terminal": terminal, "observed_at_ms": observed}
	if batch != "" {
		want["batch"] = batch
	}
	if tag != "" {
		want["tag"] = `"` + tag + `"`
	}
	for k, v := range want {
		if string(m[k]) != v {
			t.Errorf("%s: %s = %s, want %s", data, k, m[k], v)
		}
	}
}

func TestWatchNDJSON(t *testing.T) {
	t.Parallel()
	for _, accept := range []string{
		"",
		"*/*",
		"application/x-ndjson",
		"application/json",
		"text/html",
		"application/x-ndjson, text/event-stream;q=0.5",
		"text/event-stream;q=0",
		"not a media type",
	} {
		t.Run("Accept="+accept, func(t *testing.T) {
			t.Parallel()
			evs, snapshot, change := watchEvents(t)
			s := newScript(nil, evs...)
			ts := startWatch(t, s.run)
			ctx, _ := guardCtx(t)
			resp := openWatch(ctx, t, ts, "/v1/batches/batch_huge01/watch", accept, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != ContentTypeNDJSON {
				t.Errorf("Content-Type = %q, want %q", ct, ContentTypeNDJSON)
			}
			if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
				t.Errorf("a stream with a Content-Length (%d)", resp.ContentLength)
			}
			if req := <-s.seen; req.GetBatchId() != "batch_huge01" {
				t.Errorf("WatchBatch got batch_id %q", req.GetBatchId())
			}
			br := bufio.NewReader(resp.Body)

			checkEvent(t, readLine(t, br), "snapshot", "1", "false", "1710000000123", evs[0].Tag, snapshot)
			s.ack()
			checkEvent(t, readLine(t, br), "heartbeat", "2", "false", "1710000015123", "", "")
			s.ack()
			checkEvent(t, readLine(t, br), "change", "3", "true", "1710000020456", evs[2].Tag, change)
			s.ack()
			expectEOF(t, br)
		})
	}
}

// sseEvent is one dispatched Server-Sent Event, with the fields its block
// set.
type sseEvent struct {
	id, event, data, retry string
	hasID                  bool
}

// readSSE parses the next event block of an event stream as the HTML
// standard says: lines end with LF, CR or CRLF (this server sends LF), a
// blank line ends the block, lines starting with ":" are comments, "field:
// value" loses one leading space of the value, data lines join with LF.
// It returns io.EOF at the end of the body between blocks.
func readSSE(t *testing.T, br *bufio.Reader) (sseEvent, error) {
	t.Helper()
	var ev sseEvent
	var data []string
	started := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" && !started {
				return ev, io.EOF
			}
			t.Fatalf("event stream cut inside a block: %q, %v", line, err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !started {
				continue
			}
			ev.data = strings.Join(data, "\n")
			return ev, nil
		}
		started = true
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id, ev.hasID = value, true
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		case "retry":
			ev.retry = value
		default:
			t.Errorf("unknown SSE field %q", field)
		}
	}
}

func nextSSE(t *testing.T, br *bufio.Reader) sseEvent {
	t.Helper()
	ev, err := readSSE(t, br)
	if err != nil {
		t.Fatalf("reading an event: %v", err)
	}
	return ev
}

func TestWatchSSE(t *testing.T) {
	t.Parallel()
	for _, accept := range []string{
		"text/event-stream",
		"TEXT/Event-Stream; charset=utf-8",
		"application/json, text/event-stream",
		"application/x-ndjson;q=0.5, text/event-stream",
	} {
		t.Run("Accept="+accept, func(t *testing.T) {
			t.Parallel()
			evs, snapshot, change := watchEvents(t)
			s := newScript(nil, evs...)
			ts := startWatch(t, s.run)
			ctx, _ := guardCtx(t)
			resp := openWatch(ctx, t, ts, "/v1/batches/batch_huge01/watch", accept, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for k, want := range map[string]string{
				"Content-Type":      "text/event-stream",
				"Cache-Control":     "no-cache",
				"X-Accel-Buffering": "no",
				"Content-Length":    "",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if resp.ContentLength != -1 {
				t.Errorf("ContentLength = %d, want unknown", resp.ContentLength)
			}
			br := bufio.NewReader(resp.Body)

			if ev := nextSSE(t, br); ev != (sseEvent{id: evs[0].Tag, hasID: true, event: "snapshot", data: snapshot}) {
				t.Errorf("first event %+v, want the snapshot's batch as GET returns it: %s", ev, snapshot)
			}
			s.ack()
			ev := nextSSE(t, br)
			if ev.hasID || ev.event != "heartbeat" || ev.retry != "" {
				t.Errorf("second event %+v, want a heartbeat without id", ev)
			}
			checkEvent(t, []byte(ev.data), "heartbeat", "2", "false", "1710000015123", "", "")
			s.ack()
			if ev := nextSSE(t, br); ev != (sseEvent{id: evs[2].Tag, hasID: true, event: "change", data: change}) {
				t.Errorf("third event %+v, want the change's batch as GET returns it: %s", ev, change)
			}
			s.ack()
			if ev := nextSSE(t, br); ev != (sseEvent{event: "end", data: "{}"}) {
				t.Errorf("last event %+v, want end with {}", ev)
			}
			if ev, err := readSSE(t, br); !errors.Is(err, io.EOF) {
				t.Errorf("after end: %+v, %v; want the end of the body", ev, err)
			}
		})
	}
}

// envelopeOf decodes an upstream error envelope, checking its exact key
// set.
func envelopeOf(t *testing.T, data []byte) wire.ErrorObject {
	t.Helper()
	inner := object(t, data, "error")["error"]
	object(t, inner, "message", "type", "param", "code")
	var env wire.ErrorEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	return env.Error
}

func TestWatchErrorBeforeFirstEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		id         string
		header     http.Header
		err        error // what WatchBatch returns before any event; nil: OK
		wantStatus int
		wantType   string
		wantCode   string
		wantRetry  string
		noCall     bool // the request must not reach WatchBatch
	}{
		{name: "invalid id", id: "bad.id", wantStatus: 400, wantType: "invalid_request_error", wantCode: "invalid_batch_id"},
		{name: "unknown batch", err: apierr.FromError(&upstream.Error{HTTPStatus: 404, Type: "not_found_error", Code: "not_found"}).Err(),
			wantStatus: 404, wantType: "not_found_error", wantCode: "not_found"},
		{name: "upstream 401", err: apierr.FromError(&upstream.Error{HTTPStatus: 401, Type: "invalid_request_error", Code: "invalid_api_key"}).Err(),
			wantStatus: 401, wantType: "invalid_request_error", wantCode: "invalid_api_key"},
		{name: "insufficient balance", err: apierr.FromError(&upstream.Error{HTTPStatus: 402, Type: "insufficient_balance", Code: "402"}).Err(),
			wantStatus: 402, wantType: "insufficient_balance", wantCode: "402"},
		{name: "rate limited", err: apierr.FromError(&upstream.Error{HTTPStatus: 429, Type: "rate_limit_error", Code: "rate_limit_exceeded", RetryAfter: 1500 * time.Millisecond}).Err(),
			wantStatus: 429, wantType: "rate_limit_error", wantCode: "rate_limit_exceeded", wantRetry: "2"},
		{name: "shutting down", err: apierr.FromError(watch.ErrShutdown).Err(),
			wantStatus: 503, wantType: "api_error", wantCode: "gateway_shutting_down", wantRetry: "1"},
		{name: "bare status", err: status.Error(codes.NotFound, "no such batch"),
			wantStatus: 404, wantType: "not_found_error", wantCode: "not_found"},
		{name: "no event at all", err: nil, wantStatus: 500, wantType: "api_error", wantCode: "internal_error"},
		{name: "bad grpc-timeout header", header: http.Header{"Grpc-Timeout": {"soon"}}, noCall: true,
			wantStatus: 400, wantType: "invalid_request_error", wantCode: "invalid_argument"},
	}
	for _, tt := range tests {
		for _, accept := range []string{"", ContentTypeSSE} {
			t.Run(tt.name+"/Accept="+accept, func(t *testing.T) {
				t.Parallel()
				called := make(chan struct{}, 1)
				ts := startWatch(t, func(req *batchv1.WatchBatchRequest, _ batchv1.BatchService_WatchBatchServer) error {
					called <- struct{}{}
					if err := upstream.ValidateBatchID(req.GetBatchId()); err != nil {
						return apierr.FromError(err).Err()
					}
					return tt.err
				})
				id := tt.id
				if id == "" {
					id = "batch_x"
				}
				ctx, _ := guardCtx(t)
				resp := openWatch(ctx, t, ts, "/v1/batches/"+id+"/watch", accept, tt.header)
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tt.wantStatus {
					t.Errorf("status %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.wantRetry {
					t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
				}
				env := envelopeOf(t, body)
				if env.Type != tt.wantType || str(env.Code) != tt.wantCode || env.Message == "" {
					t.Errorf("envelope %s: want type %q, code %q and a message", body, tt.wantType, tt.wantCode)
				}
				if len(called) > 0 == tt.noCall {
					t.Errorf("WatchBatch called: %v, want %v", len(called) > 0, !tt.noCall)
				}
			})
		}
	}
}

func TestWatchErrorAfterFirstEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus string
		wantType   string
		wantCode   string
		wantRetry  string // milliseconds; "" when the error says nothing
	}{
		{name: "shutting down", err: apierr.FromError(watch.ErrShutdown).Err(),
			wantStatus: "503", wantType: "api_error", wantCode: "gateway_shutting_down", wantRetry: "1000"},
		{name: "upstream rate limit", err: apierr.FromError(&upstream.Error{HTTPStatus: 429, Type: "rate_limit_error", Code: "rate_limit_exceeded", RetryAfter: 2500 * time.Millisecond}).Err(),
			wantStatus: "429", wantType: "rate_limit_error", wantCode: "rate_limit_exceeded", wantRetry: "2500"},
		{name: "upstream gone for good", err: apierr.FromError(&upstream.Error{HTTPStatus: 404, Type: "not_found_error", Code: "batch_not_found"}).Err(),
			wantStatus: "404", wantType: "not_found_error", wantCode: "batch_not_found"},
		{name: "bare internal", err: status.Error(codes.Internal, "boom"),
			wantStatus: "500", wantType: "api_error", wantCode: "internal"},
	}
	for _, tt := range tests {
		for _, accept := range []string{"", ContentTypeSSE} {
			t.Run(tt.name+"/Accept="+accept, func(t *testing.T) {
				t.Parallel()
				evs, snapshot, _ := watchEvents(t)
				s := newScript(tt.err, evs[0])
				ts := startWatch(t, s.run)
				ctx, _ := guardCtx(t)
				resp := openWatch(ctx, t, ts, "/v1/batches/batch_huge01/watch", accept, nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				br := bufio.NewReader(resp.Body)
				if accept == "" {
					checkEvent(t, readLine(t, br), "snapshot", "1", "false", "1710000000123", evs[0].Tag, snapshot)
					s.ack()
					line := readLine(t, br)
					keys := []string{"type", "error", "http_status"}
					if tt.wantRetry != "" {
						keys = append(keys, "retry_after_ms")
					}
					m := object(t, line, keys...)
					if string(m["type"]) != `"error"` || string(m["http_status"]) != tt.wantStatus {
						t.Errorf("error line %s: want type error, http_status %s", line, tt.wantStatus)
					}
					if tt.wantRetry != "" && string(m["retry_after_ms"]) != tt.wantRetry {
						t.Errorf("retry_after_ms = %s, want %s", m["retry_after_ms"], tt.wantRetry)
					}
					env := envelopeOf(t, []byte(`{"error":`+string(m["error"])+`}`))
					if env.Type != tt.wantType || str(env.Code) != tt.wantCode || env.Message == "" {
						t.Errorf("error line %s: want type %q, code %q and a message", line, tt.wantType, tt.wantCode)
					}
					expectEOF(t, br)
					return
				}
				if ev := nextSSE(t, br); ev != (sseEvent{id: evs[0].Tag, hasID: true, event: "snapshot", data: snapshot}) {
					t.Errorf("first event %+v", ev)
				}
				s.ack()
				ev := nextSSE(t, br)
				if ev.event != "error" || ev.hasID || ev.retry != tt.wantRetry {
					t.Errorf("error event %+v: want event error, no id, retry %q", ev, tt.wantRetry)
				}
				env := envelopeOf(t, []byte(ev.data))
				if env.Type != tt.wantType || str(env.Code) != tt.wantCode || env.Message == "" {
					t.Errorf("error data %s: want type %q, code %q and a message", ev.data, tt.wantType, tt.wantCode)
				}
				if ev, err := readSSE(t, br); !errors.Is(err, io.EOF) {
					t.Errorf("after the error: %+v, %v; want the end of the body", ev, err)
				}
			})
		}
	}
}

// TestWatchClientGoneCancelsStream hangs up after the first event and
// waits for the WatchBatch handler to see its context end; the package's
// leak check then finds nothing left running.
func TestWatchClientGoneCancelsStream(t *testing.T) {
	t.Parallel()
	for _, accept := range []string{"", ContentTypeSSE} {
		t.Run("Accept="+accept, func(t *testing.T) {
			t.Parallel()
			ended := make(chan error, 1)
			ts := startWatch(t, func(_ *batchv1.WatchBatchRequest, stream batchv1.BatchService_WatchBatchServer) error {
				ctx := stream.Context()
				if err := stream.Send(&batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Sequence: 1}); err != nil {
					ended <- err
					return err
				}
				<-ctx.Done()
				ended <- ctx.Err()
				return ctx.Err()
			})
			ctx, hangUp := guardCtx(t)
			resp := openWatch(ctx, t, ts, "/v1/batches/batch_x/watch", accept, nil)
			br := bufio.NewReader(resp.Body)
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatalf("first event: %v", err)
			}
			hangUp()
			if err := <-ended; !errors.Is(err, context.Canceled) {
				t.Fatalf("WatchBatch ended with %v, want context.Canceled", err)
			}
		})
	}
}

// TestWatchForwardsHeaders checks that request headers reach WatchBatch as
// metadata, as grpc-gateway's generated handlers forward them.
func TestWatchForwardsHeaders(t *testing.T) {
	t.Parallel()
	evs, _, _ := watchEvents(t)
	s := newScript(nil, evs[2])
	ts := startWatch(t, s.run)
	ctx, _ := guardCtx(t)
	resp := openWatch(ctx, t, ts, "/v1/batches/batch_md/watch", "", http.Header{
		"Authorization": {"Bearer caller-token"},
		"User-Agent":    {"watch-test/1"},
	})
	s.ack()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if req := <-s.seen; req.GetBatchId() != "batch_md" {
		t.Errorf("batch_id %q", req.GetBatchId())
	}
	md := <-s.md
	if got := md.Get("authorization"); !slices.Equal(got, []string{"Bearer caller-token"}) {
		t.Errorf("authorization metadata %v", got)
	}
	// grpc-gateway's default matcher forwards permanent HTTP headers
	// under the "grpcgateway-" prefix.
	if got := md.Get("grpcgateway-user-agent"); !slices.Equal(got, []string{"watch-test/1"}) {
		t.Errorf("grpcgateway-user-agent metadata %v", got)
	}
}

func TestRegisterWatchHandlerNil(t *testing.T) {
	t.Parallel()
	if err := RegisterWatchHandler(nil, nil); err == nil {
		t.Fatal("no error for a nil mux and client")
	}
}

// deadlineWriter records the write deadlines set through
// http.ResponseController.
type deadlineWriter struct {
	http.ResponseWriter
	mu        sync.Mutex
	deadlines []time.Time
}

func (d *deadlineWriter) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deadlines = append(d.deadlines, t)
	return nil
}

func (d *deadlineWriter) Flush() { d.ResponseWriter.(http.Flusher).Flush() }

// TestWatchBoundsEachWrite: every event is written under a write deadline,
// so a client that stops reading cannot hold its watch open forever.
func TestWatchBoundsEachWrite(t *testing.T) {
	t.Parallel()
	evs, _, _ := watchEvents(t)
	sc := newScript(nil, evs...)
	for range evs {
		sc.ack() // no pacing: this test reads everything at the end
	}
	mux := watchMux(t, sc.run)
	dw := &deadlineWriter{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw.ResponseWriter = w
		mux.ServeHTTP(dw, r)
	}))
	t.Cleanup(ts.Close)
	ctx, cancel := guardCtx(t)
	defer cancel()
	resp := openWatch(ctx, t, ts, "/v1/batches/batch_1/watch", "", nil)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	dw.mu.Lock()
	defer dw.mu.Unlock()
	if len(dw.deadlines) < len(evs) {
		t.Fatalf("%d write deadlines for %d events", len(dw.deadlines), len(evs))
	}
	for _, d := range dw.deadlines {
		if d.IsZero() || time.Until(d) <= 0 {
			t.Fatalf("deadline %v is not in the future", d)
		}
	}
}

// inprocClient is a BatchServiceClient whose WatchBatch runs its handler
// in a goroutine of its own, as the gateway's in-process client does: the
// handler sends one event, and once its context ends it does its end
// bookkeeping (in the gateway: releasing the caller's watcher slot,
// logging the call), which here waits for proceed. Only then does the
// stream end.
type inprocClient struct {
	batchv1.BatchServiceClient               // nil: only WatchBatch is called
	cancelled                  chan struct{} // closed when the handler saw its context end
	proceed                    chan struct{} // the bookkeeping waits for it
	released                   chan struct{} // closed by the bookkeeping
}

func (c *inprocClient) WatchBatch(ctx context.Context, _ *batchv1.WatchBatchRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[batchv1.WatchBatchResponse], error) {
	s := &inprocStream{ctx: ctx, events: make(chan *batchv1.WatchBatchResponse), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		select {
		case s.events <- &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Sequence: 1}:
		case <-ctx.Done():
		}
		<-ctx.Done()
		close(c.cancelled)
		<-c.proceed
		close(c.released)
		s.err = status.FromContextError(ctx.Err()).Err()
	}()
	return s, nil
}

// inprocStream is the client side of an inprocClient watch.
type inprocStream struct {
	grpc.ClientStream // nil: only Recv is called
	ctx               context.Context
	events            chan *batchv1.WatchBatchResponse
	done              chan struct{} // closed when the handler returned
	err               error         // set before done closes
}

func (s *inprocStream) Recv() (*batchv1.WatchBatchResponse, error) {
	select {
	case ev := <-s.events:
		return ev, nil
	case <-s.done:
		return nil, s.err
	}
}

// brokenWriter is a ResponseWriter whose client is gone: every write
// fails.
type brokenWriter struct{ header http.Header }

func (w *brokenWriter) Header() http.Header       { return w.header }
func (w *brokenWriter) WriteHeader(int)           {}
func (w *brokenWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestWatchWaitsForTheCallToEnd: when the response ends on the handler's
// side (here a write fails), ServeHTTP returns only after the WatchBatch
// call has ended, its bookkeeping done, so that http.Server.Shutdown,
// which waits for handlers, waits for that too.
func TestWatchWaitsForTheCallToEnd(t *testing.T) {
	t.Parallel()
	c := &inprocClient{cancelled: make(chan struct{}), proceed: make(chan struct{}), released: make(chan struct{})}
	mux := NewServeMux()
	if err := RegisterWatchHandler(mux, c); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/batches/batch_x/watch", nil)
	served := make(chan struct{})
	go func() {
		defer close(served)
		mux.ServeHTTP(&brokenWriter{header: http.Header{}}, req)
	}()
	<-c.cancelled // the failed write ended the call
	select {
	case <-served:
		t.Error("ServeHTTP returned while the watch's end bookkeeping was still running")
	case <-time.After(50 * time.Millisecond): // a chance to return too early
	}
	close(c.proceed)
	<-served
	select {
	case <-c.released:
	default:
		t.Error("ServeHTTP returned before the watch's end bookkeeping was done")
	}
}

// TestWatchResumeTag: the tag a watch resumes from is the Last-Event-ID
// header (what EventSource sends when it reconnects), else the resume_tag
// query parameter, whatever the framing.
func TestWatchResumeTag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, query, lastEventID, accept, want string
	}{
		{name: "none", want: ""},
		{name: "query", query: "?resume_tag=bt1_q", want: "bt1_q"},
		{name: "query over SSE", query: "?resume_tag=bt1_q", accept: ContentTypeSSE, want: "bt1_q"},
		{name: "Last-Event-ID", lastEventID: "bt1_h", accept: ContentTypeSSE, want: "bt1_h"},
		{name: "Last-Event-ID over NDJSON", lastEventID: "bt1_h", want: "bt1_h"},
		{name: "Last-Event-ID wins", query: "?resume_tag=bt1_old", lastEventID: "bt1_new", accept: ContentTypeSSE, want: "bt1_new"},
		{name: "blank Last-Event-ID", query: "?resume_tag=bt1_q", lastEventID: " ", want: "bt1_q"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			evs, _, _ := watchEvents(t)
			s := newScript(nil, evs[2])
			ts := startWatch(t, s.run)
			ctx, _ := guardCtx(t)
			h := http.Header{}
			if tt.lastEventID != "" {
				h.Set("Last-Event-ID", tt.lastEventID)
			}
			resp := openWatch(ctx, t, ts, "/v1/batches/batch_huge01/watch"+tt.query, tt.accept, h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if req := <-s.seen; req.GetResumeTag() != tt.want {
				t.Errorf("resume_tag %q, want %q", req.GetResumeTag(), tt.want)
			}
			s.ack()
			_, _ = io.Copy(io.Discard, resp.Body)
		})
	}
}

// TestWatchResumedHeartbeatFirst: a resumed watch whose first event is a
// heartbeat (the batch is still in the client's state) streams it at once,
// with no SSE id, so that EventSource keeps the id it resumed from.
func TestWatchResumedHeartbeatFirst(t *testing.T) {
	t.Parallel()
	evs, _, change := watchEvents(t)
	hb := &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Sequence: 1, ObservedAtUnixMs: 1710000015000}
	next := proto.Clone(evs[2]).(*batchv1.WatchBatchResponse)
	next.Sequence = 2
	s := newScript(nil, hb, next)
	ts := startWatch(t, s.run)
	ctx, _ := guardCtx(t)
	resp := openWatch(ctx, t, ts, "/v1/batches/batch_huge01/watch", ContentTypeSSE, http.Header{"Last-Event-ID": {evs[0].Tag}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentTypeSSE {
		t.Fatalf("status %d, %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	ev := nextSSE(t, br)
	if ev.hasID || ev.event != "heartbeat" {
		t.Errorf("first event %+v, want a heartbeat without id", ev)
	}
	checkEvent(t, []byte(ev.data), "heartbeat", "1", "false", "1710000015000", "", "")
	s.ack()
	if ev := nextSSE(t, br); ev != (sseEvent{id: evs[2].Tag, hasID: true, event: "change", data: change}) {
		t.Errorf("second event %+v, want the change with its tag as id", ev)
	}
	s.ack()
	if ev := nextSSE(t, br); ev.event != "end" {
		t.Errorf("last event %+v, want end", ev)
	}
}

// TestWatchResumedTerminal: a resumed watch that ends before any event
// (the terminal state the client has) is a 200 that ends at once: empty
// for NDJSON, just the end event for SSE. Without a resume tag such an end
// is still an internal error.
func TestWatchResumedTerminal(t *testing.T) {
	t.Parallel()
	for _, accept := range []string{"", ContentTypeSSE} {
		t.Run("Accept="+accept, func(t *testing.T) {
			t.Parallel()
			s := newScript(nil)
			ts := startWatch(t, s.run)
			ctx, _ := guardCtx(t)
			resp := openWatch(ctx, t, ts, "/v1/batches/batch_huge01/watch?resume_tag=bt1_x", accept, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if accept == ContentTypeSSE {
				want = "event: end\ndata: {}\n\n"
			}
			if string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}

			s = newScript(nil)
			ts = startWatch(t, s.run)
			resp = openWatch(ctx, t, ts, "/v1/batches/batch_huge01/watch", accept, nil)
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("without a resume tag: status %d, want 500", resp.StatusCode)
			}
		})
	}
}
