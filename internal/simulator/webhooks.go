package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchgate/batchgate/internal/webhook"
)

// Defaults of the webhook sender.
const (
	// DefaultWebhookScan is Options.WebhookScan when it is not set.
	DefaultWebhookScan = 100 * time.Millisecond
	// webhookAttempts bounds the attempts of one delivery.
	webhookAttempts = 5
	// webhookQueue bounds the deliveries waiting to be sent; more are
	// dropped (and counted).
	webhookQueue = 16384
	// webhookSenders is how many deliveries are sent at once.
	webhookSenders = 8
)

// delivery is one webhook to send.
type delivery struct {
	msgID string
	body  []byte
}

// hooks sends the simulator's webhooks: a scanner notices batches' terminal
// transitions on the simulator's clock, senders POST them.
type hooks struct {
	url     string
	key     []byte
	client  *http.Client
	base    time.Duration // first retry wait
	queue   chan delivery
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	last    map[*entry]string // status at the previous scan
	started uint64            // the last seq inserted before the scanner started
	sent    atomic.Int64      // deliveries answered 2xx
	failed  atomic.Int64      // deliveries given up or dropped
}

// startHooks starts the webhook sender of opts, if it has a URL.
func (s *Simulator) startHooks(opts Options) {
	if opts.WebhookURL == "" {
		return
	}
	key, err := webhook.ParseSecret(opts.WebhookSecret)
	if err != nil {
		panic("simulator: Options.WebhookSecret: " + err.Error())
	}
	h := &hooks{
		url:    opts.WebhookURL,
		key:    key,
		client: opts.WebhookClient,
		base:   opts.WebhookRetryWait,
		queue:  make(chan delivery, webhookQueue),
		last:   make(map[*entry]string),
	}
	if h.client == nil {
		h.client = &http.Client{Timeout: 10 * time.Second}
	}
	if h.base <= 0 {
		h.base = 200 * time.Millisecond
	}
	scan := opts.WebhookScan
	if scan <= 0 {
		scan = DefaultWebhookScan
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	s.hooks = h
	s.mu.Lock()
	h.started = s.seq
	s.scanLocked(s.now()) // what is terminal already sends nothing
	s.mu.Unlock()
	h.wg.Add(1 + webhookSenders)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(scan)
		defer t.Stop()
		for {
			select {
			case <-h.ctx.Done():
				return
			case <-t.C:
				s.mu.Lock()
				s.scanLocked(s.now())
				s.mu.Unlock()
			}
		}
	}()
	for range webhookSenders {
		go func() {
			defer h.wg.Done()
			for {
				select {
				case <-h.ctx.Done():
					return
				case d := <-h.queue:
					h.send(d)
				}
			}
		}()
	}
}

// eventTypes maps the terminal statuses to their event types.
var eventTypes = map[string]string{
	StatusCompleted: "batch.completed",
	StatusFailed:    "batch.failed",
	StatusExpired:   "batch.expired",
	StatusCancelled: "batch.cancelled",
}

// scanLocked queues a webhook for each batch that became terminal since
// the previous scan (or, inserted after the sender started, is first seen
// terminal). s.mu must be held.
func (s *Simulator) scanLocked(now time.Time) {
	h := s.hooks
	for _, e := range s.byID {
		prev, seen := h.last[e]
		if seen && isTerminal(prev) && !e.cycles {
			continue // static and ended: it never changes again
		}
		st := e.view(now, s.phase).Status
		h.last[e] = st
		if !isTerminal(st) || (seen && isTerminal(prev)) || (!seen && e.seq <= h.started) {
			continue
		}
		s.queueHookLocked(e.b.ID, eventTypes[st], now)
	}
	if len(h.last) > 2*len(s.byID)+64 {
		for e := range h.last {
			if s.byID[e.b.ID] != e {
				delete(h.last, e)
			}
		}
	}
}

// queueHookLocked queues the event typ of batch id, created at now.
func (s *Simulator) queueHookLocked(id, typ string, now time.Time) {
	body, _ := json.Marshal(webhook.Event{
		ID: "evt_" + randomHex(12), Object: "event", Type: typ, CreatedAt: now.Unix(),
		Data: webhook.EventData{ID: id},
	})
	select {
	case s.hooks.queue <- delivery{msgID: "msg_" + randomHex(12), body: body}:
	default:
		s.hooks.failed.Add(1)
	}
}

// send delivers d, retrying with exponential backoff until a 2xx, the
// attempts run out or the sender stops. Each attempt is signed anew with
// the wall-clock time (the receiver's tolerance is about wall time, not
// the simulator's clock); the webhook id stays, for deduplication.
func (h *hooks) send(d delivery) {
	wait := h.base
	for attempt := 1; ; attempt++ {
		if h.attempt(d) {
			h.sent.Add(1)
			return
		}
		if attempt == webhookAttempts {
			h.failed.Add(1)
			return
		}
		select {
		case <-h.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// attempt makes one POST of d and reports whether it was answered 2xx.
func (h *hooks) attempt(d delivery) bool {
	req, err := http.NewRequestWithContext(h.ctx, http.MethodPost, h.url, bytes.NewReader(d.body))
	if err != nil {
		return false
	}
	for k, v := range webhook.Headers(h.key, d.msgID, time.Now(), d.body) {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// WebhooksSent returns how many webhooks were delivered (answered 2xx),
// and how many were given up after their last attempt or dropped from a
// full queue.
func (s *Simulator) WebhooksSent() (sent, failed int64) {
	if s.hooks == nil {
		return 0, 0
	}
	return s.hooks.sent.Load(), s.hooks.failed.Load()
}

// Close stops the webhook sender, if any, and waits for it: deliveries
// not sent yet are dropped. The simulator still serves requests.
// Idempotent.
func (s *Simulator) Close() {
	if s.hooks == nil {
		return
	}
	s.hooks.cancel()
	s.hooks.wg.Wait()
}
