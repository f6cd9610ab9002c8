package simulator

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

// DefaultPhase is Options.Phase when it is not set.
const DefaultPhase = 10 * time.Second

// maxCreateBody caps the body of POST /v1/batches.
const maxCreateBody = 1 << 20

// Options configures a Simulator.
type Options struct {
	// APIKey is the Bearer key every request must carry. When empty, any
	// non-empty Bearer token is accepted.
	APIKey string
	// Now is the simulator's clock; nil means time.Now. Tests inject a fake
	// clock to walk batches through their lifecycle without sleeping.
	Now func() time.Time
	// Phase is how long a progressing batch stays in each of validating,
	// in_progress and finalizing (and a cycling demo batch in completed
	// before its next run), and how long cancelling lasts; zero or
	// negative means DefaultPhase.
	Phase time.Duration
	// MaxFileBytes caps a file uploaded with POST /v1/files (larger ones
	// are answered 413, code "file_too_large"); zero or negative means
	// DefaultMaxFileBytes.
	MaxFileBytes int64
	// MaxStoreBytes caps the bytes of all stored files: uploads, files
	// stored with PutFile, and the output and error files of batches
	// (the demo's canned files do not count). An upload that does not fit
	// is answered 400, code "storage_full"; zero or negative means
	// DefaultMaxStoreBytes.
	MaxStoreBytes int64
	// WebhookURL, when set, is where the simulator POSTs a webhook each
	// time one of its batches becomes completed, failed, expired or
	// cancelled, as the upstream does: a Standard Webhooks delivery
	// signed with WebhookSecret (a "whsec_" secret; New panics on a
	// malformed one), retried with backoff on failure a few times. The
	// batches terminal when New returns send nothing. Call Close to stop
	// the sender.
	WebhookURL    string
	WebhookSecret string
	// WebhookClient sends the webhooks; nil: a client with a 10s timeout.
	WebhookClient *http.Client
	// WebhookScan is how often batches are checked for terminal
	// transitions (on the clock of Now); zero means DefaultWebhookScan.
	WebhookScan time.Duration
	// WebhookRetryWait is the wait before the first retry of a failed
	// delivery, doubling at each; zero means 200ms.
	WebhookRetryWait time.Duration
}

// CreateRequest is the body of POST /v1/batches, wire's one shape of it.
type CreateRequest = wire.CreateBatchRequest

// Simulator is a fake upstream batch API. It is an http.Handler, safe for
// concurrent use. Create one with New.
type Simulator struct {
	apiKey []byte
	now    func() time.Time
	phase  time.Duration
	demo   []string

	total   atomic.Int64
	creates atomic.Int64 // batches made by POST /v1/batches

	mu      sync.Mutex
	byID    map[string]*entry
	order   []*entry // the entries that do not cycle, newest first (cmpOrder)
	cycling []*entry // the entries that cycle, whose created_at moves on
	seq     uint64
	gets    map[string]int64     // GET /v1/batches/{id} requests per id
	faults  map[faultKey][]Fault // queued faults

	maxFile, maxStore int64
	files             map[string]*storedFile
	fileOrder         []*storedFile       // newest first (cmpFiles)
	storeUsed         int64               // bytes of the counted files and of the pending batches' results
	pending           []*entry            // file-backed batches whose output files are not stored yet
	deletedVirtual    map[string]wire.Int // virtual files deleted, by id: the created_at of the one deleted

	hooks *hooks // nil without Options.WebhookURL
}

// New returns a Simulator seeded with the demo batches (see DemoBatchIDs),
// created relative to opts.Now() at the time of the call.
func New(opts Options) *Simulator {
	s := &Simulator{
		apiKey: []byte(opts.APIKey),
		now:    opts.Now,
		phase:  opts.Phase,
		byID:   make(map[string]*entry),
		gets:   make(map[string]int64),
		faults: make(map[faultKey][]Fault),

		maxFile:  opts.MaxFileBytes,
		maxStore: opts.MaxStoreBytes,
		files:    make(map[string]*storedFile),

		deletedVirtual: make(map[string]wire.Int),
	}
	if s.maxFile <= 0 {
		s.maxFile = DefaultMaxFileBytes
	}
	if s.maxStore <= 0 {
		s.maxStore = DefaultMaxStoreBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.phase <= 0 {
		s.phase = DefaultPhase
	}
	s.seedDemo(s.now())
	s.startHooks(opts)
	return s
}

// DemoBatchIDs returns the ids of the demo batches seeded by New, always in
// this order: "batch_demo_progress" (progressing from New's time, a new run
// every four Phases), "batch_demo_validating" (the same ten times slower),
// "batch_demo_completed", "batch_demo_failed", "batch_demo_expired" and
// "batch_demo_cancelled" (static).
func (s *Simulator) DemoBatchIDs() []string {
	return slices.Clone(s.demo)
}

// Put stores a copy of b as a static batch, replacing any batch with the
// same id (progressing or not). A static batch is returned exactly as
// stored (as encoding/json writes the wire.Batch: nil pointers are null or
// left out as its fields say, zero values are written) until it is
// cancelled. Put panics if b.ID is empty.
func (s *Simulator) Put(b wire.Batch) {
	s.PutWithExtra(b, nil)
}

// PutWithExtra is Put, with further top-level fields written verbatim
// after b's, sorted by name, to test that clients tolerate fields they do
// not know. Keys that name a field of wire.Batch are ignored. The values
// must be valid JSON: a GET of a batch whose extra value is not is answered
// 500. PutWithExtra copies extra.
func (s *Simulator) PutWithExtra(b wire.Batch, extra map[string]json.RawMessage) {
	if b.ID == "" {
		panic("simulator: Put with an empty batch ID")
	}
	e := &entry{b: cloneBatch(b), extra: cloneExtra(extra)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insertLocked(e)
}

// Create makes a progressing batch as POST /v1/batches does, created now,
// and returns it (status validating). Unlike the HTTP endpoint it does not
// validate req; an empty Endpoint or CompletionWindow takes the supported
// value. When req.InputFileID names a stored file of purpose "batch", the
// batch runs that file's requests, as one made by POST /v1/batches does;
// otherwise it runs CreatedBatchTotal synthetic ones.
func (s *Simulator) Create(req CreateRequest) wire.Batch {
	s.mu.Lock()
	sf, ok := s.files[req.InputFileID]
	s.mu.Unlock()
	if ok && sf.f.Purpose == PurposeBatch {
		return s.create(req, sf.data)
	}
	return s.create(req, nil)
}

// create makes a batch of req, created now, that runs the requests of the
// input file data, or synthetic ones when data is nil.
func (s *Simulator) create(req CreateRequest, data []byte) wire.Batch {
	if req.Endpoint == "" {
		req.Endpoint = SupportedEndpoint
	}
	if req.CompletionWindow == "" {
		req.CompletionWindow = SupportedCompletionWindow
	}
	now := s.now()
	e := &entry{
		b: wire.Batch{
			ID:               "batch_" + randomHex(12),
			Object:           "batch",
			Endpoint:         req.Endpoint,
			InputFileID:      req.InputFileID,
			CompletionWindow: req.CompletionWindow,
			CreatedAt:        unixAt(now),
			ExpiresAt:        unixAt(now.Add(completionWindow)),
			Metadata:         wire.Metadata(maps.Clone(req.Metadata)),
		},
		slow:    1,
		created: now,
		total:   CreatedBatchTotal,
	}
	if oe := req.OutputExpiresAfter; oe != nil {
		e.outExpiry = int64(oe.Seconds)
	}
	if data != nil {
		// Read the file and write every result line now, outside the
		// lock: the file's bytes are never modified.
		e.fileBacked = true
		lines, errs := readInput(data, req.Endpoint)
		e.total = int64(len(lines))
		if errs != nil {
			e.invalid = &wire.BatchErrors{Object: "list", Data: errs}
		}
		created := now.Add(s.phase).Unix()
		for i, in := range lines {
			if fails(in.customID) {
				e.fails = append(e.fails, int32(i))
			}
			e.results = appendResult(e.results, in, i+1, created, newResultIDs(), fails(in.customID))
		}
	}
	s.mu.Lock()
	s.settleLocked(now)
	if e.results != nil {
		if s.storeUsed+int64(len(e.results)) > s.maxStore {
			e.results, e.fails, e.total = nil, nil, 0
			e.invalid = &wire.BatchErrors{Object: "list", Data: []*wire.BatchError{{
				Code:    "storage_full",
				Message: "The file store has no room for the batch's output and error files: delete files to make room.",
			}}}
		} else {
			s.storeUsed += int64(len(e.results))
		}
	}
	s.insertLocked(e)
	b := e.view(now, s.phase)
	s.mu.Unlock()
	return cloneBatch(b)
}

// settleLocked stores the output and error files of the file-backed
// batches that are terminal at now, and releases the rest of their
// reservations (a cancelled or expired batch has run only some of its
// requests). Their lifecycle is a function of the clock, so this runs
// whenever files are looked at; the files are created at the instant the
// batch became terminal, whenever that is noticed.
func (s *Simulator) settleLocked(now time.Time) {
	for i := 0; i < len(s.pending); {
		e := s.pending[i]
		b := e.view(now, s.phase)
		if !isTerminal(b.Status) {
			i++
			continue
		}
		s.pending = slices.Delete(s.pending, i, i+1)
		s.storeOutputLocked(e, &b)
	}
}

// settle is settleLocked for callers that do not hold the lock.
func (s *Simulator) settle() {
	now := s.now()
	s.mu.Lock()
	s.settleLocked(now)
	s.mu.Unlock()
}

// storeOutputLocked stores the output and error files of e, terminal as b:
// the result lines of the requests it ran, split by outcome.
func (s *Simulator) storeOutputLocked(e *entry, b *wire.Batch) {
	rc := counts(b)
	ran := int(rc.Completed + rc.Failed)
	// Size both files first, to allocate each once.
	var sizes [2]int // output, error
	forEachResult(e, ran, func(line []byte, failed bool) {
		sizes[b2i(failed)] += len(line)
	})
	out := [2][]byte{make([]byte, 0, sizes[0]), make([]byte, 0, sizes[1])}
	forEachResult(e, ran, func(line []byte, failed bool) {
		out[b2i(failed)] = append(out[b2i(failed)], line...)
	})
	s.storeUsed -= int64(len(e.results))
	e.results = nil

	var at time.Time
	if t := terminalAt(b); t != nil {
		at = time.Unix(int64(*t), 0)
	}
	for i, id := range []*string{b.OutputFileID, b.ErrorFileID} {
		if id == nil || len(out[i]) == 0 {
			continue
		}
		name := b.ID + [2]string{"_output.jsonl", "_error.jsonl"}[i]
		sf := s.storeFileLocked(*id, name, PurposeBatchOutput, out[i], at, true)
		if e.outExpiry > 0 {
			sf.f.ExpiresAt = ptr(sf.f.CreatedAt + wire.Int(e.outExpiry))
		}
	}
}

// forEachResult calls f with each of the first n result lines of e (with
// its newline) and whether that request failed.
func forEachResult(e *entry, n int, f func(line []byte, failed bool)) {
	rest, fi := e.results, 0
	for i := range n {
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			return
		}
		failed := fi < len(e.fails) && int(e.fails[fi]) == i
		if failed {
			fi++
		}
		f(rest[:j+1], failed)
		rest = rest[j+1:]
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BatchRequests returns how many GET /v1/batches/{id} requests the
// simulator has served for id, whatever their outcome (401, fault, 404 and
// 200 alike).
func (s *Simulator) BatchRequests(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[id]
}

// TotalRequests returns how many HTTP requests the simulator has served,
// on any path and with any outcome.
func (s *Simulator) TotalRequests() int64 {
	return s.total.Load()
}

// insertLocked stores e, replacing any entry with the same id.
func (s *Simulator) insertLocked(e *entry) {
	if old, ok := s.byID[e.b.ID]; ok {
		if old.results != nil {
			s.storeUsed -= int64(len(old.results))
			s.pending = slices.DeleteFunc(s.pending, func(p *entry) bool { return p == old })
		}
		if old.cycles {
			s.cycling = slices.DeleteFunc(s.cycling, func(c *entry) bool { return c == old })
		} else {
			i, _ := slices.BinarySearchFunc(s.order, old, cmpOrder)
			s.order = slices.Delete(s.order, i, i+1)
		}
	}
	s.seq++
	e.seq = s.seq
	s.byID[e.b.ID] = e
	if e.results != nil {
		s.pending = append(s.pending, e)
	}
	if e.cycles {
		s.cycling = append(s.cycling, e)
		return
	}
	i, _ := slices.BinarySearchFunc(s.order, e, cmpOrder)
	s.order = slices.Insert(s.order, i, e)
}

// cmpOrder sorts entries that do not cycle newest first; their created_at
// does not depend on the time.
func cmpOrder(a, b *entry) int { return cmpAt(a, b, time.Time{}, 0) }

// orderLocked returns every entry newest first at now: s.order with the
// cycling entries put where their current created_at places them. The
// result may be s.order itself: do not modify it.
func (s *Simulator) orderLocked(now time.Time) []*entry {
	if len(s.cycling) == 0 {
		return s.order
	}
	order := make([]*entry, len(s.order), len(s.order)+len(s.cycling))
	copy(order, s.order)
	for _, e := range s.cycling {
		i, _ := slices.BinarySearchFunc(order, e, func(a, b *entry) int { return cmpAt(a, b, now, s.phase) })
		order = slices.Insert(order, i, e)
	}
	return order
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// ServeHTTP serves the upstream batch API; see the package documentation.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.total.Add(1)
	path := r.URL.Path
	authErr := s.authenticate(r)

	const prefix = "/v1/batches"
	switch {
	case path == "/v1/files" || strings.HasPrefix(path, "/v1/files/"):
		if authErr != nil {
			writeError(w, authErr)
			return
		}
		if s.serveFiles(w, r, path[len("/v1/files"):]) {
			return
		}
	case path == prefix:
		if authErr != nil {
			writeError(w, authErr)
			return
		}
		switch r.Method {
		case http.MethodGet:
			s.serveList(w, r)
		case http.MethodPost:
			s.serveWithFault(w, r, faultKey{route: routeCreate}, func(w http.ResponseWriter) { s.serveCreate(w, r) })
		default:
			writeMethodNotAllowed(w, "GET, POST")
		}
		return
	case strings.HasPrefix(path, prefix+"/"):
		rest := path[len(prefix)+1:]
		id, action, hasAction := strings.Cut(rest, "/")
		if id == "" {
			break
		}
		if !hasAction {
			if r.Method != http.MethodGet {
				if authErr != nil {
					writeError(w, authErr)
					return
				}
				writeMethodNotAllowed(w, "GET")
				return
			}
			s.serveGet(w, r, id, authErr)
			return
		}
		if action != "cancel" {
			break
		}
		if authErr != nil {
			writeError(w, authErr)
			return
		}
		if r.Method != http.MethodPost {
			writeMethodNotAllowed(w, "POST")
			return
		}
		s.serveCancel(w, id)
		return
	}
	if authErr != nil {
		writeError(w, authErr)
		return
	}
	writeError(w, &apiError{
		status:  http.StatusNotFound,
		Message: "Unknown request URL: " + r.Method + " " + path + ".",
		Type:    "invalid_request_error",
		Code:    "unknown_url",
	})
}

// authenticate checks the Bearer key; it returns nil when the request may
// proceed.
func (s *Simulator) authenticate(r *http.Request) *apiError {
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return &apiError{
			status: http.StatusUnauthorized,
			Message: "You didn't provide an API key. You need to provide your API key in an " +
				"Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
			Type: "invalid_request_error",
			Code: "missing_api_key",
		}
	}
	if len(s.apiKey) > 0 && subtle.ConstantTimeCompare([]byte(token), s.apiKey) != 1 {
		return &apiError{
			status:  http.StatusUnauthorized,
			Message: "Incorrect API key provided.",
			Type:    "invalid_api_key",
			Code:    "invalid_api_key",
		}
	}
	return nil
}

// serveGet answers GET /v1/batches/{id}.
func (s *Simulator) serveGet(w http.ResponseWriter, r *http.Request, id string, authErr *apiError) {
	now := s.now()
	s.mu.Lock()
	s.gets[id]++
	if authErr != nil {
		s.mu.Unlock()
		writeError(w, authErr)
		return
	}
	f, hasFault := s.popFaultLocked(faultKey{routeGet, id})
	var v view
	var found bool
	if !hasFault || f.AfterApply {
		v, found = s.viewLocked(id, now)
	}
	s.mu.Unlock()

	if hasFault {
		if s.applyFault(w, r, f) {
			return
		}
		if !f.AfterApply { // the answer is the batch after the delay
			now = s.now()
			s.mu.Lock()
			v, found = s.viewLocked(id, now)
			s.mu.Unlock()
		}
	}
	if !found {
		writeNotFound(w, id)
		return
	}
	writeBatch(w, v)
}

// view is a batch as it is served: the batch at some instant and the extra
// fields written after it, both read-only.
type view struct {
	b     wire.Batch
	extra map[string]json.RawMessage
}

// viewOf returns e's view at now.
func (s *Simulator) viewOf(e *entry, now time.Time) view {
	return view{b: e.view(now, s.phase), extra: e.extra}
}

// viewLocked returns the current view of batch id.
func (s *Simulator) viewLocked(id string, now time.Time) (view, bool) {
	e, ok := s.byID[id]
	if !ok {
		return view{}, false
	}
	return s.viewOf(e, now), true
}

// serveList answers GET /v1/batches.
func (s *Simulator) serveList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, &apiError{
				status:  http.StatusBadRequest,
				Message: "Invalid 'limit': expected an integer between 1 and 100.",
				Type:    "invalid_request_error",
				Param:   "limit",
				Code:    "invalid_value",
			})
			return
		}
		limit = n
	}
	after := q.Get("after")

	now := s.now()
	s.mu.Lock()
	order := s.orderLocked(now)
	start := 0
	if after != "" {
		e, ok := s.byID[after]
		if !ok {
			s.mu.Unlock()
			writeError(w, &apiError{
				status:  http.StatusBadRequest,
				Message: "Invalid 'after': no batch with id '" + after + "'.",
				Type:    "invalid_request_error",
				Param:   "after",
				Code:    "invalid_value",
			})
			return
		}
		start = slices.Index(order, e) + 1
	}
	end := min(start+limit, len(order))
	views := make([]view, 0, end-start)
	for _, e := range order[start:end] {
		views = append(views, s.viewOf(e, now))
	}
	hasMore := end < len(order)
	s.mu.Unlock()

	resp := wire.List[json.RawMessage]{Object: "list", Data: make([]json.RawMessage, 0, len(views)), HasMore: hasMore}
	for i := range views {
		data, err := encodeBatch(&views[i].b, views[i].extra)
		if err != nil {
			writeInternal(w, err)
			return
		}
		resp.Data = append(resp.Data, data)
	}
	if len(views) > 0 {
		resp.FirstID = &views[0].b.ID
		resp.LastID = &views[len(views)-1].b.ID
	}
	writeJSON(w, http.StatusOK, &resp)
}

// serveCreate answers POST /v1/batches.
func (s *Simulator) serveCreate(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCreateBody))
	var req CreateRequest
	err := dec.Decode(&req)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooLarge):
			writeError(w, &apiError{
				status:  http.StatusRequestEntityTooLarge,
				Message: "The request body is larger than 1 MiB.",
				Type:    "invalid_request_error",
				Code:    "request_too_large",
			})
		case errors.As(err, &typeErr) && typeErr.Field != "":
			writeError(w, &apiError{
				status:  http.StatusBadRequest,
				Message: "Invalid type for '" + typeErr.Field + "'.",
				Type:    "invalid_request_error",
				Param:   typeErr.Field,
				Code:    "invalid_type",
			})
		default:
			writeError(w, &apiError{
				status:  http.StatusBadRequest,
				Message: "The request body is not a valid JSON object.",
				Type:    "invalid_request_error",
				Code:    "invalid_json",
			})
		}
		return
	}
	if e := validateCreate(&req); e != nil {
		writeError(w, e)
		return
	}
	s.mu.Lock()
	sf, ok := s.files[req.InputFileID]
	s.mu.Unlock()
	switch {
	case !ok:
		writeError(w, invalidParam("input_file_id", "Invalid 'input_file_id': no file with id '"+req.InputFileID+"'."))
		return
	case sf.f.Purpose != PurposeBatch:
		writeError(w, invalidParam("input_file_id", "Invalid 'input_file_id': file '"+req.InputFileID+
			"' has purpose '"+sf.f.Purpose+"', not '"+PurposeBatch+"'."))
		return
	}
	b := s.create(req, sf.data)
	s.creates.Add(1)
	writeBatch(w, view{b: b})
}

// validateCreate checks a POST /v1/batches body as the upstream does.
func validateCreate(req *CreateRequest) *apiError {
	missing := func(param string) *apiError {
		return &apiError{
			status:  http.StatusBadRequest,
			Message: "Missing required parameter: '" + param + "'.",
			Type:    "invalid_request_error",
			Param:   param,
			Code:    "missing_required_parameter",
		}
	}
	invalid := func(param, msg string) *apiError {
		return &apiError{
			status:  http.StatusBadRequest,
			Message: msg,
			Type:    "invalid_request_error",
			Param:   param,
			Code:    "invalid_value",
		}
	}
	switch {
	case req.InputFileID == "":
		return missing("input_file_id")
	case !validID(req.InputFileID):
		return invalid("input_file_id", "Invalid 'input_file_id': not a file id.")
	case req.Endpoint == "":
		return missing("endpoint")
	case req.Endpoint != SupportedEndpoint:
		return invalid("endpoint", "Invalid 'endpoint': only '"+SupportedEndpoint+"' is supported.")
	case req.CompletionWindow == "":
		return missing("completion_window")
	case req.CompletionWindow != SupportedCompletionWindow:
		return invalid("completion_window", "Invalid 'completion_window': only '"+SupportedCompletionWindow+"' is supported.")
	case len(req.Metadata) > 16:
		return invalid("metadata", "Invalid 'metadata': at most 16 pairs are allowed.")
	}
	for k, v := range req.Metadata {
		if len(k) > 64 || len(v) > 512 {
			return invalid("metadata", "Invalid 'metadata': keys are at most 64 and values at most 512 characters.")
		}
	}
	if oe := req.OutputExpiresAfter; oe != nil && (oe.Anchor != "created_at" || oe.Seconds < 3600 || oe.Seconds > 2592000) {
		return invalid("output_expires_after", "Invalid 'output_expires_after': anchor must be 'created_at' and seconds between 3600 and 2592000.")
	}
	return nil
}

// validID reports whether id matches ^[A-Za-z0-9_-]+$.
func validID(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// serveCancel answers POST /v1/batches/{id}/cancel.
func (s *Simulator) serveCancel(w http.ResponseWriter, id string) {
	now := s.now()
	s.mu.Lock()
	e, ok := s.byID[id]
	if !ok {
		s.mu.Unlock()
		writeNotFound(w, id)
		return
	}
	v := s.viewOf(e, now)
	if !isTerminal(v.b.Status) && v.b.Status != StatusCancelling {
		e.cancelled = true
		e.cancelAt = now
		v = s.viewOf(e, now)
	}
	s.mu.Unlock()
	writeBatch(w, v)
}
