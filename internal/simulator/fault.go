package simulator

import (
	"bytes"
	"maps"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Fault is one failure to inject into an answer (of GET /v1/batches/{id},
// POST /v1/batches, POST /v1/files or GET /v1/files/{id}/content; see
// InjectFaults, InjectCreateFaults, InjectUploadFaults and
// InjectContentFaults). The simulator applies it in this order:
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
//
// A fault is applied before the request is carried out, which then never
// is, unless AfterApply is set: then the request is carried out first (the
// batch made, the file stored) and the fault takes the place of its
// answer, as when an upstream fails after doing the work or the network
// loses its answer. That is the ambiguous failure after which a retried
// POST makes a second batch.
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
	// AfterApply carries the request out before the fault is applied.
	AfterApply bool
}

// faultRoute is an endpoint faults can be injected into.
type faultRoute uint8

const (
	routeGet     faultRoute = iota // GET /v1/batches/{id}
	routeCreate                    // POST /v1/batches
	routeUpload                    // POST /v1/files
	routeContent                   // GET /v1/files/{id}/content
)

// faultKey names a fault queue: a route and an id, "" for any id (or for
// routes without one).
type faultKey struct {
	route faultRoute
	id    string
}

// InjectFaults queues faults for the next GET /v1/batches/{id} requests
// that pass authentication: one fault per request, in order, each used
// once. An empty id queues them for requests for any id; faults queued for
// the requested id are used before those.
func (s *Simulator) InjectFaults(id string, faults ...Fault) {
	s.inject(faultKey{routeGet, id}, faults)
}

// InjectCreateFaults queues faults for the next POST /v1/batches requests
// that pass authentication, one per request, in order. With AfterApply
// the batch is made (and counted by Creates) before the fault answers.
func (s *Simulator) InjectCreateFaults(faults ...Fault) {
	s.inject(faultKey{routeCreate, ""}, faults)
}

// InjectUploadFaults queues faults for the next POST /v1/files requests
// that pass authentication, one per request, in order. With AfterApply
// the file is stored before the fault answers.
func (s *Simulator) InjectUploadFaults(faults ...Fault) {
	s.inject(faultKey{routeUpload, ""}, faults)
}

// InjectContentFaults queues faults for the next
// GET /v1/files/{id}/content requests that pass authentication, as
// InjectFaults does for batches: an empty id for any id, the requested
// id's faults first. A Body fault sends a file's content cut short, or
// corrupted.
func (s *Simulator) InjectContentFaults(id string, faults ...Fault) {
	s.inject(faultKey{routeContent, id}, faults)
}

func (s *Simulator) inject(key faultKey, faults []Fault) {
	if len(faults) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[key] = append(s.faults[key], faults...)
}

// Creates returns how many batches POST /v1/batches has made, including
// those whose answer an AfterApply fault replaced. Batches made with
// Create are not counted.
func (s *Simulator) Creates() int64 {
	return s.creates.Load()
}

// popFaultLocked takes the next fault for key, or else for key's route
// and any id, if any.
func (s *Simulator) popFaultLocked(key faultKey) (Fault, bool) {
	if len(s.faults) == 0 {
		return Fault{}, false
	}
	q := s.faults[key]
	if len(q) == 0 {
		key.id = ""
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

// serveWithFault answers with serve, applying the next fault queued for
// key, if any, before serve runs or (AfterApply) after it, in place of its
// answer.
func (s *Simulator) serveWithFault(w http.ResponseWriter, r *http.Request, key faultKey, serve func(http.ResponseWriter)) {
	s.mu.Lock()
	f, ok := s.popFaultLocked(key)
	s.mu.Unlock()
	switch {
	case !ok:
		serve(w)
	case !f.AfterApply:
		if !s.applyFault(w, r, f) {
			serve(w)
		}
	default:
		held := &heldAnswer{header: make(http.Header)}
		serve(held)
		if !s.applyFault(w, r, f) {
			held.sendTo(w)
		}
	}
}

// heldAnswer is an answer held back while an AfterApply fault is applied.
type heldAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *heldAnswer) Header() http.Header { return a.header }

func (a *heldAnswer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}

func (a *heldAnswer) Write(p []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.body.Write(p)
}

// sendTo writes the held answer to w.
func (a *heldAnswer) sendTo(w http.ResponseWriter) {
	maps.Copy(w.Header(), a.header)
	if a.status == 0 {
		a.status = http.StatusOK
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body.Bytes())
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
