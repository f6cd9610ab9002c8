package simulator

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

// Limits of the file store; see Options.MaxFileBytes and
// Options.MaxStoreBytes.
const (
	// DefaultMaxFileBytes is Options.MaxFileBytes when it is not set: 200
	// MB, the upstream's limit for a batch input file.
	DefaultMaxFileBytes = 200 * 1000 * 1000
	// DefaultMaxStoreBytes is Options.MaxStoreBytes when it is not set.
	DefaultMaxStoreBytes = 512 << 20
)

// PurposeBatch is the purpose of a batch input file, the only one
// POST /v1/files accepts; PurposeBatchOutput that of the output and error
// files of batches.
const (
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"
)

// maxUploadOverhead is what a POST /v1/files body may hold beyond the file:
// the multipart framing, the purpose and any other parts.
const maxUploadOverhead = 1 << 20

// maxPurposeLen caps the purpose part.
const maxPurposeLen = 64

// fileStatus is the status of every stored file.
var fileStatus = "processed"

// storedFile is a file in the store. Its object and data are never
// mutated once stored, so they may be read without copying under the
// lock and after it.
type storedFile struct {
	f       wire.File
	data    []byte
	seq     uint64 // insertion order, breaks created_at ties in lists
	counted bool   // its bytes count against Options.MaxStoreBytes
}

// cmpFiles orders files newest first: by created_at, then latest
// insertion first.
func cmpFiles(a, b *storedFile) int {
	if a == b {
		return 0
	}
	if a.f.CreatedAt != b.f.CreatedAt {
		if a.f.CreatedAt > b.f.CreatedAt {
			return -1
		}
		return 1
	}
	if a.seq > b.seq {
		return -1
	}
	return 1
}

// newFileID returns a fresh file id.
func newFileID() string { return "file_" + randomHex(12) }

// storeFileLocked stores data as file id (replacing any file with that
// id), created at, and returns the stored file. data must not be modified
// afterwards.
func (s *Simulator) storeFileLocked(id, name, purpose string, data []byte, at time.Time, counted bool) *storedFile {
	s.deleteFileLocked(id)
	s.seq++
	sf := &storedFile{
		f: wire.File{
			ID:        id,
			Object:    "file",
			Bytes:     wire.Int(len(data)),
			CreatedAt: wire.Int(at.Unix()),
			Filename:  name,
			Purpose:   purpose,
			Status:    &fileStatus,
		},
		data:    data,
		seq:     s.seq,
		counted: counted,
	}
	if counted {
		s.storeUsed += int64(len(data))
	}
	s.files[id] = sf
	i, _ := slices.BinarySearchFunc(s.fileOrder, sf, cmpFiles)
	s.fileOrder = slices.Insert(s.fileOrder, i, sf)
	return sf
}

// deleteFileLocked removes file id; it reports whether there was one.
func (s *Simulator) deleteFileLocked(id string) bool {
	sf, ok := s.files[id]
	if !ok {
		return false
	}
	delete(s.files, id)
	i, _ := slices.BinarySearchFunc(s.fileOrder, sf, cmpFiles)
	s.fileOrder = slices.Delete(s.fileOrder, i, i+1)
	if sf.counted {
		s.storeUsed -= int64(len(sf.data))
	}
	return true
}

// PutFile stores a copy of data as a file named name with the given
// purpose (any string, so that tests can store files POST /v1/files would
// refuse), created now, and returns its file object. It does not check
// Options.MaxFileBytes or Options.MaxStoreBytes, but its bytes count
// towards the latter, so a test can fill the store with it.
func (s *Simulator) PutFile(name, purpose string, data []byte) wire.File {
	data = slices.Clone(data)
	if data == nil {
		data = []byte{}
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeFileLocked(newFileID(), name, purpose, data, now, true).f
}

// FileContent returns a copy of the content of file id, as
// GET /v1/files/{id}/content serves it, and whether there is such a file.
func (s *Simulator) FileContent(id string) ([]byte, bool) {
	s.settle()
	_, data, stored, ok := s.lookupFile(id)
	if stored {
		data = slices.Clone(data)
	}
	return data, ok
}

// lookupFile returns file id and its content: a stored file (whose data
// must not be modified) or a virtual one, written for the call.
func (s *Simulator) lookupFile(id string) (f wire.File, data []byte, stored, ok bool) {
	now := s.now()
	s.mu.Lock()
	if sf, ok := s.files[id]; ok {
		s.mu.Unlock()
		return sf.f, sf.data, true, true
	}
	v, ok := s.virtualFileLocked(id, now)
	s.mu.Unlock()
	if !ok {
		return wire.File{}, nil, false, false
	}
	data = v.content()
	v.f.Bytes = wire.Int(len(data))
	return v.f, data, false, true
}

// syntheticModel is the model of synthetic requests.
const syntheticModel = "gpt-4o-mini"

// virtualFile is the output or error file of a batch of synthetic
// requests (see Create): never stored, but written from the batch's state
// whenever it is asked for, the same bytes every time in a run.
type virtualFile struct {
	f       wire.File // all but Bytes
	seed    string    // of the result ids
	ran     int       // requests run
	errors  bool      // the error file, else the output file
	created int64     // the chat completions' created
}

// virtualFileLocked returns the virtual file id at now: "file_out_x" or
// "file_err_x" of the synthetic batch "batch_x", while the batch names it,
// unless it was deleted in the batch's current run.
func (s *Simulator) virtualFileLocked(id string, now time.Time) (virtualFile, bool) {
	rest, isErr := strings.CutPrefix(id, "file_err_")
	if !isErr {
		var ok bool
		if rest, ok = strings.CutPrefix(id, "file_out_"); !ok {
			return virtualFile{}, false
		}
	}
	e, ok := s.byID["batch_"+rest]
	if !ok || e.slow == 0 || e.fileBacked {
		return virtualFile{}, false
	}
	b := e.view(now, s.phase)
	named := b.OutputFileID
	if isErr {
		named = b.ErrorFileID
	}
	at := terminalAt(&b)
	if named == nil || *named != id || at == nil {
		return virtualFile{}, false
	}
	if d, ok := s.deletedVirtual[id]; ok && d == *at {
		return virtualFile{}, false
	}
	suffix := "_output.jsonl"
	if isErr {
		suffix = "_error.jsonl"
	}
	rc := counts(&b)
	created := b.CreatedAt
	if b.InProgressAt != nil {
		created = b.InProgressAt
	}
	return virtualFile{
		f: wire.File{
			ID: id, Object: "file", CreatedAt: *at, Filename: b.ID + suffix,
			Purpose: PurposeBatchOutput, Status: &fileStatus,
		},
		seed:    b.ID + "/" + strconv.FormatInt(e.runStart(now, s.phase).UnixNano(), 10),
		ran:     int(rc.Completed + rc.Failed),
		errors:  isErr,
		created: int64(*created),
	}, true
}

// content writes the file: the result lines of the run requests that
// succeeded (or, for the error file, failed), in order.
func (v *virtualFile) content() []byte {
	out := []byte{}
	for n := 1; n <= v.ran; n++ {
		failed := n%failEvery == 0
		if failed != v.errors {
			continue
		}
		in := inputLine{customID: "request-" + strconv.Itoa(n), model: syntheticModel}
		out = appendResult(out, in, n, v.created, detResultIDs(v.seed, n), failed)
	}
	return out
}

// serveFiles answers the requests under /v1/files; rest is the path after
// "/v1/files" ("" or "/..."). It reports false when the path is not one of
// the file endpoints.
func (s *Simulator) serveFiles(w http.ResponseWriter, r *http.Request, rest string) bool {
	s.settle()
	if rest == "" {
		switch r.Method {
		case http.MethodGet:
			s.serveFileList(w, r)
		case http.MethodPost:
			s.serveWithFault(w, r, faultKey{route: routeUpload}, func(w http.ResponseWriter) { s.serveUpload(w, r) })
		default:
			writeMethodNotAllowed(w, "GET, POST")
		}
		return true
	}
	id, action, hasAction := cutPath(rest)
	switch {
	case id == "":
		return false
	case !hasAction:
		switch r.Method {
		case http.MethodGet:
			s.serveFileGet(w, id)
		case http.MethodDelete:
			s.serveFileDelete(w, id)
		default:
			writeMethodNotAllowed(w, "GET, DELETE")
		}
		return true
	case action == "content":
		if r.Method != http.MethodGet {
			writeMethodNotAllowed(w, "GET")
			return true
		}
		s.serveWithFault(w, r, faultKey{routeContent, id}, func(w http.ResponseWriter) { s.serveFileContent(w, id) })
		return true
	}
	return false
}

// cutPath splits "/{id}" or "/{id}/{action}"; rest must start with "/".
func cutPath(rest string) (id, action string, hasAction bool) {
	if len(rest) == 0 || rest[0] != '/' {
		return "", "", false
	}
	return strings.Cut(rest[1:], "/")
}

// serveFileGet answers GET /v1/files/{id}.
func (s *Simulator) serveFileGet(w http.ResponseWriter, id string) {
	f, _, _, ok := s.lookupFile(id)
	if !ok {
		writeFileNotFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, &f)
}

// serveFileDelete answers DELETE /v1/files/{id}.
func (s *Simulator) serveFileDelete(w http.ResponseWriter, id string) {
	now := s.now()
	s.mu.Lock()
	ok := s.deleteFileLocked(id)
	if !ok {
		var v virtualFile
		if v, ok = s.virtualFileLocked(id, now); ok {
			s.deletedVirtual[id] = v.f.CreatedAt
		}
	}
	s.mu.Unlock()
	if !ok {
		writeFileNotFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, &wire.FileDeleted{ID: id, Object: "file", Deleted: true})
}

// serveFileContent answers GET /v1/files/{id}/content.
func (s *Simulator) serveFileContent(w http.ResponseWriter, id string) {
	_, data, _, ok := s.lookupFile(id)
	if !ok {
		writeFileNotFound(w, id)
		return
	}
	writeContent(w, data)
}

// serveFileList answers GET /v1/files.
func (s *Simulator) serveFileList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 10000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, invalidParam("limit", "Invalid 'limit': expected an integer between 1 and 10000."))
			return
		}
		limit = n
	}
	asc := false
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		asc = true
	default:
		writeError(w, invalidParam("order", "Invalid 'order': expected 'asc' or 'desc'."))
		return
	}
	purpose, after := q.Get("purpose"), q.Get("after")

	s.mu.Lock()
	order := s.fileOrder
	if asc {
		order = slices.Clone(order)
		slices.Reverse(order)
	}
	start := 0
	if after != "" {
		sf, ok := s.files[after]
		if !ok {
			s.mu.Unlock()
			writeError(w, invalidParam("after", "Invalid 'after': no file with id '"+after+"'."))
			return
		}
		start = slices.Index(order, sf) + 1
	}
	resp := wire.List[wire.File]{Object: "list", Data: []wire.File{}}
	for _, sf := range order[start:] {
		if purpose != "" && sf.f.Purpose != purpose {
			continue
		}
		if len(resp.Data) == limit {
			resp.HasMore = true
			break
		}
		resp.Data = append(resp.Data, sf.f)
	}
	s.mu.Unlock()

	if n := len(resp.Data); n > 0 {
		resp.FirstID = &resp.Data[0].ID
		resp.LastID = &resp.Data[n-1].ID
	}
	writeJSON(w, http.StatusOK, &resp)
}

// serveUpload answers POST /v1/files: a multipart/form-data body with the
// parts "purpose" and "file", read as it streams in. No more of the file
// is read than its limit (Options.MaxFileBytes, or the room left in the
// store when that is less) and one byte, so an upload over the limit costs
// no more memory than one at it.
func (s *Simulator) serveUpload(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.maxFile+maxUploadOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, badUpload("The request body must be multipart/form-data with the parts 'purpose' and 'file'."))
		return
	}
	s.mu.Lock()
	limit := min(s.maxFile, max(s.maxStore-s.storeUsed, 0))
	s.mu.Unlock()

	var (
		purpose, name         string
		havePurpose, haveFile bool
		data                  []byte
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeError(w, uploadReadError(err))
			return
		}
		switch part.FormName() {
		case "purpose":
			if havePurpose {
				_ = part.Close()
				writeError(w, invalidParam("purpose", "Only one 'purpose' may be given."))
				return
			}
			v, over, err := readLimited(part, maxPurposeLen, 0)
			if err != nil {
				_ = part.Close()
				writeError(w, uploadReadError(err))
				return
			}
			purpose, havePurpose = string(v), true
			if over || purpose != PurposeBatch {
				_ = part.Close()
				writeError(w, invalidParam("purpose", "Invalid 'purpose': only '"+PurposeBatch+"' is supported."))
				return
			}
		case "file":
			if haveFile {
				_ = part.Close()
				writeError(w, invalidParam("file", "Only one 'file' may be given."))
				return
			}
			name = part.FileName()
			if name == "" {
				_ = part.Close()
				writeError(w, invalidParam("file", "Invalid 'file': the part must have a filename."))
				return
			}
			v, over, err := readLimited(part, limit, r.ContentLength)
			if err != nil {
				_ = part.Close()
				writeError(w, uploadReadError(err))
				return
			}
			if over {
				_ = part.Close()
				if limit < s.maxFile {
					writeError(w, storageFull())
				} else {
					writeError(w, fileTooLarge(s.maxFile))
				}
				return
			}
			data, haveFile = v, true
		default:
			if _, err := io.Copy(io.Discard, part); err != nil {
				_ = part.Close()
				writeError(w, uploadReadError(err))
				return
			}
		}
		_ = part.Close()
	}
	switch {
	case !havePurpose:
		writeError(w, missingParam("purpose"))
		return
	case !haveFile:
		writeError(w, missingParam("file"))
		return
	case len(data) == 0:
		writeError(w, invalidParam("file", "Invalid 'file': the file is empty."))
		return
	}

	now := s.now()
	s.mu.Lock()
	if s.storeUsed+int64(len(data)) > s.maxStore {
		s.mu.Unlock()
		writeError(w, storageFull())
		return
	}
	sf := s.storeFileLocked(newFileID(), name, purpose, data, now, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, &sf.f)
}

// readLimited reads r to its end, but no more than limit+1 bytes: over
// reports that r holds more than limit. hint, when positive, is a size to
// allocate for up front (the request's Content-Length, which bounds the
// part's), capped at limit+1.
func readLimited(r io.Reader, limit, hint int64) (data []byte, over bool, err error) {
	r = io.LimitReader(r, limit+1)
	data = make([]byte, 0, max(min(hint, limit+1), 512))
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if int64(len(data)) > limit {
			return nil, true, nil
		}
		if errors.Is(err, io.EOF) {
			return data, false, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// uploadReadError is the answer to an upload whose body could not be read.
func uploadReadError(err error) *apiError {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &apiError{
			status:  http.StatusRequestEntityTooLarge,
			Message: "The request body is too large.",
			Type:    "invalid_request_error",
			Code:    "request_too_large",
		}
	}
	return badUpload("The multipart/form-data body is malformed.")
}

func badUpload(msg string) *apiError {
	return &apiError{
		status:  http.StatusBadRequest,
		Message: msg,
		Type:    "invalid_request_error",
		Code:    "invalid_multipart",
	}
}

func fileTooLarge(limit int64) *apiError {
	return &apiError{
		status:  http.StatusRequestEntityTooLarge,
		Message: "The file is larger than the limit of " + strconv.FormatInt(limit, 10) + " bytes.",
		Type:    "invalid_request_error",
		Param:   "file",
		Code:    "file_too_large",
	}
}

// storageFull is the answer when the store has no room: 400, as retrying
// does not help until files are deleted.
func storageFull() *apiError {
	return &apiError{
		status:  http.StatusBadRequest,
		Message: "The file store is full: delete files to make room.",
		Type:    "invalid_request_error",
		Code:    "storage_full",
	}
}

func missingParam(param string) *apiError {
	return &apiError{
		status:  http.StatusBadRequest,
		Message: "Missing required parameter: '" + param + "'.",
		Type:    "invalid_request_error",
		Param:   param,
		Code:    "missing_required_parameter",
	}
}

func invalidParam(param, msg string) *apiError {
	return &apiError{
		status:  http.StatusBadRequest,
		Message: msg,
		Type:    "invalid_request_error",
		Param:   param,
		Code:    "invalid_value",
	}
}

func writeFileNotFound(w http.ResponseWriter, id string) {
	writeError(w, &apiError{
		status:  http.StatusNotFound,
		Message: "No file found with id '" + id + "'.",
		Type:    "not_found_error",
		Code:    "not_found",
	})
}

// writeContent writes a file's bytes as a 200 answer.
func writeContent(w http.ResponseWriter, data []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}
