// Package upstream is the gateway's client for the OpenAI-compatible REST
// batch API it fronts, and the only code that speaks to it over HTTP. A
// Client makes the API's calls (batches: GetBatch, CreateBatch,
// ListBatches, CancelBatch; files: UploadFile, GetFile, ListFiles,
// DeleteFile, FileContent), retries the ones that are safe to repeat with
// bounded, jittered backoff, never repeats CreateBatch and UploadFile,
// decodes answers tolerantly with package wire into the generated batchv1
// messages, and reports failures as *Error (non-2xx answers) or errors
// wrapping the sentinels in error.go. Classify says what a failure means,
// including whether a call that is not safe to repeat may have taken
// effect.
//
// Errors returned by this package never contain the API key, request
// bodies or response bodies, and nothing is logged but one debug line per
// retry.
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/batchgate/batchgate/internal/wire"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAttemptTimeout = 10 * time.Second
	DefaultMaxAttempts    = 3
	DefaultInitialBackoff = 250 * time.Millisecond
	DefaultMaxBackoff     = 8 * time.Second
	DefaultMaxRetryAfter  = 60 * time.Second
	DefaultMaxBodyBytes   = 4 << 20
	DefaultUserAgent      = "batchgate"
)

// Config configures a Client. Zero values get the defaults shown.
type Config struct {
	// BaseURL is the upstream's absolute http or https URL, for example
	// "https://api.token360.ai". It may carry a path prefix ("/proxy");
	// trailing slashes are ignored. It must not carry a query, fragment or
	// user info. Required.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>", except on calls
	// whose context carries a key from WithAPIKey. It never appears in
	// errors or logs.
	APIKey string
	// HTTPClient makes the requests. Default: a client with its own tuned
	// *http.Transport (100 idle connections per host), no overall Timeout
	// (AttemptTimeout bounds each attempt) and redirects not followed (a 3xx
	// answer is returned as *Error). A caller-supplied client is used as is.
	HTTPClient *http.Client
	// AttemptTimeout bounds each attempt, body included. Default 10s.
	AttemptTimeout time.Duration
	// MaxAttempts is the number of attempts, the first included. Default 3
	// (one try and two retries, like the OpenAI SDKs).
	MaxAttempts int
	// InitialBackoff is the base wait before the first retry; it doubles
	// each retry, with ±50% jitter. Default 250ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the (pre-jitter) backoff interval. Default 8s.
	MaxBackoff time.Duration
	// MaxRetryAfter caps an honoured Retry-After / Retry-After-Ms. Default
	// 60s.
	MaxRetryAfter time.Duration
	// MaxBodyBytes caps a 2xx response body; a larger one fails with
	// ErrResponseTooLarge. Default 4 MiB.
	MaxBodyBytes int64
	// UserAgent is sent as User-Agent. Default "batchgate".
	UserAgent string
	// Logger receives one debug line per retry (no secrets, no bodies).
	// Default: discards everything.
	Logger *slog.Logger
}

// Client calls the upstream batch API. It is safe for concurrent use.
type Client struct {
	cfg  Config  // with defaults applied
	base url.URL // scheme, host and path prefix without trailing slash
	hc   *http.Client
	log  *slog.Logger

	// wait sleeps for d or until ctx is done; tests replace it.
	wait func(ctx context.Context, d time.Duration) error
	// ownKey is Config.APIKey as a callKey, for calls without WithAPIKey.
	ownKey callKey

	requests    atomic.Uint64
	retries     atomic.Uint64
	rateLimited atomic.Uint64
}

// Stats are a Client's cumulative counters, for metrics.
type Stats struct {
	// Requests is the number of HTTP requests sent (attempts).
	Requests uint64
	// Retries is the number of attempts after the first, summed over calls.
	Retries uint64
	// RateLimited is the number of 429 answers received.
	RateLimited uint64
}

// New returns a Client for cfg, applying defaults to zero fields. It fails
// if BaseURL is not an absolute http(s) URL without query, fragment and user
// info, if a duration, count or size is negative, or if APIKey or UserAgent
// holds characters not allowed in an HTTP header.
func New(cfg Config) (*Client, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if strings.ContainsFunc(cfg.APIKey, isCTL) {
		return nil, errors.New("upstream: config: APIKey contains control characters")
	}
	if strings.ContainsFunc(cfg.UserAgent, isCTL) {
		return nil, errors.New("upstream: config: UserAgent contains control characters")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"AttemptTimeout", cfg.AttemptTimeout},
		{"InitialBackoff", cfg.InitialBackoff},
		{"MaxBackoff", cfg.MaxBackoff},
		{"MaxRetryAfter", cfg.MaxRetryAfter},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("upstream: config: %s is negative", d.name)
		}
	}
	if cfg.MaxAttempts < 0 {
		return nil, errors.New("upstream: config: MaxAttempts is negative")
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errors.New("upstream: config: MaxBodyBytes is negative")
	}

	setDefault(&cfg.AttemptTimeout, DefaultAttemptTimeout)
	setDefault(&cfg.MaxAttempts, DefaultMaxAttempts)
	setDefault(&cfg.InitialBackoff, DefaultInitialBackoff)
	setDefault(&cfg.MaxBackoff, DefaultMaxBackoff)
	setDefault(&cfg.MaxRetryAfter, DefaultMaxRetryAfter)
	setDefault(&cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&cfg.UserAgent, DefaultUserAgent)
	if cfg.MaxBackoff < cfg.InitialBackoff {
		cfg.MaxBackoff = cfg.InitialBackoff
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = DefaultHTTPClient()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:    cfg,
		base:   *base,
		hc:     cfg.HTTPClient,
		log:    cfg.Logger,
		wait:   sleepCtx,
		ownKey: callKey{key: cfg.APIKey, secrets: []string{cfg.APIKey}},
	}, nil
}

// GetBatch fetches one batch: GET {BaseURL}/v1/batches/{batchID}.
//
// batchID is checked with ValidateBatchID before any network call. Errors:
//   - ErrInvalidBatchID (wrapped) for a bad id;
//   - an error, before any request, when ctx carries a key from WithAPIKey
//     that holds control characters;
//   - *Error for a non-2xx answer (after retries, for 408, 409, 429, 5xx);
//   - ErrMalformedResponse or ErrResponseTooLarge (wrapped) for a bad 2xx
//     body (including one for another batch id), not retried;
//   - ErrUnreachable or ErrTimeout (wrapped) when the last attempt failed
//     to connect or timed out;
//   - an error wrapping ctx.Err() when the caller's context ended first.
func (c *Client) GetBatch(ctx context.Context, batchID string) (*batchv1.Batch, error) {
	if err := ValidateBatchID(batchID); err != nil {
		return nil, err
	}
	key, err := c.keyFor(ctx)
	if err != nil {
		return nil, err
	}
	body, err := c.fetch(ctx, &request{op: "GetBatch", method: http.MethodGet, url: c.batchURL(batchID)}, key)
	if err != nil {
		return nil, err
	}
	return decodeBatchFor(body, batchID)
}

// decodeBatchFor decodes body, the answer of a call about batch id, which
// must be that batch.
func decodeBatchFor(body []byte, id string) (*batchv1.Batch, error) {
	b, err := wire.DecodeBatch(body)
	if err != nil {
		return nil, err
	}
	if b.GetId() != id {
		// Another batch than the one asked for: never pass it on (or
		// cache it) as this one.
		return nil, fmt.Errorf("%w: the answer is for another batch id", ErrMalformedResponse)
	}
	return b, nil
}

// apiKeyKey is the context key of WithAPIKey.
type apiKeyKey struct{}

// WithAPIKey returns a copy of ctx that makes the Client's calls under it
// send key ("Authorization: Bearer <key>") instead of Config.APIKey. This
// is how the gateway forwards a caller's own credential upstream. An empty
// key sends no Authorization header at all (it never falls back to
// Config.APIKey). Errors of such calls are redacted of both keys.
//
// A key holding control characters makes the call fail before any request
// is sent.
func WithAPIKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, apiKeyKey{}, key)
}

// WithAPIKeyFrom returns a copy of dst that carries the key src carries
// from WithAPIKey, if any, and dst itself otherwise: how a task that
// outlives the call that started it (a shared poller) keeps that call's
// credential, and nothing else of its context, without the key ever
// leaving this package.
func WithAPIKeyFrom(dst, src context.Context) context.Context {
	if k, ok := src.Value(apiKeyKey{}).(string); ok {
		return WithAPIKey(dst, k)
	}
	return dst
}

// callKey is the credential of one call: the key it sends and the secrets
// its errors are redacted of.
type callKey struct {
	key     string   // sent as Bearer; "" sends no Authorization
	secrets []string // every key that must not appear in an error
}

// keyFor returns the key for a call made under ctx: the one attached by
// WithAPIKey, or else Config.APIKey.
func (c *Client) keyFor(ctx context.Context) (callKey, error) {
	k, ok := ctx.Value(apiKeyKey{}).(string)
	if !ok {
		return c.ownKey, nil
	}
	if strings.ContainsFunc(k, isCTL) {
		return callKey{}, noEffect(errors.New("upstream: the call's API key contains control characters"))
	}
	secrets := []string{k, c.cfg.APIKey}
	if len(c.cfg.APIKey) > len(k) {
		// Longest first, so that a key inside the other is not redacted
		// piecemeal.
		secrets[0], secrets[1] = secrets[1], secrets[0]
	}
	return callKey{key: k, secrets: secrets}, nil
}

// Stats returns the Client's counters so far.
func (c *Client) Stats() Stats {
	return Stats{
		Requests:    c.requests.Load(),
		Retries:     c.retries.Load(),
		RateLimited: c.rateLimited.Load(),
	}
}

// batchURL returns the URL of one batch. id must have passed
// ValidateBatchID; it is path-escaped anyway.
func (c *Client) batchURL(id string) string {
	return c.apiURL("batches", id, "", "")
}

// apiURL returns the URL {BaseURL}/v1/{collection}[/{id}[/{action}]] with
// the base path prefix, and query (already encoded) when not empty.
// collection and action are fixed names; id must have passed
// ValidateBatchID or ValidateFileID and is path-escaped anyway.
func (c *Client) apiURL(collection, id, action, query string) string {
	u := c.base
	u.Path = joinAPIPath(c.base.Path, collection, id, action)
	if c.base.RawPath != "" {
		u.RawPath = joinAPIPath(c.base.RawPath, collection, url.PathEscape(id), action)
	}
	u.RawQuery = query
	return u.String()
}

// joinAPIPath joins prefix, "/v1/", collection and, when not empty, id and
// action with one concatenation.
func joinAPIPath(prefix, collection, id, action string) string {
	switch {
	case id == "":
		return prefix + "/v1/" + collection
	case action == "":
		return prefix + "/v1/" + collection + "/" + id
	default:
		return prefix + "/v1/" + collection + "/" + id + "/" + action
	}
}

// attempt makes one request of r with key. On a 2xx answer it returns the
// body (at most MaxBodyBytes). Otherwise it returns *Error (non-2xx), an
// error wrapping ErrResponseTooLarge, or a *transportError (classified by
// the retry loop).
func (c *Client) attempt(ctx context.Context, r *request, key callKey) ([]byte, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	return c.sendRead(ctx, r.method, r.url, body, jsonType, key)
}

// sendRead sends one request (see send) and returns its 2xx body (at most
// MaxBodyBytes), or *Error for another status; the response is drained
// and closed either way.
func (c *Client) sendRead(ctx context.Context, method, u string, body io.Reader, contentType string, key callKey) ([]byte, error) {
	resp, err := c.send(ctx, method, u, body, contentType, jsonType, key) //nolint:bodyclose // closed by drainClose below
	if err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.statusError(resp, key)
	}
	return c.readBody(resp.Body)
}

// jsonType is the media type of the upstream's JSON bodies.
const jsonType = "application/json"

// send makes one HTTP request with key and returns the response, whatever
// its status; the caller closes its body. body, when not nil, is sent as
// contentType. A failure to get a response is a *transportError, except
// for a request that cannot be built.
func (c *Client) send(ctx context.Context, method, u string, body io.Reader, contentType, accept string, key callKey) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		// Cannot happen for URLs built by apiURL; not retryable.
		return nil, noEffect(fmt.Errorf("upstream: building request: %w", err))
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if key.key != "" {
		req.Header.Set("Authorization", "Bearer "+key.key)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	c.requests.Add(1)
	resp, err := c.hc.Do(req) //nolint:bodyclose // the caller closes it
	if err != nil {
		return nil, &transportError{err}
	}
	return resp, nil
}

// statusError returns the *Error for resp, a non-2xx answer, reading (at
// most maxErrorBodyBytes of) its body for the error envelope. It does not
// close the body.
func (c *Client) statusError(resp *http.Response, key callKey) *Error {
	if resp.StatusCode == http.StatusTooManyRequests {
		c.rateLimited.Add(1)
	}
	limit := min(c.cfg.MaxBodyBytes, maxErrorBodyBytes)
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		body = nil // status only
	}
	return newStatusError(resp.StatusCode, resp.Header, body, time.Now(), c.cfg.MaxRetryAfter, key.secrets...)
}

// readBody reads a 2xx body whole, at most MaxBodyBytes: more is an error
// wrapping ErrResponseTooLarge, a failure to read it a *transportError.
func (c *Client) readBody(body io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, &transportError{err}
	}
	if int64(len(b)) > c.cfg.MaxBodyBytes {
		return nil, fmt.Errorf("%w (limit %d bytes)", ErrResponseTooLarge, c.cfg.MaxBodyBytes)
	}
	return b, nil
}

// transportError marks a failure to get a complete answer: connection
// refused or reset, EOF mid-body, a timeout. It is internal to the retry
// loop, which turns it into ErrUnreachable, ErrTimeout or the caller's
// context error.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// maxDrainBytes bounds how much of an unread body is discarded so that its
// connection can be reused; beyond that the connection is simply closed.
const maxDrainBytes = 64 << 10

func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrainBytes)
	_ = body.Close()
}

func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("upstream: config: BaseURL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("upstream: config: BaseURL is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("upstream: config: BaseURL must be an absolute http or https URL")
	case u.Host == "" || u.Opaque != "":
		return nil, errors.New("upstream: config: BaseURL has no host")
	case u.User != nil:
		return nil, errors.New("upstream: config: BaseURL must not carry user info; use APIKey")
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "#"):
		return nil, errors.New("upstream: config: BaseURL must not carry a query or fragment")
	}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host}
	base.Path = strings.TrimRight(u.Path, "/")
	if u.RawPath != "" {
		base.RawPath = strings.TrimRight(u.RawPath, "/")
	}
	return base, nil
}

// DefaultHTTPClient returns a new instance of the client New uses when
// Config.HTTPClient is nil: a transport tuned for many calls to one host,
// no overall timeout (each attempt has its own), and redirects returned
// rather than followed. Wrap its Transport to instrument it.
func DefaultHTTPClient() *http.Client {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	t.MaxIdleConns = 100
	t.MaxIdleConnsPerHost = 100
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

func isCTL(r rune) bool { return r < 0x20 || r == 0x7f }
