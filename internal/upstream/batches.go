package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// CreateBatch creates a batch: POST {BaseURL}/v1/batches with req as its
// JSON body, and returns the batch the upstream answers with (status
// "validating").
//
// It makes exactly one attempt, whatever the failure: a create is not safe
// to repeat, since one that failed ambiguously may still have created a
// batch. Classify(err).MayHaveApplied says whether it may have; the caller
// decides what to do about it. Errors:
//   - an error, before any request, when ctx carries a key from
//     WithAPIKey that holds control characters;
//   - *Error for a non-2xx answer (408, 409, 429 and 5xx included);
//   - ErrMalformedResponse or ErrResponseTooLarge (wrapped) for a bad 2xx
//     body;
//   - ErrUnreachable or ErrTimeout (wrapped) when the attempt failed to
//     connect, broke or timed out;
//   - an error wrapping ctx.Err() when the caller's context ended first.
func (c *Client) CreateBatch(ctx context.Context, req wire.CreateBatchRequest) (*batchv1.Batch, error) {
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		// Cannot happen for the request's types.
		return nil, noEffect(fmt.Errorf("upstream: encoding the create request: %w", err))
	}
	r := &request{op: "CreateBatch", method: http.MethodPost, url: c.apiURL("batches", "", "", ""), body: body, once: true}
	answer, err := c.fetch(ctx, r, key)
	if err != nil {
		return nil, err
	}
	return wire.DecodeBatch(answer)
}

// ListBatches fetches one page of batches, newest first:
// GET {BaseURL}/v1/batches?after={after}&limit={limit}. An empty after
// starts from the newest batch; a limit of zero or less sends none (the
// upstream's default page size, 20). The page's last_id is the after of the
// next page while has_more is true.
//
// after, when not empty, is checked with ValidateBatchID before any
// network call. It is retried like GetBatch, and its errors are GetBatch's
// (ErrMalformedResponse when an item of the list has no id).
func (c *Client) ListBatches(ctx context.Context, after string, limit int) (*batchv1.ListBatchesResponse, error) {
	if after != "" {
		if err := ValidateBatchID(after); err != nil {
			return nil, err
		}
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	q := pageQuery(after, limit)
	body, err := c.fetch(ctx, &request{op: "ListBatches", method: http.MethodGet, url: c.apiURL("batches", "", "", q)}, key)
	if err != nil {
		return nil, err
	}
	return wire.DecodeBatchList(body)
}

// CancelBatch asks the upstream to cancel a batch:
// POST {BaseURL}/v1/batches/{batchID}/cancel, without a body. The answer is
// the batch, "cancelling" (then "cancelled"), or as it was when it had
// already ended.
//
// Cancelling is idempotent, so unlike CreateBatch it is retried like
// GetBatch, and its errors are GetBatch's (ErrInvalidBatchID before any
// request for a bad id; ErrMalformedResponse for an answer about another
// batch).
func (c *Client) CancelBatch(ctx context.Context, batchID string) (*batchv1.Batch, error) {
	if err := ValidateBatchID(batchID); err != nil {
		return nil, err
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	body, err := c.fetch(ctx, &request{op: "CancelBatch", method: http.MethodPost, url: c.apiURL("batches", batchID, "cancel", "")}, key)
	if err != nil {
		return nil, err
	}
	return decodeBatchFor(body, batchID)
}

// pageQuery returns the encoded query of a list call: after when not
// empty, limit when positive, and extra's pairs when their value is not
// empty (extra holds name, value, name, value...).
func pageQuery(after string, limit int, extra ...string) string {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] != "" {
			q.Set(extra[i], extra[i+1])
		}
	}
	return q.Encode()
}
