package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/ownership"
	"github.com/batchgate/batchgate/internal/upstream"
	"github.com/batchgate/batchgate/internal/wire"
)

// Upstream is what the lifecycle calls need of the upstream beyond the
// hub's reads. *upstream.Client satisfies it.
type Upstream interface {
	CreateBatch(ctx context.Context, req wire.CreateBatchRequest) (*batchv1.Batch, error)
	ListBatches(ctx context.Context, after string, limit int) (*batchv1.ListBatchesResponse, error)
	CancelBatch(ctx context.Context, id string) (*batchv1.Batch, error)
	UploadFile(ctx context.Context, filename, purpose string, content io.Reader) (*batchv1.File, error)
	GetFile(ctx context.Context, id string) (*batchv1.File, error)
	ListFiles(ctx context.Context, after string, limit int, purpose string) (*batchv1.ListFilesResponse, error)
	DeleteFile(ctx context.Context, id string) (*batchv1.DeleteFileResponse, error)
	FileContent(ctx context.Context, id string) (io.ReadCloser, error)
}

// Poker makes a batch's pollers poll at once. *watch.Hub satisfies it.
type Poker interface {
	PokeBatch(batchID string) int
}

// IdempotencyHeader is the metadata key (and, over REST, the header) of a
// create's idempotency key when the request field is empty.
const IdempotencyHeader = "idempotency-key"

// Limits of the lifecycle calls' input.
const (
	maxMetadataPairs  = 16
	maxMetadataKey    = 64
	maxMetadataValue  = 512
	maxIdempotencyKey = 128
	defaultListLimit  = 20
	maxListLimit      = 100
	// idempotencyWindow is how long a repeated create with the same key
	// returns the first batch.
	idempotencyWindow = 24 * time.Hour
	// maxScanPages bounds the upstream pages one filtered list or one
	// search for a tagged batch reads (of 100 batches each).
	maxScanPages = 50
	// createAttempts bounds the upstream creates of one CreateBatch.
	createAttempts = 3
)

// endpoints are the batch endpoints the upstream accepts.
var endpoints = map[string]bool{
	"/v1/chat/completions": true,
	"/v1/responses":        true,
	"/v1/embeddings":       true,
	"/v1/completions":      true,
	"/v1/moderations":      true,
}

// caller returns the call's caller: the Caller option's, or an
// unrestricted one without it.
func (s *Service) caller(ctx context.Context) callinfo.Caller {
	if s.callerOf == nil {
		return callinfo.Caller{Scopes: callinfo.Unrestricted}
	}
	return s.callerOf(ctx)
}

// need fails unless the caller's scopes hold scope.
func need(c callinfo.Caller, scope callinfo.Scopes) error {
	if c.Scopes.Has(scope) {
		return nil
	}
	return apierr.MissingScope(scope.String()).Err()
}

// lifecycle fails with UNIMPLEMENTED when the service has no Upstream.
func (s *Service) lifecycle() error {
	if s.up == nil {
		return status.Error(codes.Unimplemented, "the lifecycle calls are not configured")
	}
	return nil
}

// CreateBatch validates the request, tags it with its idempotency key (and,
// for restricted callers, their name), and creates the batch upstream: at
// most createAttempts times, and after a failure that may have created it
// only once a search for the tag found nothing. A repeated key within 24
// hours returns the first batch. It starts no poller.
func (s *Service) CreateBatch(ctx context.Context, req *batchv1.CreateBatchRequest) (*batchv1.CreateBatchResponse, error) {
	if err := s.lifecycle(); err != nil {
		return nil, err
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeWrite); err != nil {
		return nil, err
	}
	body, key, callerKey, err := s.createRequest(ctx, c, req)
	if err != nil {
		return nil, err
	}
	if ownership.Restricted(c) && !s.files.CanSee(c, req.GetInputFileId()) {
		return nil, apierr.Invalid("input_file_id", apierr.CodeInvalidValue, "No file found with id '"+req.GetInputFileId()+"'.").Err()
	}
	owner := body.Metadata[ownership.MetaCaller]
	if callerKey {
		if b, err := s.findCreated(ctx, owner, key, s.now().Add(-idempotencyWindow)); err != nil {
			return nil, s.fail(ctx, "create batch", "", err)
		} else if b != nil {
			return &batchv1.CreateBatchResponse{Batch: b}, nil
		}
	}
	b, err := s.create(ctx, body, owner, key)
	if err != nil {
		return nil, s.fail(ctx, "create batch", "", err)
	}
	s.created.remember(owner, key, b.GetId(), s.now())
	s.files.AddBatch(b)
	return &batchv1.CreateBatchResponse{Batch: b}, nil
}

// createRequest validates req and returns the upstream body with the
// reserved metadata, the idempotency key, and whether the caller chose it.
func (s *Service) createRequest(ctx context.Context, c callinfo.Caller, req *batchv1.CreateBatchRequest) (wire.CreateBatchRequest, string, bool, error) {
	var body wire.CreateBatchRequest
	if req.GetInputFileId() == "" {
		return body, "", false, apierr.Invalid("input_file_id", apierr.CodeMissingParameter, "input_file_id is required").Err()
	}
	if err := upstream.ValidateFileID(req.GetInputFileId()); err != nil {
		return body, "", false, apierr.Invalid("input_file_id", apierr.CodeInvalidFileID, err.Error()).Err()
	}
	switch {
	case req.GetEndpoint() == "":
		return body, "", false, apierr.Invalid("endpoint", apierr.CodeMissingParameter, "endpoint is required").Err()
	case !endpoints[req.GetEndpoint()]:
		return body, "", false, apierr.Invalid("endpoint", apierr.CodeInvalidValue,
			"endpoint must be one of /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/completions, /v1/moderations").Err()
	case req.GetCompletionWindow() == "":
		return body, "", false, apierr.Invalid("completion_window", apierr.CodeMissingParameter, "completion_window is required").Err()
	case req.GetCompletionWindow() != "24h":
		return body, "", false, apierr.Invalid("completion_window", apierr.CodeInvalidValue, "completion_window must be 24h").Err()
	}
	key, callerKey := req.GetIdempotencyKey(), true
	if key == "" {
		if v := metadata.ValueFromIncomingContext(ctx, IdempotencyHeader); len(v) > 0 {
			key = v[0]
		}
	}
	if key == "" {
		key, callerKey = newIdempotencyKey(), false
	}
	if len(key) > maxIdempotencyKey || !printableASCII(key) {
		return body, "", false, apierr.Invalid("idempotency_key", apierr.CodeInvalidValue,
			"the idempotency key must be 1 to "+strconv.Itoa(maxIdempotencyKey)+" printable ASCII characters").Err()
	}
	md := map[string]string{ownership.MetaIdempotencyKey: key}
	if ownership.Restricted(c) {
		md[ownership.MetaCaller] = c.Name
	}
	for k, v := range req.GetMetadata() {
		switch {
		case ownership.IsReserved(k):
			return body, "", false, apierr.Invalid("metadata", apierr.CodeInvalidValue, "metadata keys starting with "+ownership.ReservedPrefix+" are reserved for the gateway").Err()
		case k == "" || utf8.RuneCountInString(k) > maxMetadataKey:
			return body, "", false, apierr.Invalid("metadata", apierr.CodeInvalidValue, "metadata keys must be 1 to 64 characters").Err()
		case utf8.RuneCountInString(v) > maxMetadataValue:
			return body, "", false, apierr.Invalid("metadata", apierr.CodeInvalidValue, "metadata values must be at most 512 characters").Err()
		}
		md[k] = v
	}
	if len(md) > maxMetadataPairs {
		return body, "", false, apierr.Invalid("metadata", apierr.CodeInvalidValue, fmt.Sprintf(
			"at most %d metadata pairs, the gateway's %d included", maxMetadataPairs, len(md)-len(req.GetMetadata()))).Err()
	}
	body = wire.CreateBatchRequest{
		InputFileID:      req.GetInputFileId(),
		Endpoint:         req.GetEndpoint(),
		CompletionWindow: req.GetCompletionWindow(),
		Metadata:         md,
	}
	if oe := req.GetOutputExpiresAfter(); oe != nil {
		if oe.GetAnchor() != "created_at" || oe.GetSeconds() < 3600 || oe.GetSeconds() > 2_592_000 {
			return body, "", false, apierr.Invalid("output_expires_after", apierr.CodeInvalidValue,
				"output_expires_after needs anchor created_at and 3600 to 2592000 seconds").Err()
		}
		body.OutputExpiresAfter = &wire.OutputExpiresAfter{Anchor: oe.GetAnchor(), Seconds: wire.Int(oe.GetSeconds())}
	}
	return body, key, callerKey, nil
}

// create makes the batch upstream. A failure that cannot have created it
// is retried when retryable; one that may have (a timeout, a reset, a
// 5xx) is retried only after a search for the tag found nothing.
func (s *Service) create(ctx context.Context, body wire.CreateBatchRequest, owner, key string) (*batchv1.Batch, error) {
	start := s.now().Add(-time.Minute) // the upstream's clock may differ a little
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = s.createBackoff
	for attempt := 1; ; attempt++ {
		b, err := s.up.CreateBatch(ctx, body)
		if err == nil {
			return b, nil
		}
		o := upstream.Classify(err)
		if o.MayHaveApplied {
			found, ferr := s.findCreated(ctx, owner, key, start)
			if ferr != nil {
				return nil, err // the create's own failure says more
			}
			if found != nil {
				s.log.InfoContext(ctx, "create failed ambiguously; found the batch it made", "batch_id", found.GetId())
				return found, nil
			}
		} else if !o.Retryable {
			return nil, err
		}
		if attempt >= createAttempts || ctx.Err() != nil {
			return nil, err
		}
		t := time.NewTimer(bo.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// findCreated returns the batch tagged with key (and made by owner) created
// since since, or nil: first from the record of this process's creates,
// then by reading the upstream's list, newest first.
func (s *Service) findCreated(ctx context.Context, owner, key string, since time.Time) (*batchv1.Batch, error) {
	if id, ok := s.created.lookup(owner, key, s.now()); ok {
		b, err := s.hub.Get(ctx, s.key(ctx, id))
		if err == nil {
			return b, nil
		}
		if apierr.FromError(err).Code() != codes.NotFound { // gone from the cache: look upstream
			return nil, err
		}
	}
	after := ""
	for range maxScanPages {
		page, err := s.up.ListBatches(ctx, after, maxListLimit)
		if err != nil {
			return nil, err
		}
		for _, b := range page.GetBatches() {
			md := b.GetMetadata().GetPairs()
			if md[ownership.MetaIdempotencyKey] == key && ownership.Owner(b) == owner {
				return b, nil
			}
			if b.CreatedAt != nil && time.Unix(b.GetCreatedAt(), 0).Before(since) {
				return nil, nil
			}
		}
		if !page.GetHasMore() || len(page.GetBatches()) == 0 {
			return nil, nil
		}
		after = page.GetBatches()[len(page.GetBatches())-1].GetId()
	}
	return nil, nil
}

// ListBatches returns one page of batches. Unrestricted callers get the
// upstream's page; the others a page of their own batches, gathered by
// filterPages from as many upstream pages as it takes, with has_more and
// last_id such that paging by after stays exact.
func (s *Service) ListBatches(ctx context.Context, req *batchv1.ListBatchesRequest) (*batchv1.ListBatchesResponse, error) {
	if err := s.lifecycle(); err != nil {
		return nil, err
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeRead); err != nil {
		return nil, err
	}
	limit, err := listLimit(req.GetLimit(), maxListLimit)
	if err != nil {
		return nil, err
	}
	if a := req.GetAfter(); a != "" {
		if err := upstream.ValidateBatchID(a); err != nil {
			return nil, apierr.Invalid("after", apierr.CodeInvalidValue, "after must be a batch id").Err()
		}
	}
	if !ownership.Restricted(c) {
		page, err := s.up.ListBatches(ctx, req.GetAfter(), limit)
		if err != nil {
			return nil, s.fail(ctx, "list batches", "", err)
		}
		return page, nil
	}
	p, err := filterPages(ctx, req.GetAfter(), limit,
		func(b *batchv1.Batch) bool {
			if !ownership.CanSee(c, b) {
				return false
			}
			s.files.AddBatch(b)
			return true
		},
		func(ctx context.Context, after string) ([]*batchv1.Batch, bool, error) {
			page, err := s.up.ListBatches(ctx, after, maxListLimit)
			return page.GetBatches(), page.GetHasMore(), err
		})
	if err != nil {
		return nil, s.fail(ctx, "list batches", "", err)
	}
	return &batchv1.ListBatchesResponse{Batches: p.items, FirstId: p.firstID, LastId: p.lastID, HasMore: p.hasMore}, nil
}

// listLimit checks a page size: 0 is the default, else 1 to max.
func listLimit(limit int32, max int) (int, error) {
	switch {
	case limit == 0:
		return min(defaultListLimit, max), nil
	case limit < 1 || int(limit) > max:
		return 0, apierr.Invalid("limit", apierr.CodeInvalidValue, "limit must be between 1 and "+strconv.Itoa(max)).Err()
	}
	return int(limit), nil
}

// CancelBatch cancels a batch the caller may reach and pokes its pollers.
func (s *Service) CancelBatch(ctx context.Context, req *batchv1.CancelBatchRequest) (*batchv1.CancelBatchResponse, error) {
	if err := s.lifecycle(); err != nil {
		return nil, err
	}
	c := s.caller(ctx)
	if err := need(c, callinfo.ScopeWrite); err != nil {
		return nil, err
	}
	id := req.GetBatchId()
	if err := upstream.ValidateBatchID(id); err != nil {
		return nil, apierr.FromError(err).Err()
	}
	if ownership.Restricted(c) {
		if _, err := s.ownBatch(ctx, c, id); err != nil {
			return nil, err
		}
	}
	b, err := s.up.CancelBatch(ctx, id)
	if err != nil {
		return nil, s.fail(ctx, "cancel batch", id, err)
	}
	if s.poker != nil {
		s.poker.PokeBatch(id)
	}
	return &batchv1.CancelBatchResponse{Batch: b}, nil
}

// ownBatch fetches batch id for c and fails with NOT_FOUND, as for a batch
// that does not exist, when c may not reach it.
func (s *Service) ownBatch(ctx context.Context, c callinfo.Caller, id string) (*batchv1.Batch, error) {
	b, err := s.hub.Get(ctx, s.key(ctx, id))
	if err != nil {
		return nil, s.fail(ctx, "get batch", id, err)
	}
	if !ownership.CanSee(c, b) {
		return nil, apierr.NotFound("batch", id).Err()
	}
	s.files.AddBatch(b)
	return b, nil
}

// newIdempotencyKey returns a random key for a create whose caller chose
// none.
func newIdempotencyKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "bg_" + hex.EncodeToString(b[:])
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// createdRecord remembers this process's recent creates by owner and
// idempotency key, so that a repeated create finds its batch without
// reading the upstream's list. Bounded: the oldest go first.
type createdRecord struct {
	mu    sync.Mutex
	byKey map[string]createdEntry
}

type createdEntry struct {
	id string
	at time.Time
}

const maxCreatedRecord = 10_000

func (r *createdRecord) remember(owner, key, id string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey = make(map[string]createdEntry)
	}
	if len(r.byKey) >= maxCreatedRecord {
		oldest, at := "", now
		for k, e := range r.byKey {
			if now.Sub(e.at) > idempotencyWindow {
				delete(r.byKey, k)
			} else if e.at.Before(at) {
				oldest, at = k, e.at
			}
		}
		if len(r.byKey) >= maxCreatedRecord {
			delete(r.byKey, oldest)
		}
	}
	r.byKey[owner+"\x00"+key] = createdEntry{id: id, at: now}
}

func (r *createdRecord) lookup(owner, key string, now time.Time) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byKey[owner+"\x00"+key]
	if !ok || now.Sub(e.at) > idempotencyWindow {
		return "", false
	}
	return e.id, true
}
