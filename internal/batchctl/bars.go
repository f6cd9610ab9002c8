package batchctl

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// barStyle draws done requests as '=', the failed ones among them as 'x'
// (mpb's refill), from the left.
func barStyle() mpb.BarStyleComposer {
	return mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Refiller("x").Rbound("]")
}

// barRenderer redraws one line per batch in place on a terminal, with mpb.
type barRenderer struct {
	w    *watcher
	p    *mpb.Progress
	bars map[string]*mpb.Bar
	// views are the batches as last updated, one copy each, which the
	// decorators read (without the watcher's lock: update holds it).
	views map[string]*atomic.Pointer[tracked]
	// updates go to the bars in order from one goroutine: mpb's calls wait
	// for its render loop.
	updates chan barUpdate
	drained chan struct{}
}

type barUpdate struct {
	bar                 *mpb.Bar
	total, done, failed int64
	ended, completedOK  bool
}

func newBarRenderer(w *watcher) *barRenderer {
	r := &barRenderer{w: w, bars: make(map[string]*mpb.Bar), views: make(map[string]*atomic.Pointer[tracked]), updates: make(chan barUpdate, 256), drained: make(chan struct{})}
	// The container has a context of its own: an interrupted watch still
	// draws its last state before the summary.
	r.p = mpb.NewWithContext(context.Background(), mpb.WithOutput(w.e.stdout), mpb.WithWidth(30))
	for _, t := range w.list {
		view := new(atomic.Pointer[tracked])
		view.Store(new(*t))
		r.views[t.id] = view
		// Made with total 0 the bar completes only when told to: a batch
		// whose requests are all done may still be finalizing.
		r.bars[t.id] = r.p.New(0, barStyle(),
			mpb.PrependDecorators(
				decor.Name(t.id, decor.WC{W: w.width + 1, C: decor.DindentRight}),
				text(view, func(t *tracked) string { return t.statusText() }, 14),
			),
			mpb.AppendDecorators(
				text(view, func(t *tracked) string {
					if t.err != "" {
						return t.err
					}
					now := w.e.now()
					return fmt.Sprintf("%s  %s  %s  elapsed %s", t.countsText(), t.rateText(), t.etaText(now), fmtDur(t.elapsed(now)))
				}, 0),
			),
		)
	}
	go r.drain()
	return r
}

// text is a decorator showing f of the batch's view, at least width wide.
func text(view *atomic.Pointer[tracked], f func(*tracked) string, width int) decor.Decorator {
	return decor.Any(func(decor.Statistics) string {
		return " " + f(view.Load()) + " "
	}, decor.WC{W: width, C: decor.DSyncWidthR})
}

func (r *barRenderer) update(t *tracked, _ *batchv1.WatchBatchesResponse) {
	r.views[t.id].Store(new(*t))
	rc := t.b.GetRequestCounts()
	r.updates <- barUpdate{bar: r.bars[t.id], total: rc.GetTotal(), done: t.done(), failed: rc.GetFailed(),
		ended: t.ended, completedOK: t.completed()}
}

func (r *barRenderer) drain() {
	defer close(r.drained)
	for u := range r.updates {
		u.bar.SetTotal(u.total, false)
		u.bar.SetCurrent(u.done)
		u.bar.SetRefill(u.failed)
		switch {
		case u.completedOK:
			u.bar.SetTotal(u.total, true)
		case u.ended:
			u.bar.Abort(false)
		}
	}
}

func (r *barRenderer) finish(interrupted bool) {
	close(r.updates)
	<-r.drained
	// Bars not ended (an interrupted or broken watch) stop as they are.
	for _, b := range r.bars {
		b.Abort(false)
	}
	r.p.Wait()
	r.w.summary(r.w.e.stdout, interrupted)
}
