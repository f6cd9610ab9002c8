package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

var fileIDRE = regexp.MustCompile(`^file_[0-9a-f]{24}$`)

// part is one part of a multipart upload; an empty filename makes a form
// field.
type part struct{ name, filename, data string }

// multipartBody encodes parts with boundary "B0undary".
func multipartBody(t testing.TB, parts ...part) []byte {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary("B0undary"); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			w, err = mw.CreateFormFile(p.name, p.filename)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(w, p.data)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const multipartType = "multipart/form-data; boundary=B0undary"

// send sends one request with the test key and a body of the given
// content type.
func (e *env) send(method, path, contentType string, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", testBearer)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// upload uploads data as a batch input file named name, expecting 200.
func (e *env) upload(name, data string) wire.File {
	e.t.Helper()
	r := e.send("POST", "/v1/files", multipartType,
		multipartBody(e.t, part{"purpose", "", "batch"}, part{"file", name, data}))
	if r.status != 200 {
		e.t.Fatalf("upload %s: %d %s", name, r.status, r.body)
	}
	var f wire.File
	if err := json.Unmarshal(r.body, &f); err != nil {
		e.t.Fatalf("upload %s: %v in %s", name, err, r.body)
	}
	return f
}

// content fetches a file's content, expecting 200.
func (e *env) content(id string) []byte {
	e.t.Helper()
	r := e.do("GET", "/v1/files/"+id+"/content", testBearer, "")
	if r.status != 200 {
		e.t.Fatalf("content of %s: %d %s", id, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
		e.t.Errorf("content of %s: Content-Type %q", id, ct)
	}
	if cl := r.header.Get("Content-Length"); cl != fmt.Sprint(len(r.body)) {
		e.t.Errorf("content of %s: Content-Length %q for %d bytes", id, cl, len(r.body))
	}
	return r.body
}

// listFiles pages through GET /v1/files with the query (without after)
// and limit, checking every page's shape, and returns the files.
func (e *env) listFiles(query string, limit int) []wire.File {
	e.t.Helper()
	var all []wire.File
	after := ""
	for page := 0; ; page++ {
		if page > 100 {
			e.t.Fatal("file list pagination does not end")
		}
		path := fmt.Sprintf("/v1/files?limit=%d%s", limit, query)
		if after != "" {
			path += "&after=" + after
		}
		r := e.do("GET", path, testBearer, "")
		if r.status != 200 {
			e.t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		var l wire.List[wire.File]
		if err := json.Unmarshal(r.body, &l); err != nil {
			e.t.Fatalf("%s: %v", path, err)
		}
		if l.Object != "list" || l.Data == nil || len(l.Data) > limit {
			e.t.Fatalf("%s: %s", path, r.body)
		}
		if len(l.Data) == 0 {
			if l.FirstID != nil || l.LastID != nil || l.HasMore {
				e.t.Errorf("%s: empty page %s", path, r.body)
			}
			return all
		}
		if !eqPtr(l.FirstID, &l.Data[0].ID) || !eqPtr(l.LastID, &l.Data[len(l.Data)-1].ID) {
			e.t.Errorf("%s: first_id %s last_id %s", path, str(l.FirstID), str(l.LastID))
		}
		all = append(all, l.Data...)
		if !l.HasMore {
			return all
		}
		after = *l.LastID
	}
}

func TestUpload(t *testing.T) {
	t.Parallel()
	const data = `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}` + "\n"
	tests := []struct {
		name   string
		opts   Options
		prep   func(e *env)
		ctype  string // "" is multipartType
		body   func(t *testing.T) []byte
		status int
		code   string // error code; "" for success
		param  any
	}{
		{name: "purpose first", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
		}, status: 200},
		{name: "file first, other parts ignored", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"file", "in.jsonl", data}, part{"note", "", "x"}, part{"purpose", "", "batch"})
		}, status: 200},
		{name: "exactly the size limit", opts: Options{MaxFileBytes: int64(len(data))}, body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
		}, status: 200},
		{name: "over the size limit", opts: Options{MaxFileBytes: int64(len(data)) - 1}, body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
		}, status: 413, code: "file_too_large", param: "file"},
		{name: "far over the size limit", opts: Options{MaxFileBytes: 1000}, body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", strings.Repeat("x", 3<<20)})
		}, status: 413, code: "file_too_large", param: "file"},
		{name: "store full", opts: Options{MaxStoreBytes: 100}, prep: func(e *env) {
			e.sim.PutFile("filler", "batch", make([]byte, 100-len(data)+1))
		}, body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
		}, status: 400, code: "storage_full"},
		{name: "store just not full", opts: Options{MaxStoreBytes: 100}, prep: func(e *env) {
			e.sim.PutFile("filler", "batch", make([]byte, 100-len(data)))
		}, body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
		}, status: 200},
		{name: "store overfilled by PutFile", opts: Options{MaxStoreBytes: 100}, prep: func(e *env) {
			e.sim.PutFile("filler", "batch", make([]byte, 200))
		}, body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
		}, status: 400, code: "storage_full"},
		{name: "missing purpose", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"file", "in.jsonl", data})
		}, status: 400, code: "missing_required_parameter", param: "purpose"},
		{name: "other purpose", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "fine-tune"}, part{"file", "in.jsonl", data})
		}, status: 400, code: "invalid_value", param: "purpose"},
		{name: "other purpose after the file", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"file", "in.jsonl", data}, part{"purpose", "", "batch_output"})
		}, status: 400, code: "invalid_value", param: "purpose"},
		{name: "long purpose", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch" + strings.Repeat(" ", 100)}, part{"file", "in.jsonl", data})
		}, status: 400, code: "invalid_value", param: "purpose"},
		{name: "two purposes", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
		}, status: 400, code: "invalid_value", param: "purpose"},
		{name: "missing file", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"})
		}, status: 400, code: "missing_required_parameter", param: "file"},
		{name: "file without a filename", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "", data})
		}, status: 400, code: "invalid_value", param: "file"},
		{name: "empty file", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", ""})
		}, status: 400, code: "invalid_value", param: "file"},
		{name: "two files", body: func(t *testing.T) []byte {
			return multipartBody(t, part{"purpose", "", "batch"}, part{"file", "a.jsonl", data}, part{"file", "b.jsonl", data})
		}, status: 400, code: "invalid_value", param: "file"},
		{name: "not multipart", ctype: "application/json", body: func(*testing.T) []byte {
			return []byte(`{"purpose":"batch"}`)
		}, status: 400, code: "invalid_multipart"},
		{name: "truncated multipart", body: func(t *testing.T) []byte {
			b := multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", data})
			return b[:len(b)-20]
		}, status: 400, code: "invalid_multipart"},
		{name: "body far over the limit outside the file", opts: Options{MaxFileBytes: 10}, body: func(t *testing.T) []byte {
			return multipartBody(t, part{"note", "", strings.Repeat("x", 2<<20)}, part{"purpose", "", "batch"}, part{"file", "in.jsonl", "{}"})
		}, status: 413, code: "request_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts)
			if tc.prep != nil {
				tc.prep(e)
			}
			before := e.sim.storedBytes()
			ctype := tc.ctype
			if ctype == "" {
				ctype = multipartType
			}
			r := e.send("POST", "/v1/files", ctype, tc.body(t))
			if tc.code != "" {
				if p := checkEnvelope(t, r, tc.status, "invalid_request_error", tc.code); p != tc.param {
					t.Errorf("param %#v, want %#v", p, tc.param)
				}
				if got := e.sim.storedBytes(); got != before {
					t.Errorf("a refused upload changed the store: %d bytes, was %d", got, before)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := decodeMap(t, r.body)
			want := map[string]any{"object": "file", "bytes": float64(len(data)), "created_at": float64(t0.Unix()),
				"filename": "in.jsonl", "purpose": "batch", "status": "processed"}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s = %#v, want %#v", k, m[k], v)
				}
			}
			id, _ := m["id"].(string)
			if !fileIDRE.MatchString(id) || len(m) != 7 {
				t.Errorf("file object %s", r.body)
			}
			if g := e.do("GET", "/v1/files/"+id, testBearer, ""); g.status != 200 || !bytes.Equal(g.body, r.body) {
				t.Errorf("GET after upload: %d\n%s\nwant\n%s", g.status, g.body, r.body)
			}
			if got := e.content(id); string(got) != data {
				t.Errorf("content %q, want %q", got, data)
			}
			if got, ok := e.sim.FileContent(id); !ok || string(got) != data {
				t.Errorf("FileContent = %q, %v", got, ok)
			}
			if got := e.sim.storedBytes(); got != before+int64(len(data)) {
				t.Errorf("store holds %d bytes, want %d", got, before+int64(len(data)))
			}
		})
	}
}

// storedBytes returns the bytes counted against Options.MaxStoreBytes, as
// the next upload sees them.
func (s *Simulator) storedBytes() int64 {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(now)
	return s.storeUsed
}

// TestUploadConcurrent: uploads racing for the last room in the store
// never overfill it.
func TestUploadConcurrent(t *testing.T) {
	t.Parallel()
	const size, room, n = 100, 10, 24
	e := newEnv(t, Options{MaxStoreBytes: size * room})
	body := multipartBody(t, part{"purpose", "", "batch"}, part{"file", "in.jsonl", strings.Repeat("x", size)})
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			r := e.send("POST", "/v1/files", multipartType, body)
			statuses[i] = r.status
			if r.status != 200 {
				checkEnvelope(t, r, 400, "invalid_request_error", "storage_full")
			}
		})
	}
	wg.Wait()
	if ok := len(slices.DeleteFunc(statuses, func(s int) bool { return s != 200 })); ok != room {
		t.Errorf("%d uploads stored, want %d", ok, room)
	}
	if got := e.sim.storedBytes(); got != size*room {
		t.Errorf("store holds %d bytes, want %d", got, size*room)
	}
}

func TestFileList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	base := len(e.listFiles("", 100))
	var want []string // newest first
	for i := range 7 {
		purpose := "batch"
		if i%3 == 2 {
			purpose = "batch_output"
		}
		if i != 4 { // two files share a created_at: the later stored first
			e.clock.Advance(time.Second)
		}
		want = append(want, e.sim.PutFile(fmt.Sprintf("f%d.jsonl", i), purpose, []byte("x")).ID)
	}
	slices.Reverse(want)
	ids := func(fs []wire.File) []string {
		out := make([]string, len(fs))
		for i, f := range fs {
			out[i] = f.ID
		}
		return out
	}
	for _, limit := range []int{1, 2, 3, 7, 100} {
		if got := ids(e.listFiles("", limit)); !slices.Equal(got[:7], want) || len(got) != 7+base {
			t.Errorf("limit %d: listed %v, want %v first", limit, got, want)
		}
	}
	byPurpose := map[string][]string{}
	for _, id := range want {
		f, _ := e.sim.file(id)
		byPurpose[f.Purpose] = append(byPurpose[f.Purpose], id)
	}
	for purpose, want := range byPurpose {
		for _, limit := range []int{1, 2, 100} {
			if got := ids(e.listFiles("&purpose="+purpose, limit)); !slices.Equal(got[:len(want)], want) {
				t.Errorf("purpose=%s limit %d: %v, want %v first", purpose, limit, got, want)
			}
		}
	}
	if got := ids(e.listFiles("&purpose=nothing", 5)); len(got) != 0 {
		t.Errorf("purpose=nothing: %v", got)
	}
	asc := slices.Clone(want)
	slices.Reverse(asc)
	if got := ids(e.listFiles("&order=asc", 3)); !slices.Equal(got[len(got)-7:], asc) {
		t.Errorf("order=asc: %v, want %v last", got, asc)
	}
	// The default limit holds them all.
	l := decodeMap(t, e.do("GET", "/v1/files", testBearer, "").body)
	if data, _ := l["data"].([]any); len(data) != 7+base || l["has_more"] != false {
		t.Errorf("default list: %v", l)
	}
	for _, q := range []struct{ query, param string }{
		{"limit=0", "limit"}, {"limit=10001", "limit"}, {"limit=x", "limit"},
		{"order=up", "order"}, {"after=file_nope", "after"},
	} {
		r := e.do("GET", "/v1/files?"+q.query, testBearer, "")
		if p := checkEnvelope(t, r, 400, "invalid_request_error", "invalid_value"); p != q.param {
			t.Errorf("%s: param %v", q.query, p)
		}
	}
}

// file returns the stored file object id.
func (s *Simulator) file(id string) (wire.File, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sf, ok := s.files[id]
	if !ok {
		return wire.File{}, false
	}
	return sf.f, true
}

func TestFileDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{MaxStoreBytes: 1000})
	before := e.sim.storedBytes()
	f := e.upload("in.jsonl", strings.Repeat("x", 600))
	checkEnvelope(t, e.send("POST", "/v1/files", multipartType,
		multipartBody(t, part{"purpose", "", "batch"}, part{"file", "b.jsonl", strings.Repeat("y", 600)})),
		400, "invalid_request_error", "storage_full")

	r := e.do("DELETE", "/v1/files/"+f.ID, testBearer, "")
	var d wire.FileDeleted
	if err := json.Unmarshal(r.body, &d); err != nil || r.status != 200 || d != (wire.FileDeleted{ID: f.ID, Object: "file", Deleted: true}) {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if m := decodeMap(t, r.body); len(m) != 3 {
		t.Errorf("delete answer %s", r.body)
	}
	if got := e.sim.storedBytes(); got != before {
		t.Errorf("store holds %d bytes after the delete, want %d", got, before)
	}
	for _, req := range []struct{ method, path string }{
		{"DELETE", "/v1/files/" + f.ID},
		{"GET", "/v1/files/" + f.ID},
		{"GET", "/v1/files/" + f.ID + "/content"},
		{"GET", "/v1/files/file_nope/content"},
		{"GET", "/v1/files/bad%20id"},
	} {
		r := e.do(req.method, req.path, testBearer, "")
		checkEnvelope(t, r, 404, "not_found_error", "not_found")
	}
	if _, ok := e.sim.FileContent(f.ID); ok {
		t.Error("FileContent of a deleted file")
	}
	if slices.ContainsFunc(e.listFiles("", 100), func(x wire.File) bool { return x.ID == f.ID }) {
		t.Error("deleted file listed")
	}
	// The room is back.
	e.upload("b.jsonl", strings.Repeat("y", 600))
}

func TestPutFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	data := []byte("line\n")
	f := e.sim.PutFile("x.jsonl", "anything", data)
	data[0] = 'X' // PutFile copied
	if !fileIDRE.MatchString(f.ID) || f.Object != "file" || f.Bytes != 5 || f.Filename != "x.jsonl" ||
		f.Purpose != "anything" || f.CreatedAt != wire.Int(t0.Unix()) {
		t.Errorf("PutFile = %+v", f)
	}
	got, ok := e.sim.FileContent(f.ID)
	if !ok || string(got) != "line\n" {
		t.Fatalf("FileContent = %q, %v", got, ok)
	}
	got[0] = 'X' // FileContent copied
	if c := e.content(f.ID); string(c) != "line\n" {
		t.Errorf("content %q", c)
	}
	if e := e.sim.PutFile("empty", "batch", nil); e.Bytes != 0 {
		t.Errorf("empty PutFile = %+v", e)
	}
}

// FuzzUpload: no body makes POST /v1/files panic, answer anything but 200,
// 400 or 413, or store more than the limits allow.
func FuzzUpload(f *testing.F) {
	f.Add(multipartBody(f, part{"purpose", "", "batch"}, part{"file", "in.jsonl", "{}\n"}), false)
	f.Add(multipartBody(f, part{"file", "in.jsonl", strings.Repeat("x", 100)}, part{"purpose", "", "batch"}), true)
	f.Add(multipartBody(f, part{"purpose", "", "batch"}, part{"file", "in.jsonl", strings.Repeat("x", 40)}), true)
	f.Add(multipartBody(f, part{"purpose", "", "batch"}, part{"file", "", "x"}), false)
	f.Add([]byte("--B0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc"), false)
	f.Add([]byte("--B0undary--\r\n"), false)
	f.Add([]byte{}, false)
	const maxFile, maxStore, filler = 64, 200, 150
	f.Fuzz(func(t *testing.T, body []byte, nearlyFull bool) {
		sim := New(Options{MaxFileBytes: maxFile, MaxStoreBytes: maxStore})
		if nearlyFull {
			sim.PutFile("filler", "batch", make([]byte, filler))
		}
		before := sim.storedBytes()
		req := httptest.NewRequest(http.MethodPost, "/v1/files", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		req.Header.Set("Content-Type", multipartType)
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		used := sim.storedBytes()
		if used > max(maxStore, before) {
			t.Fatalf("store holds %d bytes, limit %d", used, maxStore)
		}
		switch rec.Code {
		case 200:
			var got wire.File
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("200 with %s", rec.Body)
			}
			data, ok := sim.FileContent(got.ID)
			if !ok || int64(len(data)) != int64(got.Bytes) || len(data) == 0 || len(data) > maxFile || got.Purpose != "batch" {
				t.Fatalf("stored %+v with %d bytes", got, len(data))
			}
			if used != before+int64(len(data)) {
				t.Fatalf("store holds %d bytes, want %d", used, before+int64(len(data)))
			}
		case 400, 413:
			if used != before {
				t.Fatalf("a refused upload changed the store: %d bytes, was %d", used, before)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
