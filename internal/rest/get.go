package rest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/metadata"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// GetBatchPath is the HTTP rule of GetBatch (proto/gateway.yaml).
const GetBatchPath = "/v1/batches/{batch_id}"

// GetBatchCacheControl is the Cache-Control of GET /v1/batches/{batch_id}:
// any cache must revalidate (with If-None-Match) before it reuses an
// answer, and only the caller's own may keep one (the answer depends on
// the caller's credential).
const GetBatchCacheControl = "private, no-cache"

// UnaryCaller runs a unary method of a registered service in process, as
// inproc.Conn.CallUnary does: the call's incoming metadata is on ctx, and
// reply is the handler's own message (not to be modified), with the
// headers and trailers it set.
type UnaryCaller interface {
	CallUnary(ctx context.Context, method string, args any) (reply any, header, trailer metadata.MD, err error)
}

// RegisterGetBatchHandler serves GET /v1/batches/{batch_id} on mux by
// calling GetBatch through caller, in place of grpc-gateway's generated
// handler (register it after batchv1.RegisterBatchServiceHandlerClient:
// the handler registered last for a pattern wins). The call reaches the
// service as through the generated client — the request's headers become
// its metadata by the mux's rules (runtime.AnnotateIncomingContext) and it
// runs behind the caller's interceptors — but hands the answer over
// without copying it. The answer is the generated handler's — the bare
// batch as wire.MarshalBatch writes it (once per state, shared with the
// REST watches), through
// runtime.ForwardResponseMessage, errors through the mux's error handler —
// plus conditional reads:
//
//   - every 200 carries ETag: "<tag>", the state's wire.Tag (a strong
//     entity-tag: the tag is a hash of exactly the bytes of the body), and
//     Cache-Control: private, no-cache;
//   - a request whose If-None-Match matches it (the same tag, W/ or not,
//     anywhere in a list, or "*") is answered 304 Not Modified with no
//     body, and the same ETag and Cache-Control.
//
// The batch is still fetched as for any GET (through the hub's cache and
// shared calls): If-None-Match saves the body, not the upstream call.
func RegisterGetBatchHandler(mux *runtime.ServeMux, caller UnaryCaller) error {
	if mux == nil || caller == nil {
		return errors.New("rest: RegisterGetBatchHandler needs a mux and a caller")
	}
	return mux.HandlePath(http.MethodGet, GetBatchPath, func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		serveGetBatch(mux, caller, w, r, params)
	})
}

func serveGetBatch(mux *runtime.ServeMux, caller UnaryCaller, w http.ResponseWriter, r *http.Request, params map[string]string) {
	const method = batchv1.BatchService_GetBatch_FullMethodName
	ctx, cancel := context.WithCancel(r.Context()) // ends a Grpc-Timeout's timer
	defer cancel()
	_, outbound := runtime.MarshalerForRequest(mux, r)
	ctx, err := runtime.AnnotateIncomingContext(ctx, mux, r, method, runtime.WithHTTPPathPattern(GetBatchPath))
	if err != nil {
		runtime.HTTPError(ctx, mux, outbound, w, r, err)
		return
	}
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body) // as the generated handler does
	}
	reply, header, trailer, err := caller.CallUnary(ctx, method, &batchv1.GetBatchRequest{BatchId: params["batch_id"]})
	ctx = runtime.NewServerMetadataContext(ctx, runtime.ServerMetadata{HeaderMD: header, TrailerMD: trailer})
	if err != nil {
		runtime.HTTPError(ctx, mux, outbound, w, r, err)
		return
	}
	resp, ok := reply.(*batchv1.GetBatchResponse)
	if !ok || resp.GetBatch() == nil {
		runtime.HTTPError(ctx, mux, outbound, w, r, wire.ErrNilBatch) // an internal error
		return
	}
	// Encoded and tagged once per state: answers from the hub's cache
	// share them.
	data, err := batchJSON.Bytes(resp.GetBatch())
	if err != nil {
		runtime.HTTPError(ctx, mux, outbound, w, r, err)
		return
	}
	tag := batchJSON.Tag(resp.GetBatch())
	h := w.Header()
	h.Set("ETag", `"`+tag+`"`)
	h.Set("Cache-Control", GetBatchCacheControl)
	for _, v := range r.Header.Values("If-None-Match") {
		if noneMatchHas(v, tag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	runtime.ForwardResponseMessage(ctx, mux, outbound, w, r, &encodedBatch{Batch: resp.GetBatch(), json: data}, mux.GetForwardResponseOptions()...)
}

// encodedBatch is a batch with its wire JSON already written, so that the
// Marshaler does not write it again.
type encodedBatch struct {
	*batchv1.Batch
	json []byte
}

// noneMatchHas reports whether the If-None-Match field value v matches
// the opaque tag by RFC 9110's weak comparison: v is "*", or a list of
// entity-tags (`"x"` or `W/"x"`, separated by commas and spaces) one of
// which is tag. Reading stops at anything malformed (what came before
// still counts).
func noneMatchHas(v, tag string) bool {
	for {
		v = strings.TrimLeft(v, " \t,")
		if v == "" {
			return false
		}
		if v[0] == '*' {
			return true
		}
		v = strings.TrimPrefix(v, "W/")
		if v == "" || v[0] != '"' {
			return false
		}
		end := strings.IndexByte(v[1:], '"')
		if end < 0 {
			return false
		}
		if v[1:1+end] == tag {
			return true
		}
		v = v[end+2:]
	}
}
