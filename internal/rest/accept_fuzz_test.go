package rest

import (
	"net/http"
	"testing"
)

// FuzzWantsSSE: any Accept header picks a framing without panicking, and
// appending a more preferred NDJSON entry never switches a request to SSE.
func FuzzWantsSSE(f *testing.F) {
	for _, s := range []string{
		"text/event-stream", "application/x-ndjson", "*/*", "", "text/event-stream;q=0",
		"text/event-stream;q=NaN", "text/event-stream;q=1e309, application/json;q=0.5",
		"text/event-stream;;;", "text/event-stream; charset=\"utf-8", "\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		h := http.Header{"Accept": {accept}}
		_ = wantsSSE(h)
		h.Add("Accept", "application/x-ndjson;q=1.1")
		if wantsSSE(h) && !wantsSSE(http.Header{"Accept": {accept}}) {
			t.Fatalf("adding a preferred NDJSON entry to %q switched to SSE", accept)
		}
	})
}
