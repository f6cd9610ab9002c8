package simulator

import (
	"net"
	"net/http"
	"strconv"
	"time"
)

// Fault is one failure to inject into a GET /v1/batches/{id} answer. The
// simulator applies it in this order:
//
//  1. Delay: wait this long first (or until the client gives up, in which
//     case nothing is written).
//  2. Reset: hijack the connection and close it without answering (with
//     SO_LINGER 0 on TCP, so the client sees a reset). Where the connection
//     cannot be hijacked (HTTP/2, httptest.ResponseRecorder) the handler
//     panics with http.ErrAbortHandler instead.
//  3. Body: answer Status (200 when zero) with this raw body, for example
//     truncated or malformed JSON.
//  4. Status of 400 or more: answer that status with the upstream's error
//     envelope, of type Type (derived from Status when empty) and code
//     Status as a string ("503").
//
// A Fault with none of Reset, Body or a Status of 400 or more (a delay
// alone) is followed by the normal answer. RetryAfter, when set, is sent as
// the Retry-After header with the answers of steps 3 and 4.
type Fault struct {
	// Status is the HTTP status to answer with.
	Status int
	// RetryAfter is the Retry-After header value: seconds or an HTTP date.
	RetryAfter string
	// Type is the envelope's error type; empty derives it from Status.
	Type string
	// Delay is how long to wait before answering.
	Delay time.Duration
	// Body, when set, is sent verbatim instead of the envelope or batch.
	Body string
	// Reset closes the connection instead of answering.
	Reset bool
}

// InjectFaults queues faults for the next GET /v1/batches/{id} requests
// that pass authentication: one fault per request, in order, each used
// once. An empty id queues them for requests for any id; faults queued for
// the requested id are used before those.
func (s *Simulator) InjectFaults(id string, faults ...Fault) {
	if len(faults) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[id] = append(s.faults[id], faults...)
}

// popFaultLocked takes the next fault for id, if any.
func (s *Simulator) popFaultLocked(id string) (Fault, bool) {
	if len(s.faults) == 0 {
		return Fault{}, false
	}
	key := id
	q := s.faults[key]
	if len(q) == 0 {
		key = ""
		q = s.faults[key]
		if len(q) == 0 {
			return Fault{}, false
		}
	}
	f := q[0]
	if len(q) == 1 {
		delete(s.faults, key)
	} else {
		s.faults[key] = q[1:]
	}
	return f, true
}

// applyFault carries out f; it reports whether the request was answered
// (or abandoned), false when the normal answer should follow.
func (s *Simulator) applyFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if f.Reset {
		resetConn(w)
		return true
	}
	if f.Body != "" {
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		writeRaw(w, status, []byte(f.Body))
		return true
	}
	if f.Status >= 400 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		typ := f.Type
		if typ == "" {
			typ = typeForStatus(f.Status)
		}
		writeError(w, &apiError{
			status:  f.Status,
			Message: "Simulated fault: HTTP " + strconv.Itoa(f.Status) + ".",
			Type:    typ,
			Code:    strconv.Itoa(f.Status),
		})
		return true
	}
	return false
}

// typeForStatus is the error type the upstream uses for status.
func typeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_api_key"
	case status == http.StatusPaymentRequired:
		return "insufficient_balance"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "api_error"
	}
	return "invalid_request_error"
}

// resetConn closes the request's connection without an answer.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
