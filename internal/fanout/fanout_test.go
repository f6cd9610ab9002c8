package fanout

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

func sampleBatch(id string) *batchv1.Batch {
	return &batchv1.Batch{
		Id: id, Object: "batch", Endpoint: "/v1/chat/completions",
		Status: batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, UpstreamStatus: "in_progress",
		InputFileId: "file_in", CompletionWindow: "24h",
		RequestCounts: &batchv1.RequestCounts{Total: 1000, Completed: 420, Failed: 17},
		CreatedAt:     proto.Int64(1710000000), InProgressAt: proto.Int64(1710000060),
		Errors: &batchv1.BatchErrors{Object: "list", Data: []*batchv1.BatchError{{Code: "x", Message: "y", Line: proto.Int64(3)}}},
	}
}

func codec() Codec { return Codec{encoding.GetCodecV2(grpcproto.Name)} }

// TestEventEncoding: an Event's wire bytes are exactly proto.Marshal's for
// the same message, for every combination of set and unset fields.
func TestEventEncoding(t *testing.T) {
	t.Parallel()
	withMeta := sampleBatch("batch_meta")
	withMeta.Metadata = &batchv1.Metadata{Pairs: map[string]string{"a": "1", "b": "2"}}
	tests := []struct {
		name string
		msg  *batchv1.WatchBatchResponse
	}{
		{"empty", &batchv1.WatchBatchResponse{}},
		{"heartbeat", &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Sequence: 7, ObservedAtUnixMs: 1710000000123}},
		{"snapshot", &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, Batch: sampleBatch("batch_a"), Sequence: 1, ObservedAtUnixMs: 1}},
		{"terminal change", &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE, Batch: sampleBatch("batch_b"), Terminal: true, Sequence: 1 << 40, ObservedAtUnixMs: -5}},
		{"empty batch", &batchv1.WatchBatchResponse{Batch: &batchv1.Batch{}}},
		{"batch with a map", &batchv1.WatchBatchResponse{Batch: withMeta, Sequence: 2}},
	}
	var c Cache
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := c.NewEvent(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := codec().Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			got := bs.Materialize()
			var back batchv1.WatchBatchResponse
			if err := proto.Unmarshal(got, &back); err != nil {
				t.Fatalf("the event's bytes do not decode: %v", err)
			}
			if !proto.Equal(&back, tt.msg) {
				t.Errorf("decoded %v, want %v", &back, tt.msg)
			}
			if tt.msg.GetBatch().GetMetadata() == nil { // no map: encoding is deterministic
				want, err := proto.Marshal(tt.msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("bytes %x, want proto.Marshal's %x", got, want)
				}
			}
			if ev.Message() != tt.msg {
				t.Error("Message() is not the wrapped message")
			}
		})
	}
}

// TestCacheEncodesOnce: every event of one batch shares one encoding.
func TestCacheEncodesOnce(t *testing.T) {
	t.Parallel()
	var c Cache
	b := sampleBatch("batch_once")
	first, err := c.Bytes(b)
	if err != nil {
		t.Fatal(err)
	}
	for seq := range uint64(100) {
		ev, err := c.NewEvent(&batchv1.WatchBatchResponse{Batch: b, Sequence: seq + 1})
		if err != nil {
			t.Fatal(err)
		}
		if &ev.batch.b[0] != &first[0] {
			t.Fatal("an event re-encoded the batch")
		}
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
}

// TestCacheForgetsCollectedBatches: an encoding is dropped once its batch
// is unreachable, so the cache does not grow with every state.
func TestCacheForgetsCollectedBatches(t *testing.T) {
	t.Parallel()
	var c Cache
	for i := range 50 {
		if _, err := c.Bytes(sampleBatch("batch_" + string(rune('a'+i%26)))); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		runtime.GC()
		if c.Len() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
	t.Errorf("Len = %d after the batches were collected, want 0", c.Len())
}

// TestCodecFallsBack: messages other than Events use the proto codec.
func TestCodecFallsBack(t *testing.T) {
	t.Parallel()
	msg := &batchv1.GetBatchResponse{Batch: sampleBatch("batch_x")}
	bs, err := codec().Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := proto.Marshal(msg)
	if !bytes.Equal(bs.Materialize(), want) {
		t.Error("a plain message was not encoded by the proto codec")
	}
}

// BenchmarkFanOut is the cost per watcher of sending one changed batch to
// 1,000 watchers: "proto" encodes the whole event for each (what the
// standard codec does), "cached" encodes the batch once and each event's
// few own bytes.
func BenchmarkFanOut(b *testing.B) {
	const watchers = 1000
	cd := codec()
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			batch := sampleBatch("batch_bench")
			for w := range uint64(watchers) {
				bs, err := cd.Marshal(&batchv1.WatchBatchResponse{Type: 2, Batch: batch, Sequence: w, ObservedAtUnixMs: 1710000000123})
				if err != nil {
					b.Fatal(err)
				}
				bs.Free()
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*watchers), "ns/watcher")
	})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		var c Cache
		for b.Loop() {
			batch := sampleBatch("batch_bench")
			for w := range uint64(watchers) {
				ev, err := c.NewEvent(&batchv1.WatchBatchResponse{Type: 2, Batch: batch, Sequence: w, ObservedAtUnixMs: 1710000000123})
				if err != nil {
					b.Fatal(err)
				}
				bs, err := cd.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				bs.Free()
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*watchers), "ns/watcher")
	})
}
