package service_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/ownership"
	"github.com/batchgate/batchgate/internal/service"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

// fakeUp is an in-memory upstream: batches newest first, files by id,
// and scripted failures of creates.
type fakeUp struct {
	mu        sync.Mutex
	batches   []*batchv1.Batch // newest first
	files     map[string][]byte
	creates   int
	cancels   []string
	createErr []error // popped by each create; a batch is still made when the error is ambiguous
	uploaded  int64
}

func newFakeUp() *fakeUp { return &fakeUp{files: map[string][]byte{}} }

func (f *fakeUp) add(b *batchv1.Batch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append([]*batchv1.Batch{b}, f.batches...)
}

func (f *fakeUp) get(id string) (*batchv1.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		if b.GetId() == id {
			return b, nil
		}
	}
	return nil, &upstream.Error{HTTPStatus: 404, Type: "invalid_request_error", Code: "not_found"}
}

func (f *fakeUp) CreateBatch(_ context.Context, req wire.CreateBatchRequest) (*batchv1.Batch, error) {
	f.mu.Lock()
	f.creates++
	var err error
	if len(f.createErr) > 0 {
		err, f.createErr = f.createErr[0], f.createErr[1:]
	}
	n := len(f.batches)
	f.mu.Unlock()
	if err != nil && !upstream.Classify(err).MayHaveApplied {
		return nil, err
	}
	b := &batchv1.Batch{
		Id: fmt.Sprint("batch_new", n), Object: "batch", Status: batchv1.BatchStatus_BATCH_STATUS_VALIDATING, UpstreamStatus: "validating",
		InputFileId: req.InputFileID, Endpoint: req.Endpoint, CompletionWindow: req.CompletionWindow,
		CreatedAt: new(int64(1 << 40)), Metadata: &batchv1.Metadata{Pairs: req.Metadata},
	}
	f.add(b)
	return b, err // ambiguous: made, but the answer is an error
}

func (f *fakeUp) ListBatches(_ context.Context, after string, limit int) (*batchv1.ListBatchesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := 0
	if after != "" {
		start = len(f.batches)
		for i, b := range f.batches {
			if b.GetId() == after {
				start = i + 1
			}
		}
	}
	end := min(start+limit, len(f.batches))
	page := &batchv1.ListBatchesResponse{Batches: f.batches[start:end], HasMore: end < len(f.batches)}
	if end > start {
		page.FirstId, page.LastId = f.batches[start].GetId(), f.batches[end-1].GetId()
	}
	return page, nil
}

func (f *fakeUp) CancelBatch(_ context.Context, id string) (*batchv1.Batch, error) {
	f.mu.Lock()
	f.cancels = append(f.cancels, id)
	f.mu.Unlock()
	return f.get(id)
}

func (f *fakeUp) UploadFile(_ context.Context, filename, _ string, content io.Reader) (*batchv1.File, error) {
	data, err := io.ReadAll(content)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprint("file_up", len(f.files))
	f.files[id] = data
	f.uploaded += int64(len(data))
	return &batchv1.File{Id: id, Object: "file", Bytes: int64(len(data)), Filename: filename, Purpose: "batch"}, nil
}

func (f *fakeUp) GetFile(_ context.Context, id string) (*batchv1.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.files[id]
	if !ok {
		return nil, &upstream.Error{HTTPStatus: 404}
	}
	return &batchv1.File{Id: id, Object: "file", Bytes: int64(len(data))}, nil
}

func (f *fakeUp) ListFiles(context.Context, string, int, string) (*batchv1.ListFilesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &batchv1.ListFilesResponse{}
	for id := range f.files {
		out.Files = append(out.Files, &batchv1.File{Id: id})
	}
	return out, nil
}

func (f *fakeUp) DeleteFile(_ context.Context, id string) (*batchv1.DeleteFileResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.files, id)
	return &batchv1.DeleteFileResponse{Id: id, Deleted: true}, nil
}

func (f *fakeUp) FileContent(_ context.Context, id string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.files[id]
	if !ok {
		return nil, &upstream.Error{HTTPStatus: 404}
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// pokes counts PokeBatch calls.
type pokes struct {
	mu  sync.Mutex
	ids []string
}

func (p *pokes) PokeBatch(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = append(p.ids, id)
	return 1
}

type callerKey struct{}

func as(c callinfo.Caller) context.Context {
	return context.WithValue(context.Background(), callerKey{}, c)
}

var (
	alice = callinfo.Caller{Name: "alice", Scopes: callinfo.DefaultScopes}
	bob   = callinfo.Caller{Name: "bob", Scopes: callinfo.DefaultScopes}
	ops   = callinfo.Caller{Name: "ops", Scopes: callinfo.ScopeRead | callinfo.ScopeAll}
)

// newLifecycle returns a service on up, whose calls run as the caller of
// their context (as), with a hub that reads up.
func newLifecycle(t *testing.T, up *fakeUp, p *pokes) *service.Service {
	t.Helper()
	hub := newFakeHub(t, func(k watch.Key) (*batchv1.Batch, error) { return up.get(k.BatchID) })
	opts := service.Options{
		Upstream: up,
		Caller: func(ctx context.Context) callinfo.Caller {
			c, _ := ctx.Value(callerKey{}).(callinfo.Caller)
			return c
		},
	}
	if p != nil {
		opts.Poker = p
	}
	return service.New(hub, opts)
}

func validCreate() *batchv1.CreateBatchRequest {
	return &batchv1.CreateBatchRequest{InputFileId: "file_in", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}
}

func TestCreateBatchInvalid(t *testing.T) {
	t.Parallel()
	many := map[string]string{}
	for i := range 16 {
		many[fmt.Sprint("k", i)] = "v"
	}
	tests := []struct {
		name  string
		edit  func(*batchv1.CreateBatchRequest)
		param string
	}{
		{"no input file", func(r *batchv1.CreateBatchRequest) { r.InputFileId = "" }, "input_file_id"},
		{"bad input file id", func(r *batchv1.CreateBatchRequest) { r.InputFileId = "../etc" }, ""},
		{"no endpoint", func(r *batchv1.CreateBatchRequest) { r.Endpoint = "" }, "endpoint"},
		{"unknown endpoint", func(r *batchv1.CreateBatchRequest) { r.Endpoint = "/v1/images" }, "endpoint"},
		{"unknown window", func(r *batchv1.CreateBatchRequest) { r.CompletionWindow = "48h" }, "completion_window"},
		{"reserved metadata", func(r *batchv1.CreateBatchRequest) { r.Metadata = map[string]string{ownership.MetaCaller: "mallory"} }, "metadata"},
		{"reserved prefix", func(r *batchv1.CreateBatchRequest) { r.Metadata = map[string]string{"batchgate_x": "1"} }, "metadata"},
		{"long key", func(r *batchv1.CreateBatchRequest) { r.Metadata = map[string]string{strings.Repeat("k", 65): "v"} }, "metadata"},
		{"long value", func(r *batchv1.CreateBatchRequest) { r.Metadata = map[string]string{"k": strings.Repeat("v", 513)} }, "metadata"},
		// 16 of the caller's plus the reserved idempotency key: 17 > 16.
		{"too many pairs with the reserved one", func(r *batchv1.CreateBatchRequest) { r.Metadata = many }, "metadata"},
		{"bad idempotency key", func(r *batchv1.CreateBatchRequest) { r.IdempotencyKey = "a\nb" }, "idempotency_key"},
		{"bad expiry", func(r *batchv1.CreateBatchRequest) {
			r.OutputExpiresAfter = &batchv1.OutputExpiresAfter{Anchor: "created_at", Seconds: 60}
		}, "output_expires_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newFakeUp()
			svc := newLifecycle(t, up, nil)
			svc.Files() // the file record is the service's
			req := validCreate()
			tt.edit(req)
			_, err := svc.CreateBatch(as(callinfo.Caller{Name: "x", Scopes: callinfo.Unrestricted}), req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("err %v, want InvalidArgument", err)
			}
			if tt.param != "" && !strings.Contains(fmt.Sprint(status.Convert(err).Details()), tt.param) {
				t.Errorf("details %v do not name %s", status.Convert(err).Details(), tt.param)
			}
			if up.creates != 0 {
				t.Errorf("%d creates upstream for a bad request", up.creates)
			}
		})
	}
}

// TestCreateBatchNoDuplicates: a failure after which the batch may exist
// is followed by a search for its tag, not a blind retry; a failure that
// cannot have made it is retried when retryable; a 4xx is not.
func TestCreateBatchNoDuplicates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		errs        []error
		wantCode    codes.Code
		wantCreates int
		wantBatches int
	}{
		{"ok", nil, codes.OK, 1, 1},
		{"made, then 500", []error{&upstream.Error{HTTPStatus: 500}}, codes.OK, 1, 1},
		{"made, then timeout", []error{fmt.Errorf("create: %w", upstream.ErrTimeout)}, codes.OK, 1, 1},
		{"made, then reset", []error{fmt.Errorf("%w: connection reset", upstream.ErrUnreachable)}, codes.OK, 1, 1},
		{"made, then 503", []error{&upstream.Error{HTTPStatus: 503}}, codes.OK, 1, 1},
		{"429 retried", []error{&upstream.Error{HTTPStatus: 429}}, codes.OK, 2, 1},
		{"400 not retried", []error{&upstream.Error{HTTPStatus: 400, Type: "invalid_request_error"}}, codes.InvalidArgument, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newFakeUp()
			up.createErr = tt.errs
			svc := newLifecycle(t, up, nil)
			resp, err := svc.CreateBatch(as(callinfo.Caller{Name: "x", Scopes: callinfo.Unrestricted}), validCreate())
			if status.Code(err) != tt.wantCode {
				t.Fatalf("err %v, want %v", err, tt.wantCode)
			}
			if up.creates != tt.wantCreates || len(up.batches) != tt.wantBatches {
				t.Fatalf("%d creates, %d batches; want %d, %d", up.creates, len(up.batches), tt.wantCreates, tt.wantBatches)
			}
			if err == nil && resp.GetBatch().GetId() != up.batches[0].GetId() {
				t.Fatalf("returned %s, made %s", resp.GetBatch().GetId(), up.batches[0].GetId())
			}
		})
	}
}

// TestCreateBatchIdempotencyKey: the same key (field or header) within the
// window gives the same batch and makes one; another caller's same key is
// its own.
func TestCreateBatchIdempotencyKey(t *testing.T) {
	t.Parallel()
	up := newFakeUp()
	svc := newLifecycle(t, up, nil)
	all := callinfo.Caller{Name: "x", Scopes: callinfo.Unrestricted}
	req := validCreate()
	req.IdempotencyKey = "order-42"
	first, err := svc.CreateBatch(as(all), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := first.GetBatch().GetMetadata().GetPairs()[ownership.MetaIdempotencyKey]; got != "order-42" {
		t.Fatalf("tag %q", got)
	}
	ctx := metadata.NewIncomingContext(as(all), metadata.Pairs(service.IdempotencyHeader, "order-42"))
	again, err := svc.CreateBatch(ctx, validCreate())
	if err != nil || again.GetBatch().GetId() != first.GetBatch().GetId() || up.creates != 1 {
		t.Fatalf("repeat: %v, %v; %d creates", again.GetBatch().GetId(), err, up.creates)
	}
	// A fresh service (a restart) finds it upstream by its tag.
	svc2 := newLifecycle(t, up, nil)
	again, err = svc2.CreateBatch(as(all), req)
	if err != nil || again.GetBatch().GetId() != first.GetBatch().GetId() || up.creates != 1 {
		t.Fatalf("after a restart: %v, %v; %d creates", again.GetBatch().GetId(), err, up.creates)
	}
	// No key: a new batch each time.
	if _, err := svc.CreateBatch(as(all), validCreate()); err != nil || up.creates != 2 {
		t.Fatalf("without a key: %v; %d creates", err, up.creates)
	}
}

// TestOwnership: in key mode callers reach only their own batches; list
// pages are filtered without losing has_more or skipping any.
func TestOwnership(t *testing.T) {
	t.Parallel()
	up := newFakeUp()
	p := &pokes{}
	svc := newLifecycle(t, up, p)
	up.files["file_in"] = []byte("{}\n")
	svc.Files()
	// Files alice may use: she uploads one.
	upload(t, svc, alice, "in.jsonl", "{}\n")
	var aliceIDs []string
	for i := range 23 {
		who := bob
		if i%3 == 0 {
			who = alice
		}
		req := validCreate()
		req.InputFileId = fileOf(t, svc, who)
		resp, err := svc.CreateBatch(as(who), req)
		if err != nil {
			t.Fatalf("create %d as %s: %v", i, who.Name, err)
		}
		if who.Name == "alice" {
			aliceIDs = append([]string{resp.GetBatch().GetId()}, aliceIDs...) // newest first
		}
	}
	up.add(&batchv1.Batch{Id: "batch_outside", Status: batchv1.BatchStatus_BATCH_STATUS_COMPLETED})

	// Pages of 3 of alice's batches, through the upstream's pages of 100.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := svc.ListBatches(as(alice), &batchv1.ListBatchesRequest{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.GetBatches() {
			if ownership.Owner(b) != "alice" {
				t.Fatalf("alice sees %s of %q", b.GetId(), ownership.Owner(b))
			}
			got = append(got, b.GetId())
		}
		if !page.GetHasMore() {
			break
		}
		if pages > 10 || page.GetLastId() == "" {
			t.Fatalf("paging does not end: %+v", page)
		}
		after = page.GetLastId()
	}
	if strings.Join(got, " ") != strings.Join(aliceIDs, " ") {
		t.Fatalf("alice's pages %v, want %v", got, aliceIDs)
	}
	all, err := svc.ListBatches(as(ops), &batchv1.ListBatchesRequest{Limit: 100})
	if err != nil || len(all.GetBatches()) != 24 {
		t.Fatalf("ops sees %d batches, %v; want 24", len(all.GetBatches()), err)
	}

	mine, theirs := aliceIDs[0], ""
	for _, b := range up.batches {
		if ownership.Owner(b) == "bob" {
			theirs = b.GetId()
			break
		}
	}
	ctx := as(alice)
	notFound := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.NotFound {
			t.Errorf("%s: %v, want NotFound", what, err)
		}
	}
	_, err = svc.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: theirs})
	notFound("get another's", err)
	_, err = svc.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: "batch_outside"})
	notFound("get one made outside", err)
	_, err = svc.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: theirs})
	notFound("cancel another's", err)
	if len(up.cancels) != 0 || len(p.ids) != 0 {
		t.Fatalf("a refused cancel reached the upstream: %v, pokes %v", up.cancels, p.ids)
	}
	if _, err := svc.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: mine}); err != nil {
		t.Errorf("get own: %v", err)
	}
	if _, err := svc.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: mine}); err != nil || len(p.ids) != 1 || p.ids[0] != mine {
		t.Errorf("cancel own: %v, pokes %v", err, p.ids)
	}
	if _, err := svc.GetBatch(as(ops), &batchv1.GetBatchRequest{BatchId: theirs}); err != nil {
		t.Errorf("ops get: %v", err)
	}
	_, err = svc.CancelBatch(as(ops), &batchv1.CancelBatchRequest{BatchId: theirs})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("a read-only token cancelled: %v", err)
	}
	// Another's file cannot seed a batch.
	req := validCreate()
	req.InputFileId = fileOf(t, svc, bob)
	if _, err := svc.CreateBatch(ctx, req); status.Code(err) != codes.InvalidArgument {
		t.Errorf("create from another's file: %v", err)
	}
	files := svc.Files()
	if _, err := files.GetFile(ctx, &batchv1.GetFileRequest{FileId: fileOf(t, svc, bob)}); status.Code(err) != codes.NotFound {
		t.Errorf("get another's file: %v", err)
	}
	if _, err := files.GetFile(ctx, &batchv1.GetFileRequest{FileId: fileOf(t, svc, alice)}); err != nil {
		t.Errorf("get own file: %v", err)
	}
}

// uploaded files per caller, for fileOf.
var fileOwners sync.Map // caller name -> file id

func upload(t *testing.T, svc *service.Service, c callinfo.Caller, name, data string) *batchv1.File {
	t.Helper()
	st := &uploadStream{ctx: as(c), msgs: []*batchv1.UploadFileRequest{
		{Part: &batchv1.UploadFileRequest_Metadata{Metadata: &batchv1.UploadFileMetadata{Filename: name, Purpose: "batch"}}},
		{Part: &batchv1.UploadFileRequest_Chunk{Chunk: []byte(data)}},
	}}
	if err := svc.Files().UploadFile(st); err != nil {
		t.Fatalf("upload as %s: %v", c.Name, err)
	}
	fileOwners.Store(c.Name+fmt.Sprintf("%p", svc), st.resp.GetId())
	return st.resp
}

func fileOf(t *testing.T, svc *service.Service, c callinfo.Caller) string {
	t.Helper()
	if id, ok := fileOwners.Load(c.Name + fmt.Sprintf("%p", svc)); ok {
		return id.(string)
	}
	return upload(t, svc, c, c.Name+".jsonl", "{}\n").GetId()
}

// uploadStream is an UploadFile client stream of fixed messages.
type uploadStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*batchv1.UploadFileRequest
	resp *batchv1.File
}

func (u *uploadStream) Context() context.Context { return u.ctx }
func (u *uploadStream) Recv() (*batchv1.UploadFileRequest, error) {
	if len(u.msgs) == 0 {
		return nil, io.EOF
	}
	m := u.msgs[0]
	u.msgs = u.msgs[1:]
	return m, nil
}
func (u *uploadStream) SendAndClose(f *batchv1.File) error { u.resp = f; return nil }

func TestUploadFile(t *testing.T) {
	t.Parallel()
	meta := func(name, purpose string) *batchv1.UploadFileRequest {
		return &batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Metadata{Metadata: &batchv1.UploadFileMetadata{Filename: name, Purpose: purpose}}}
	}
	chunk := func(n int) *batchv1.UploadFileRequest {
		return &batchv1.UploadFileRequest{Part: &batchv1.UploadFileRequest_Chunk{Chunk: make([]byte, n)}}
	}
	tests := []struct {
		name   string
		caller callinfo.Caller
		msgs   []*batchv1.UploadFileRequest
		want   codes.Code
		bytes  int64
	}{
		{"ok", alice, []*batchv1.UploadFileRequest{meta("a.jsonl", "batch"), chunk(10), chunk(20)}, codes.OK, 30},
		{"empty file", alice, []*batchv1.UploadFileRequest{meta("a.jsonl", "batch")}, codes.OK, 0},
		{"chunk first", alice, []*batchv1.UploadFileRequest{chunk(10)}, codes.InvalidArgument, 0},
		{"nothing", alice, nil, codes.InvalidArgument, 0},
		{"other purpose", alice, []*batchv1.UploadFileRequest{meta("a.jsonl", "fine-tune"), chunk(10)}, codes.InvalidArgument, 0},
		{"no filename", alice, []*batchv1.UploadFileRequest{meta("", "batch")}, codes.InvalidArgument, 0},
		{"slash in filename", alice, []*batchv1.UploadFileRequest{meta("../a", "batch")}, codes.InvalidArgument, 0},
		{"metadata twice", alice, []*batchv1.UploadFileRequest{meta("a", "batch"), meta("b", "batch")}, codes.InvalidArgument, 0},
		{"too large", alice, []*batchv1.UploadFileRequest{meta("a.jsonl", "batch"), chunk(600), chunk(600)}, codes.InvalidArgument, 0},
		{"read-only token", callinfo.Caller{Name: "r", Scopes: callinfo.ScopeRead}, []*batchv1.UploadFileRequest{meta("a.jsonl", "batch")}, codes.PermissionDenied, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newFakeUp()
			hub := newFakeHub(t, func(k watch.Key) (*batchv1.Batch, error) { return up.get(k.BatchID) })
			svc := service.New(hub, service.Options{Upstream: up, MaxUploadBytes: 1000, Caller: func(ctx context.Context) callinfo.Caller {
				return ctx.Value(callerKey{}).(callinfo.Caller)
			}})
			st := &uploadStream{ctx: as(tt.caller), msgs: tt.msgs}
			err := svc.Files().UploadFile(st)
			if status.Code(err) != tt.want {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if tt.want == codes.OK && st.resp.GetBytes() != tt.bytes {
				t.Fatalf("uploaded %d bytes, want %d", st.resp.GetBytes(), tt.bytes)
			}
			if tt.want != codes.OK && len(up.files) != 0 {
				t.Fatalf("a refused upload left a file")
			}
		})
	}
}

// resultsStream records what StreamBatchResults sends.
type resultsStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*batchv1.BatchResult
}

func (r *resultsStream) Context() context.Context { return r.ctx }
func (r *resultsStream) Send(m *batchv1.BatchResult) error {
	r.sent = append(r.sent, m)
	return nil
}

func TestStreamBatchResults(t *testing.T) {
	t.Parallel()
	up := newFakeUp()
	up.files["file_out"] = []byte(`{"id":"r1","custom_id":"a","response":{"status_code":200,"request_id":"q1","body":{"ok":true}},"error":null}` + "\n" +
		"not json\n\n" +
		`{"id":"r3","custom_id":"c","response":{"status_code":200,"request_id":"q3","body":{}},"error":null}` + "\n")
	up.files["file_err"] = []byte(`{"id":"r2","custom_id":"b","response":null,"error":{"code":"boom","message":"failed"}}`)
	done := &batchv1.Batch{Id: "batch_done", Status: batchv1.BatchStatus_BATCH_STATUS_COMPLETED, UpstreamStatus: "completed",
		OutputFileId: new("file_out"), ErrorFileId: new("file_err")}
	up.add(done)
	up.add(&batchv1.Batch{Id: "batch_running", Status: batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, UpstreamStatus: "in_progress"})
	svc := newLifecycle(t, up, nil)
	all := callinfo.Caller{Name: "x", Scopes: callinfo.Unrestricted}
	summary := func(rs []*batchv1.BatchResult) string {
		var parts []string
		for _, r := range rs {
			s := fmt.Sprintf("%s:%d:%s", strings.TrimPrefix(r.GetKind().String(), "RESULT_KIND_"), r.GetLine(), r.GetCustomId())
			if r.GetParseError() != "" {
				s += ":raw=" + string(r.GetRaw())
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " ")
	}
	tests := []struct {
		name string
		req  *batchv1.StreamBatchResultsRequest
		want string
		code codes.Code
	}{
		{"all", &batchv1.StreamBatchResultsRequest{BatchId: "batch_done"}, "OUTPUT:1:a OUTPUT:2::raw=not json OUTPUT:3:c ERRORS:1:b", codes.OK},
		{"output", &batchv1.StreamBatchResultsRequest{BatchId: "batch_done", Kind: batchv1.ResultKind_RESULT_KIND_OUTPUT}, "OUTPUT:1:a OUTPUT:2::raw=not json OUTPUT:3:c", codes.OK},
		{"errors", &batchv1.StreamBatchResultsRequest{BatchId: "batch_done", Kind: batchv1.ResultKind_RESULT_KIND_ERRORS}, "ERRORS:1:b", codes.OK},
		{"resumed at the stream's third line", &batchv1.StreamBatchResultsRequest{BatchId: "batch_done", StartLine: 3}, "OUTPUT:3:c ERRORS:1:b", codes.OK},
		{"resumed past the end", &batchv1.StreamBatchResultsRequest{BatchId: "batch_done", StartLine: 9}, "", codes.OK},
		{"still running", &batchv1.StreamBatchResultsRequest{BatchId: "batch_running"}, "", codes.FailedPrecondition},
		{"unknown batch", &batchv1.StreamBatchResultsRequest{BatchId: "batch_nope"}, "", codes.NotFound},
		{"bad kind", &batchv1.StreamBatchResultsRequest{BatchId: "batch_done", Kind: 9}, "", codes.InvalidArgument},
		{"negative start", &batchv1.StreamBatchResultsRequest{BatchId: "batch_done", StartLine: -1}, "", codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := &resultsStream{ctx: as(all)}
			err := svc.StreamBatchResults(tt.req, rs)
			if status.Code(err) != tt.code {
				t.Fatalf("err %v, want %v", err, tt.code)
			}
			if got := summary(rs.sent); got != tt.want {
				t.Fatalf("sent %q, want %q", got, tt.want)
			}
		})
	}
	// Another caller's batch is not found, not refused.
	rs := &resultsStream{ctx: as(alice)}
	if err := svc.StreamBatchResults(&batchv1.StreamBatchResultsRequest{BatchId: "batch_done"}, rs); status.Code(err) != codes.NotFound {
		t.Fatalf("alice reads a batch made outside: %v", err)
	}
}
