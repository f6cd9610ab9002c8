package watch_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/watch"
	"github.com/batchgate/batchgate/internal/wire"
)

// scriptedUpstream stands in for the upstream client: each call returns the
// next state of one batch, then repeats the last.
type scriptedUpstream struct {
	mu    sync.Mutex
	calls int
}

func (u *scriptedUpstream) GetBatch(_ context.Context, id string) (*batchv1.Batch, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	states := []struct {
		status batchv1.BatchStatus
		done   int64
	}{
		{batchv1.BatchStatus_BATCH_STATUS_VALIDATING, 0},
		{batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, 0},
		{batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, 0}, // unchanged: nobody is woken
		{batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, 6},
		{batchv1.BatchStatus_BATCH_STATUS_FINALIZING, 10},
		{batchv1.BatchStatus_BATCH_STATUS_COMPLETED, 10},
	}
	s := states[min(u.calls, len(states)-1)]
	u.calls++
	return &batchv1.Batch{
		Id:            id,
		Status:        s.status,
		RequestCounts: &batchv1.RequestCounts{Total: 10, Completed: s.done},
	}, nil
}

// The loop a WatchBatch handler runs on a subscription: a snapshot first,
// then one event per change, ending after the terminal batch or with the
// error that ended the subscription. Heartbeats would be one more select
// case. Changes a slow stream misses are conflated: it skips to the newest
// batch, so only the snapshot and the terminal event are printed here.
func Example() {
	hub := watch.New(&scriptedUpstream{}, watch.Options{PollInterval: 10 * time.Millisecond})
	defer hub.Close()

	ctx := context.Background()
	sub, err := hub.Subscribe(ctx, watch.Key{BatchID: "batch_01abc"})
	if err != nil {
		fmt.Println("fail the RPC before any event:", err) // apierr.FromError(err)
		return
	}
	defer sub.Close()

	send := func(kind string, b *batchv1.Batch) {
		if kind == "CHANGE" && !wire.IsTerminal(b) {
			return // sent on a real stream; how many depends on timing
		}
		fmt.Printf("%s %s %d/%d terminal=%t\n", kind, b.GetStatus(),
			b.GetRequestCounts().GetCompleted(), b.GetRequestCounts().GetTotal(), wire.IsTerminal(b))
	}

	last := sub.Current()
	send("SNAPSHOT", last)
	for !wire.IsTerminal(last) {
		select {
		case <-sub.Updates():
			last, _ = sub.Latest()
			send("CHANGE", last)
		case <-sub.Done():
			if b, _ := sub.Latest(); b != last {
				last = b
				send("CHANGE", last)
			}
			if err := sub.Err(); err != nil {
				fmt.Println("end the stream with", err)
				return
			}
		case <-ctx.Done():
			return
		}
	}
	fmt.Println("end the stream with OK")
	// Output:
	// SNAPSHOT BATCH_STATUS_VALIDATING 0/10 terminal=false
	// CHANGE BATCH_STATUS_COMPLETED 10/10 terminal=true
	// end the stream with OK
}
