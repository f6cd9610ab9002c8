package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/fanout"
	"github.com/batchgate/batchgate/internal/wire"
)

// WatchPath is the HTTP rule of WatchBatch (proto/gateway.yaml).
const WatchPath = "/v1/batches/{batch_id}/watch"

// Content types of a watch response.
const (
	// ContentTypeNDJSON is the default framing: one JSON event a line.
	ContentTypeNDJSON = "application/x-ndjson"
	// ContentTypeSSE is Server-Sent Events, chosen by Accept.
	ContentTypeSSE = "text/event-stream"
)

// maxDrainedBody bounds how much of a (pointless) GET body the watch handler
// reads before it starts streaming. net/http notices a client that went away
// only once the request body has been read to its end.
const maxDrainedBody = 64 << 10

// WatchEventJSON is one WatchBatch event as an NDJSON watch writes it, one
// a line. Heartbeats carry no batch.
type WatchEventJSON struct {
	// Type is "snapshot", "change" or "heartbeat".
	Type string `json:"type"`
	// Sequence numbers the events of one response from 1, heartbeats
	// included.
	Sequence uint64 `json:"sequence"`
	// Terminal is true on the event whose batch has a terminal status, the
	// last one of the response.
	Terminal bool `json:"terminal"`
	// ObservedAtMS is when the gateway saw this state of the batch (for a
	// heartbeat, when it was sent), in Unix milliseconds.
	ObservedAtMS int64 `json:"observed_at_ms"`
	// Tag is the state's tag (wire.Tag), the ETag GET sends for it: pass
	// it as resume_tag to resume. Omitted on heartbeats.
	Tag string `json:"tag,omitempty"`
	// Batch is the batch in the upstream's shape, exactly as
	// GET /v1/batches/{batch_id} returns it (wire.MarshalBatch); omitted on
	// heartbeats.
	Batch json.RawMessage `json:"batch,omitempty"`
}

// WatchErrorJSON is the last line of an NDJSON watch that failed after its
// first event.
type WatchErrorJSON struct {
	// Type is "error".
	Type string `json:"type"`
	// Error is the inside of the upstream's error envelope.
	Error wire.ErrorObject `json:"error"`
	// HTTPStatus is the status the failure would have had before the first
	// event, for example 503 when the gateway shuts down.
	HTTPStatus int `json:"http_status"`
	// RetryAfterMS is how long to wait before watching again, when known.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// RegisterWatchHandler serves GET /v1/batches/{batch_id}/watch on mux by
// calling client.WatchBatch, in place of grpc-gateway's generated handler
// (runtime.ForwardResponseStream wraps each event in {"result": ...} and
// can only answer errors with a 200 and an error chunk). Call it after
// batchv1.RegisterBatchServiceHandlerClient: in a runtime.ServeMux the
// handler registered last for a pattern wins.
//
// The handler forwards the request's headers as gRPC metadata (as
// grpc-gateway does, through runtime.AnnotateContext and the mux's header
// matchers) and waits for the first event before writing anything, so that
// an error before it — invalid id, unknown batch, upstream failure,
// shutdown — is a plain error response with the right HTTP status and the
// upstream's envelope (apierr.WriteHTTP). It then streams the events,
// flushing each one:
//
//   - as NDJSON (application/x-ndjson), one WatchEventJSON a line, by
//     default, whatever the Accept header says otherwise;
//   - as Server-Sent Events (text/event-stream) when Accept lists
//     text/event-stream at least as preferred as application/x-ndjson and
//     application/json, as a browser's EventSource does. Each event is
//     "id: <tag>" (snapshots and changes only: heartbeats have no id line,
//     so EventSource keeps the last one), "event:
//     snapshot|change|heartbeat" and a data line: the bare batch in the
//     upstream's shape, or for an event without a batch (heartbeats) its
//     WatchEventJSON. A response that ends normally, after the terminal
//     event, ends with "event: end" and "data: {}".
//
// A reconnecting client resumes with the tag of the last state it saw:
// the Last-Event-ID header (EventSource sends it by itself) or the
// resume_tag query parameter, passed as WatchBatchRequest.resume_tag. A
// resumed watch whose batch is still in that state starts with a
// heartbeat instead of the snapshot; if that state is terminal the
// response ends at once, empty (NDJSON) or with just the end event (SSE).
//
// An error after the first event ends the response with a last event: an
// NDJSON WatchErrorJSON line, or an SSE "event: error" whose data is the
// envelope {"error":{...}} (with a "retry:" line when the error says how
// long to wait). A client that goes away cancels the WatchBatch call at
// once. The handler returns only after the call has ended (a response that
// ends on the handler's side, a failed write for example, cancels it
// first), so that nothing of the call outlives the request. gRPC response
// headers and trailers are not forwarded (the service sets none).
func RegisterWatchHandler(mux *runtime.ServeMux, client batchv1.BatchServiceClient) error {
	if mux == nil || client == nil {
		return errors.New("rest: RegisterWatchHandler needs a mux and a client")
	}
	return mux.HandlePath(http.MethodGet, WatchPath, func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		serveWatch(mux, client, w, r, params)
	})
}

func serveWatch(mux *runtime.ServeMux, client batchv1.BatchServiceClient, w http.ResponseWriter, r *http.Request, params map[string]string) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxDrainedBody))
	}
	ctx, err := runtime.AnnotateContext(ctx, mux, r, batchv1.BatchService_WatchBatch_FullMethodName, runtime.WithHTTPPathPattern(WatchPath))
	if err != nil {
		writeStatus(w, apierr.FromError(err))
		return
	}
	req := &batchv1.WatchBatchRequest{BatchId: params["batch_id"], ResumeTag: resumeTag(r)}
	call, err := client.WatchBatch(ctx, req)
	if err != nil {
		writeStatus(w, apierr.FromError(err))
		return
	}
	// However the response ends, the call ends before the handler returns:
	// an in-process WatchBatch (the gateway's) releases its watcher slot
	// and finishes its bookkeeping only when its handler returns, and
	// http.Server.Shutdown waits for HTTP handlers, not for that.
	stream := &endingStream[batchv1.WatchBatchResponse]{s: call}
	defer stream.end(cancel)
	ev, err := stream.Recv()
	// A resumed watch of a terminal batch in the state the client has
	// ends at once with no event: an ordinary, empty, ended response.
	resumedEnd := errors.Is(err, io.EOF) && req.GetResumeTag() != ""
	if err != nil && !resumedEnd {
		if r.Context().Err() != nil {
			return // the client is gone; nobody reads an answer
		}
		if errors.Is(err, io.EOF) {
			err = apierr.Internal("the watch ended before its first event").Err()
		}
		writeStatus(w, apierr.FromError(err))
		return
	}

	ww := newWatchWriter(wantsSSE(r.Header))
	if resumedEnd {
		ev = nil // nothing to send: the response just ends
	}
	streamEvents(w, r, ww, ev, stream.Recv, ww.event)
}

// streamEvents writes a watch response: its headers, then first (unless
// nil) and every later event recv returns, each appended by write and
// flushed; at io.EOF the end marker, at another error the error event
// (unless the client is gone). It returns when the response is done.
func streamEvents[T any](w http.ResponseWriter, r *http.Request, ww *watchWriter, first *T, recv func() (*T, error), write func(*T) error) {
	h := w.Header()
	h.Set("Content-Type", ww.contentType())
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if first == nil {
		ww.end()
		_ = ww.flush(w, rc)
		return
	}
	for ev := first; ; {
		if err := write(ev); err != nil {
			ww.fail(apierr.FromError(err))
			_ = ww.flush(w, rc)
			return
		}
		if err := ww.flush(w, rc); err != nil {
			return
		}
		var err error
		ev, err = recv()
		if errors.Is(err, io.EOF) {
			ww.end()
			_ = ww.flush(w, rc)
			return
		}
		if err != nil {
			if r.Context().Err() == nil {
				ww.fail(apierr.FromError(err))
				_ = ww.flush(w, rc)
			}
			return
		}
	}
}

// ResumeTagParam is the query parameter that resumes a watch: the tag of
// the last state the client saw. The Last-Event-ID header, which
// EventSource sends by itself when it reconnects, wins over it.
const ResumeTagParam = "resume_tag"

// resumeTag returns the tag a watch request resumes from: its
// Last-Event-ID header, or else its resume_tag query parameter, or "".
func resumeTag(r *http.Request) string {
	if id := strings.TrimSpace(r.Header.Get("Last-Event-ID")); id != "" {
		return id
	}
	return r.URL.Query().Get(ResumeTagParam)
}

// wantsSSE reports whether the Accept header asks for Server-Sent Events:
// text/event-stream listed with a quality above zero and no lower than that
// of application/x-ndjson and application/json. Wildcards, unknown types
// and malformed entries count for nothing, so they leave NDJSON.
func wantsSSE(h http.Header) bool {
	var sse, ndjson float64
	for _, v := range h.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(s, 64); err == nil {
					q = f
				}
			}
			switch mt {
			case ContentTypeSSE:
				sse = max(sse, q)
			case ContentTypeNDJSON, "application/json":
				ndjson = max(ndjson, q)
			}
		}
	}
	return sse > 0 && sse >= ndjson
}

// batchJSON holds each batch state's JSON, encoded once for all the REST
// watchers it is sent to and all the GETs answered from it.
var batchJSON = fanout.Cache{Encode: wire.MarshalBatch, TagOf: wire.TagJSON}

// watchWriter frames the events of one watch response into buf.
type watchWriter struct {
	sse bool
	buf bytes.Buffer
	js  bytes.Buffer
	enc *json.Encoder
}

func newWatchWriter(sse bool) *watchWriter {
	ww := &watchWriter{sse: sse}
	ww.enc = json.NewEncoder(&ww.js)
	ww.enc.SetEscapeHTML(false) // as MarshalBatch
	return ww
}

func (ww *watchWriter) contentType() string {
	if ww.sse {
		return ContentTypeSSE
	}
	return ContentTypeNDJSON
}

// json returns v encoded without HTML escaping and without a newline; the
// slice is valid until the next call.
func (ww *watchWriter) json(v any) ([]byte, error) {
	ww.js.Reset()
	if err := ww.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(ww.js.Bytes(), []byte{'\n'}), nil
}

// eventType returns the lowercase name of t: "snapshot", "change",
// "heartbeat".
func eventType(t batchv1.WatchEventType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "WATCH_EVENT_TYPE_"))
}

// event appends ev.
func (ww *watchWriter) event(ev *batchv1.WatchBatchResponse) error {
	e := WatchEventJSON{
		Type:         eventType(ev.GetType()),
		Sequence:     ev.GetSequence(),
		Terminal:     ev.GetTerminal(),
		ObservedAtMS: ev.GetObservedAtUnixMs(),
		Tag:          ev.GetTag(),
	}
	if b := ev.GetBatch(); b != nil {
		data, err := batchJSON.Bytes(b)
		if err != nil {
			return err
		}
		e.Batch = data
	}
	if !ww.sse {
		data, err := ww.json(&e)
		if err != nil {
			return err
		}
		ww.buf.Write(data)
		ww.buf.WriteByte('\n')
		return nil
	}
	data := []byte(e.Batch)
	if data == nil {
		var err error
		if data, err = ww.json(&e); err != nil {
			return err
		}
	}
	if validEventID(e.Tag) {
		// Without an id line (heartbeats) EventSource keeps the last one,
		// which it sends back as Last-Event-ID when it reconnects.
		ww.buf.WriteString("id: ")
		ww.buf.WriteString(e.Tag)
		ww.buf.WriteByte('\n')
	}
	ww.buf.WriteString("event: ")
	ww.buf.WriteString(e.Type)
	ww.sseData(data)
	return nil
}

// validEventID reports whether id can be an SSE id line: not empty, and
// without the line breaks and NUL that would end or void it (a wire.Tag
// never has them).
func validEventID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "\r\n\x00")
}

// sseData appends the data line of an SSE event and the blank line that
// ends it. JSON from encoding/json holds no line break.
func (ww *watchWriter) sseData(data []byte) {
	ww.buf.WriteString("\ndata: ")
	ww.buf.Write(data)
	ww.buf.WriteString("\n\n")
}

// end appends the end of a response that finished normally: nothing for
// NDJSON, an "end" event for SSE.
func (ww *watchWriter) end() {
	if ww.sse {
		ww.buf.WriteString("event: end\ndata: {}\n\n")
	}
}

// fail appends the error event for st.
func (ww *watchWriter) fail(st *status.Status) {
	env := apierr.ToEnvelope(st)
	retry := apierr.RetryAfter(st).Milliseconds()
	if !ww.sse {
		data, err := ww.json(&WatchErrorJSON{Type: "error", Error: env.Error, HTTPStatus: apierr.HTTPStatus(st), RetryAfterMS: retry})
		if err != nil {
			return // cannot happen: only strings and numbers
		}
		ww.buf.Write(data)
		ww.buf.WriteByte('\n')
		return
	}
	data, err := ww.json(&env)
	if err != nil {
		return
	}
	ww.buf.WriteString("event: error")
	if retry > 0 {
		ww.buf.WriteString("\nretry: ")
		ww.buf.WriteString(strconv.FormatInt(retry, 10))
	}
	ww.sseData(data)
}

// eventWriteTimeout bounds writing one event to the client: a client that
// stops reading must not hold its watch (and the gateway's resources) open
// forever.
const eventWriteTimeout = time.Minute

// flush writes what was appended and flushes it to the client, within
// eventWriteTimeout. A writer that cannot flush or set deadlines
// (http.ErrNotSupported) still gets the bytes.
func (ww *watchWriter) flush(w http.ResponseWriter, rc *http.ResponseController) error {
	if err := rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := w.Write(ww.buf.Bytes())
	ww.buf.Reset()
	if err != nil {
		return err
	}
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
