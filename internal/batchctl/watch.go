package batchctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

func setupWatch(*flag.FlagSet) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		if len(args) == 0 {
			return usagef("watch wants at least one batch id")
		}
		return e.watch(ctx, args)
	}
}

// tracked is what the watch knows of one batch. The renderers read it
// under watcher.mu.
type tracked struct {
	id    string
	b     *batchv1.Batch // nil until the first snapshot
	err   string         // why the batch can no longer be watched (an ERROR event)
	ended bool           // its last event came: terminal, or an ERROR

	start, endAt time.Time // the watch's start; when the last event came
	// The rate is measured from the first sample with requests done (t0,
	// d0) to the latest change (t1, d1).
	t0, t1  time.Time
	d0, d1  int64
	sampled bool
}

// done is the requests finished, failed or not.
func (t *tracked) done() int64 {
	rc := t.b.GetRequestCounts()
	return rc.GetCompleted() + rc.GetFailed()
}

// observe records b, seen at now.
func (t *tracked) observe(b *batchv1.Batch, now time.Time) {
	running := b.GetStatus() == batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS &&
		t.b.GetStatus() != batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS
	t.b = b
	d := t.done()
	switch {
	case !t.sampled, running: // the rate counts from the start of in_progress as seen
		t.t0, t.d0, t.t1, t.d1, t.sampled = now, d, now, d, true
	case d != t.d1:
		t.t1, t.d1 = now, d
	}
}

// rate is requests per second from the observed changes; 0 when unknown.
func (t *tracked) rate() float64 {
	if secs := t.t1.Sub(t.t0).Seconds(); t.sampled && secs > 0 && t.d1 > t.d0 {
		return float64(t.d1-t.d0) / secs
	}
	return 0
}

// eta is how long until every request is done at the observed rate,
// counted down from the last change; ok is false when it is unknown.
func (t *tracked) eta(now time.Time) (time.Duration, bool) {
	r := t.rate()
	left := t.b.GetRequestCounts().GetTotal() - t.done()
	if r <= 0 || left <= 0 || t.ended {
		return 0, false
	}
	eta := time.Duration(float64(left)/r*float64(time.Second)) - now.Sub(t.t1)
	return max(eta, 0), true
}

// elapsed is the time watched, until the last event.
func (t *tracked) elapsed(now time.Time) time.Duration {
	if t.ended {
		now = t.endAt
	}
	return now.Sub(t.start)
}

// completed reports whether the batch ended completed.
func (t *tracked) completed() bool {
	return t.ended && t.err == "" && t.b.GetStatus() == batchv1.BatchStatus_BATCH_STATUS_COMPLETED
}

// statusText is the batch's status, "error" after an ERROR event, or
// "waiting" before the first snapshot.
func (t *tracked) statusText() string {
	switch {
	case t.err != "":
		return "error"
	case t.b == nil:
		return "waiting"
	}
	return statusOf(t.b)
}

// countsText is "done/total" with the failed requests apart.
func (t *tracked) countsText() string {
	rc := t.b.GetRequestCounts()
	total := fmt.Sprint(rc.GetTotal())
	s := fmt.Sprintf("%*d/%s", len(total), t.done(), total)
	if rc.GetTotal() > 0 {
		s += fmt.Sprintf(" %3d%%", t.done()*100/rc.GetTotal())
	} else {
		s += "     "
	}
	return s + fmt.Sprintf("  %*d failed", len(total), rc.GetFailed())
}

func (t *tracked) rateText() string {
	switch r := t.rate(); {
	case r <= 0:
		return "-/s"
	case r < 10:
		return fmt.Sprintf("%.1f/s", r)
	default:
		return fmt.Sprintf("%.0f/s", r)
	}
}

func (t *tracked) etaText(now time.Time) string {
	if d, ok := t.eta(now); ok {
		return "ETA " + fmtDur(d)
	}
	return "ETA -"
}

// fmtDur formats d to the second: 9s, 3m05s, 2h03m.
func fmtDur(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// renderer shows a watch: update after every event of a batch (under
// watcher.mu), finish once at the end (not under it).
type renderer interface {
	update(t *tracked, ev *batchv1.WatchBatchesResponse)
	finish(interrupted bool)
}

// watcher follows batches on one WatchBatches stream.
type watcher struct {
	e     *env
	mu    sync.Mutex
	list  []*tracked
	byID  map[string]*tracked
	width int // the longest id, for the columns
	r     renderer
}

// maxRetries is how many times in a row a broken stream is reopened.
const maxRetries = 5

// watch follows ids until every batch has ended, showing them as the
// output and format say, and returns nil when every batch completed.
func (e *env) watch(ctx context.Context, ids []string) error {
	w := &watcher{e: e, byID: make(map[string]*tracked)}
	start := e.now()
	for _, id := range ids {
		if w.byID[id] != nil {
			continue
		}
		t := &tracked{id: id, start: start}
		w.list = append(w.list, t)
		w.byID[id] = t
		w.width = max(w.width, len(id))
	}
	switch {
	case e.json():
		w.r = &jsonRenderer{w: w}
	case e.terminal:
		w.r = newBarRenderer(w)
	default:
		w.r = &plainRenderer{w: w}
	}
	err := w.follow(ctx)
	interrupted := ctx.Err() != nil
	if err != nil && !interrupted {
		if _, ok := w.r.(*jsonRenderer); !ok {
			w.r.finish(false)
		}
		return err
	}
	w.r.finish(interrupted)
	if interrupted {
		fmt.Fprintln(e.stderr, "batchctl: stopped watching; the batches go on")
		return exitError{ExitInterrupted}
	}
	for _, t := range w.list {
		if !t.completed() {
			return exitError{ExitFailed}
		}
	}
	return nil
}

// follow reads the stream, reopening it for the batches not ended yet when
// it breaks after events came, until every batch has ended.
func (w *watcher) follow(ctx context.Context) error {
	retries, wait := 0, 500*time.Millisecond
	for {
		var open []string
		for _, t := range w.list {
			if !t.ended {
				open = append(open, t.id)
			}
		}
		if len(open) == 0 {
			return nil
		}
		got, err := w.stream(ctx, open)
		switch {
		case err == nil && got:
			continue // ended OK: every batch had its last event
		case err == nil:
			return errors.New("the watch stream ended without an event")
		case ctx.Err() != nil:
			return ctx.Err()
		case !got && retries == 0, status.Code(err) != codes.Unavailable, retries >= maxRetries:
			return err
		}
		if got {
			retries, wait = 0, 500*time.Millisecond
		}
		retries++
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// stream reads one WatchBatches stream of ids to its end; got reports
// whether any event came.
func (w *watcher) stream(ctx context.Context, ids []string) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := w.e.batches().WatchBatches(ctx, &batchv1.WatchBatchesRequest{BatchIds: ids})
	if err != nil {
		return false, err
	}
	for {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = true
		w.event(ev)
	}
}

func (w *watcher) event(ev *batchv1.WatchBatchesResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.byID[ev.GetBatchId()]
	if t == nil || t.ended {
		return // a heartbeat, or an id not asked for
	}
	now := w.e.now()
	switch ev.GetType() {
	case batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE:
		t.observe(ev.GetBatch(), now)
	case batchv1.WatchEventType_WATCH_EVENT_TYPE_ERROR:
		t.err = cmpOr(ev.GetError().GetMessage(), "cannot be watched")
	default:
		return
	}
	if ev.GetTerminal() || t.err != "" {
		t.ended, t.endAt = true, now
	}
	w.r.update(t, ev)
}

// summary writes the end of a watch in text.
func (w *watcher) summary(out io.Writer, interrupted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.e.now()
	counts := map[string]int{}
	var order []string
	for _, t := range w.list {
		s := t.statusText()
		if !t.ended {
			s = "still " + s
		}
		if counts[s] == 0 {
			order = append(order, s)
		}
		counts[s]++
	}
	var parts []string
	for _, s := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	noun := "batches"
	if len(w.list) == 1 {
		noun = "batch"
	}
	head := "summary"
	if interrupted {
		head = "stopped watching"
	}
	fmt.Fprintf(out, "%s: %d %s: %s\n", head, len(w.list), noun, strings.Join(parts, ", "))
	for _, t := range w.list {
		fmt.Fprintf(out, "  %-*s  %-11s  ", w.width, t.id, t.statusText())
		switch {
		case t.err != "":
			fmt.Fprintf(out, "%s\n", t.err)
			continue
		case t.b != nil:
			fmt.Fprintf(out, "%s  elapsed %s", t.countsText(), fmtDur(t.elapsed(now)))
		}
		for _, be := range t.b.GetErrors().GetData() {
			fmt.Fprintf(out, "\n  %-*s  %s: %s", w.width, "", be.GetCode(), be.GetMessage())
		}
		fmt.Fprintln(out)
	}
}

// plainRenderer writes one line per change of a batch's status or counts,
// for a pipe or a log.
type plainRenderer struct {
	w    *watcher
	last map[string]string
}

func (p *plainRenderer) update(t *tracked, _ *batchv1.WatchBatchesResponse) {
	if p.last == nil {
		p.last = make(map[string]string)
	}
	now := p.w.e.now()
	var key, line string
	if t.err != "" {
		key = "error"
		line = fmt.Sprintf("%-*s  error        %s", p.w.width, t.id, t.err)
	} else {
		key = t.statusText() + " " + t.countsText()
		line = fmt.Sprintf("%-*s  %-11s  %s  %s  %s  elapsed %s", p.w.width, t.id, t.statusText(),
			t.countsText(), t.rateText(), t.etaText(now), fmtDur(t.elapsed(now)))
	}
	if p.last[t.id] == key {
		return
	}
	p.last[t.id] = key
	fmt.Fprintln(p.w.e.stdout, line)
}

func (p *plainRenderer) finish(interrupted bool) { p.w.summary(p.w.e.stdout, interrupted) }

// jsonRenderer writes one object per event, then a summary object.
type jsonRenderer struct{ w *watcher }

// watchEventJSON is one line of `watch -o json`.
type watchEventJSON struct {
	Type       string          `json:"type"` // snapshot, change, error or summary
	BatchID    string          `json:"batch_id,omitempty"`
	Terminal   bool            `json:"terminal,omitempty"`
	ObservedAt int64           `json:"observed_at_unix_ms,omitempty"`
	Tag        string          `json:"tag,omitempty"`
	Batch      json.RawMessage `json:"batch,omitempty"` // the REST batch object
	Error      *watchErrorJSON `json:"error,omitempty"`
	// On the summary: each batch's end, and the exit status.
	Batches  []summaryJSON `json:"batches,omitempty"`
	ExitCode *int          `json:"exit_code,omitempty"`
}

type watchErrorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type summaryJSON struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Ended     bool   `json:"ended"`
	Total     int64  `json:"total"`
	Completed int64  `json:"completed"`
	Failed    int64  `json:"failed"`
	Error     string `json:"error,omitempty"`
}

func (j *jsonRenderer) update(t *tracked, ev *batchv1.WatchBatchesResponse) {
	out := watchEventJSON{
		Type:       strings.ToLower(strings.TrimPrefix(ev.GetType().String(), "WATCH_EVENT_TYPE_")),
		BatchID:    t.id,
		Terminal:   ev.GetTerminal(),
		ObservedAt: ev.GetObservedAtUnixMs(),
		Tag:        ev.GetTag(),
	}
	if ev.GetBatch() != nil {
		data, err := wire.MarshalBatch(ev.GetBatch())
		if err == nil {
			out.Batch = data
		}
	}
	if we := ev.GetError(); we != nil {
		out.Error = &watchErrorJSON{Code: cmpOr(we.GetErrorCode(), codes.Code(we.GetCode()).String()), Message: we.GetMessage()}
	}
	j.write(out)
}

func (j *jsonRenderer) write(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	fmt.Fprintf(j.w.e.stdout, "%s\n", data)
}

func (j *jsonRenderer) finish(interrupted bool) {
	j.w.mu.Lock()
	defer j.w.mu.Unlock()
	code := ExitOK
	var list []summaryJSON
	for _, t := range j.w.list {
		rc := t.b.GetRequestCounts()
		list = append(list, summaryJSON{ID: t.id, Status: t.statusText(), Ended: t.ended,
			Total: rc.GetTotal(), Completed: rc.GetCompleted(), Failed: rc.GetFailed(), Error: t.err})
		if !t.completed() {
			code = ExitFailed
		}
	}
	if interrupted {
		code = ExitInterrupted
	}
	j.write(watchEventJSON{Type: "summary", Batches: list, ExitCode: &code})
}
