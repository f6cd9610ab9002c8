package rest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/wire"
)

// WatchBatchesPath is the HTTP rule of WatchBatches (proto/gateway.yaml).
const WatchBatchesPath = "/v1/batches:watch"

// WatchBatchesEventJSON is one WatchBatches event as an NDJSON multi-watch
// writes it, one a line: WatchEventJSON's fields, the batch the event is
// about, and on "error" events that batch's error. A line of type "error"
// with a batch_id is the end of that batch only; without one (a
// WatchErrorJSON) it is the end of the whole stream.
type WatchBatchesEventJSON struct {
	// Type is "snapshot", "change", "heartbeat" or "error".
	Type string `json:"type"`
	// BatchID is the batch the event is about; omitted on heartbeats.
	BatchID string `json:"batch_id,omitempty"`
	// Sequence numbers the events of one response from 1, heartbeats
	// included.
	Sequence uint64 `json:"sequence"`
	// Terminal is true on the last event of a batch: the one whose batch
	// has a terminal status, or its error.
	Terminal bool `json:"terminal"`
	// ObservedAtMS is when the gateway saw this state of the batch (for a
	// heartbeat or an error, when it was sent), in Unix milliseconds.
	ObservedAtMS int64 `json:"observed_at_ms"`
	// Batch is the batch in the upstream's shape (wire.MarshalBatch), on
	// snapshot and change events.
	Batch json.RawMessage `json:"batch,omitempty"`
	// Tag is the state's tag (wire.Tag), as the single watch's; on
	// snapshot and change events.
	Tag string `json:"tag,omitempty"`
	// Error is, on error events, the inside of the error envelope the
	// batch would have had on its own (GET /v1/batches/{batch_id}).
	Error *wire.ErrorObject `json:"error,omitempty"`
	// HTTPStatus is, on error events, the status that error would have
	// had on its own, for example 404.
	HTTPStatus int `json:"http_status,omitempty"`
}

// RegisterWatchBatchesHandler serves GET /v1/batches:watch on mux by
// calling client.WatchBatches, in place of grpc-gateway's generated
// handler, as RegisterWatchHandler does for the single watch (call it after
// batchv1.RegisterBatchServiceHandlerClient). The batches are the query's
// batch_id parameters, and the comma-separated lists of its batch_ids
// parameters, in that order.
//
// Everything else is the single watch's: headers forwarded as metadata,
// the same content negotiation (NDJSON by default, SSE when Accept prefers
// text/event-stream), an error before the first event (a bad or missing
// id, too many ids, limits, scope) as a plain error response, a stream
// error after it as the last event, and the call ended before the handler
// returns. The events:
//
//   - NDJSON: one WatchBatchesEventJSON a line; a stream that fails ends
//     with a WatchErrorJSON line (no batch_id);
//   - SSE: "id: <sequence>", "event: snapshot|change|heartbeat|error" and
//     a data line: the bare batch for snapshot and change (its "id" is the
//     batch id), the WatchBatchesEventJSON for heartbeat and for the error
//     of one batch; after the last batch, "event: end" with "data: {}";
//     a stream that fails ends with "event: error" whose data is the
//     envelope {"error":{...}} (no batch_id).
func RegisterWatchBatchesHandler(mux *runtime.ServeMux, client batchv1.BatchServiceClient) error {
	if mux == nil || client == nil {
		return errors.New("rest: RegisterWatchBatchesHandler needs a mux and a client")
	}
	return mux.HandlePath(http.MethodGet, WatchBatchesPath, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		serveWatchBatches(mux, client, w, r)
	})
}

// queryBatchIDs returns the batch ids of a multi-watch's query.
func queryBatchIDs(r *http.Request) []string {
	q := r.URL.Query()
	ids := q["batch_id"]
	for _, list := range q["batch_ids"] {
		for id := range strings.SplitSeq(list, ",") {
			ids = append(ids, strings.TrimSpace(id))
		}
	}
	return ids
}

func serveWatchBatches(mux *runtime.ServeMux, client batchv1.BatchServiceClient, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxDrainedBody))
	}
	ctx, err := runtime.AnnotateContext(ctx, mux, r, batchv1.BatchService_WatchBatches_FullMethodName, runtime.WithHTTPPathPattern(WatchBatchesPath))
	if err != nil {
		writeStatus(w, apierr.FromError(err))
		return
	}
	call, err := client.WatchBatches(ctx, &batchv1.WatchBatchesRequest{BatchIds: queryBatchIDs(r)})
	if err != nil {
		writeStatus(w, apierr.FromError(err))
		return
	}
	// As the single watch: the call ends before the handler returns.
	stream := &endingStream[batchv1.WatchBatchesResponse]{s: call}
	defer stream.end(cancel)
	ev, err := stream.Recv()
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		if errors.Is(err, io.EOF) {
			err = apierr.Internal("the watch ended before its first event").Err()
		}
		writeStatus(w, apierr.FromError(err))
		return
	}

	ww := newWatchWriter(wantsSSE(r.Header))
	streamEvents(w, r, ww, ev, stream.Recv, ww.multiEvent)
}

// endingStream is the server stream of one watch response; it notes when
// the call has ended (Recv returned an error), so that end can make sure
// the call is over before the handler returns.
type endingStream[T any] struct {
	s     grpc.ServerStreamingClient[T]
	ended bool
}

// Recv returns the next message.
func (es *endingStream[T]) Recv() (*T, error) {
	m, err := es.s.Recv()
	if err != nil {
		es.ended = true
	}
	return m, err
}

// end cancels the call, if it has not ended, and waits for its end.
func (es *endingStream[T]) end(cancel context.CancelFunc) {
	if es.ended {
		return
	}
	cancel()
	for !es.ended {
		_, _ = es.Recv()
	}
}

// watchErrorObject is the envelope's inside for a batch's WatchError.
func watchErrorObject(we *batchv1.WatchError) *wire.ErrorObject {
	e := &wire.ErrorObject{Message: we.GetMessage(), Type: we.GetType()}
	if c := we.GetErrorCode(); c != "" {
		e.Code = &c
	}
	return e
}

// multiEvent appends one WatchBatches event.
func (ww *watchWriter) multiEvent(ev *batchv1.WatchBatchesResponse) error {
	e := WatchBatchesEventJSON{
		Type:         eventType(ev.GetType()),
		BatchID:      ev.GetBatchId(),
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
	if we := ev.GetError(); we != nil {
		e.Error = watchErrorObject(we)
		e.HTTPStatus = int(we.GetHttpStatus())
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
	ww.buf.WriteString("id: ")
	ww.buf.WriteString(strconv.FormatUint(e.Sequence, 10))
	ww.buf.WriteString("\nevent: ")
	ww.buf.WriteString(e.Type)
	ww.sseData(data)
	return nil
}
