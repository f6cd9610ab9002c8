package gateway_test

import (
	"testing"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// TestCreateStartsNoPoller: creating, listing and reading a batch's
// results start no shared poller (only watches do), and a watch's poller
// is the only one the hub runs.
func TestCreateStartsNoPoller(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := lcStart(t, clk)
	ctx := t.Context()
	f := lcUpload(ctx, t, e, "in.jsonl", lcInput(lcCustomIDs...), 64)
	b := lcCreate(ctx, t, e, f.GetId())
	if _, err := e.Client.ListBatches(ctx, &batchv1.ListBatchesRequest{Limit: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: b.GetId()}); err != nil {
		t.Fatal(err)
	}
	if st := e.GW.HubStats(); st.Pollers != 0 || st.Watchers != 0 {
		t.Fatalf("after create, list and get: %d pollers, %d watchers; want none", st.Pollers, st.Watchers)
	}
	stream, err := e.Client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: b.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if st := e.GW.HubStats(); st.Pollers != 1 || st.Watchers != 1 {
		t.Fatalf("with one watch: %d pollers, %d watchers; want 1 and 1", st.Pollers, st.Watchers)
	}
}
