package watch

import (
	"context"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// callValueKey is a value of the call that starts a poller, which the
// poller must not keep.
type callValueKey struct{}

// TestPollerContextIsFresh: a poller outlives the call that started it, so
// it keeps nothing of that call's context: not its values, not its gRPC
// metadata, not its span. Each poll is the root span of a trace of its
// own, linked to the span of the starting call.
func TestPollerContextIsFresh(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	var mu sync.Mutex
	var fetches []context.Context
	f := newFake()
	f.fallback = func(k Key, n int) step { return ok(running(k.BatchID, int64(n))) }
	f.onCtx = func(ctx context.Context) {
		mu.Lock()
		fetches = append(fetches, ctx)
		mu.Unlock()
	}
	h := newHub(t, f, slow)

	ctx := context.WithValue(context.Background(), callValueKey{}, "call-scoped")
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-call", "watch-1"))
	ctx, call := tp.Tracer("test").Start(ctx, "WatchBatch")
	k := Key{BatchID: "batch_pctx"}
	s, err := h.Subscribe(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	call.End() // the call is over; its poller goes on
	h.Poke(k)
	waitFor(t, "a second poll", func() bool { return f.Calls(k) >= 2 })
	s.Close()
	waitFor(t, "the poller to stop", func() bool { return h.Stats().Pollers == 0 })

	callSC := call.SpanContext()
	mu.Lock()
	defer mu.Unlock()
	if len(fetches) < 2 {
		t.Fatalf("%d fetches, want 2", len(fetches))
	}
	pollTraces := map[trace.TraceID]bool{}
	for i, fctx := range fetches {
		if v := fctx.Value(callValueKey{}); v != nil {
			t.Errorf("poll %d: the context carries the starting call's value %v", i, v)
		}
		if md, ok := metadata.FromIncomingContext(fctx); ok {
			t.Errorf("poll %d: the context carries the starting call's metadata %v", i, md)
		}
		sc := trace.SpanContextFromContext(fctx)
		switch {
		case !sc.IsValid():
			t.Errorf("poll %d: no span", i)
		case sc.TraceID() == callSC.TraceID():
			t.Errorf("poll %d: span %v is in the starting call's trace", i, sc)
		default:
			pollTraces[sc.TraceID()] = true
		}
	}
	if len(pollTraces) != len(fetches) {
		t.Errorf("%d traces for %d polls, want one each", len(pollTraces), len(fetches))
	}

	polls := 0
	for _, span := range exp.GetSpans() {
		if span.SpanContext.Equal(callSC) {
			continue
		}
		polls++
		if span.Parent.IsValid() {
			t.Errorf("poll span %q has parent %v, want a root span", span.Name, span.Parent)
		}
		linked := false
		for _, l := range span.Links {
			linked = linked || l.SpanContext.Equal(callSC)
		}
		if !linked {
			t.Errorf("poll span %q links %v, want the starting call's span %v", span.Name, span.Links, callSC)
		}
	}
	if polls != len(fetches) {
		t.Errorf("%d poll spans for %d polls", polls, len(fetches))
	}
}
