package fanout

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
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
// the same message, for every combination of set and unset fields, the tag
// included (the batch's own, shared, or any other).
func TestEventEncoding(t *testing.T) {
	t.Parallel()
	withMeta := sampleBatch("batch_meta")
	withMeta.Metadata = &batchv1.Metadata{Pairs: map[string]string{"a": "1", "b": "2"}}
	tagged := sampleBatch("batch_tagged")
	long := string(bytes.Repeat([]byte("t"), 300)) // a two-byte length
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
		{"tagged snapshot", &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, Batch: tagged, Sequence: 1, ObservedAtUnixMs: 1710000000123, Tag: wire.Tag(tagged)}},
		{"tagged terminal change", &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE, Batch: tagged, Terminal: true, Sequence: 1 << 40, ObservedAtUnixMs: -5, Tag: wire.Tag(tagged)}},
		{"tag not the batch's", &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE, Batch: sampleBatch("batch_c"), Sequence: 3, Tag: "other"}},
		{"long tag", &batchv1.WatchBatchResponse{Batch: sampleBatch("batch_d"), Tag: long}},
		{"tag without batch", &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Sequence: 9, Tag: "bt1_x"}},
		{"tag only", &batchv1.WatchBatchResponse{Tag: "x"}},
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

// TestCacheTag: Cache.Tag is wire.Tag, computed once per batch, and every
// event carrying it shares one encoding of the tag field.
func TestCacheTag(t *testing.T) {
	t.Parallel()
	var c Cache
	b := sampleBatch("batch_tag")
	tag := c.Tag(b)
	if tag != wire.Tag(b) || tag == "" {
		t.Fatalf("Tag = %q, want wire.Tag's %q", tag, wire.Tag(b))
	}
	if c.Tag(nil) != "" {
		t.Error("Tag(nil) is not empty")
	}
	var shared *byte
	for seq := range uint64(10) {
		ev, err := c.NewEvent(&batchv1.WatchBatchResponse{Batch: b, Sequence: seq + 1, Tag: c.Tag(b)})
		if err != nil {
			t.Fatal(err)
		}
		if ev.tag != tagShared {
			t.Fatal("the event does not send the batch's shared tag field")
		}
		bs := ev.buffers()
		first := &bs[len(bs)-1].ReadOnlyData()[0]
		if shared == nil {
			shared = first
		}
		if first != shared {
			t.Fatal("an event encoded the batch's tag for itself")
		}
	}
	for _, msg := range []*batchv1.WatchBatchResponse{{Batch: b, Sequence: 1}, {Batch: b, Tag: "stale"}} {
		ev, err := c.NewTaggedEvent(msg)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Tag != tag || ev.tag != tagShared {
			t.Errorf("NewTaggedEvent: tag %q (%d), want the batch's shared %q", msg.Tag, ev.tag, tag)
		}
	}
	hb := &batchv1.WatchBatchResponse{Sequence: 2}
	if _, err := c.NewTaggedEvent(hb); err != nil || hb.Tag != "" {
		t.Errorf("NewTaggedEvent of a heartbeat: tag %q, %v; want none", hb.Tag, err)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
}

// TestCacheTagOf: with TagOf, the tag is derived from the encoding the
// Cache holds, with no second encoding, and is "" when encoding fails.
func TestCacheTagOf(t *testing.T) {
	t.Parallel()
	encodes := 0
	c := Cache{
		Encode: func(b *batchv1.Batch) ([]byte, error) {
			encodes++
			if b.GetId() == "batch_bad" {
				return nil, errors.New("cannot encode")
			}
			return wire.MarshalBatch(b)
		},
		TagOf: wire.TagJSON,
	}
	b := sampleBatch("batch_tagof")
	for range 3 {
		if tag := c.Tag(b); tag != wire.Tag(b) {
			t.Fatalf("Tag = %q, want wire.Tag's %q", tag, wire.Tag(b))
		}
	}
	if _, err := c.Bytes(b); err != nil || encodes != 1 {
		t.Errorf("Bytes: %v after %d encodings, want 1", err, encodes)
	}
	if tag := c.Tag(sampleBatch("batch_bad")); tag != "" || encodes != 2 {
		t.Errorf("Tag of a batch that cannot be encoded = %q (%d encodings), want \"\" (2)", tag, encodes)
	}
}

// TestEventSize: an Event, allocated per watcher and event, stays in the
// 144-byte size class.
func TestEventSize(t *testing.T) {
	t.Parallel()
	if n := unsafe.Sizeof(Event{}); n > 144 {
		t.Errorf("an Event is %d bytes, want at most 144", n)
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
// few own bytes, "cached_tag" is "cached" with the state's tag on every
// event, as the service sends them (NewTaggedEvent: the tag computed once
// per state).
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
	b.Run("cached_tag", func(b *testing.B) {
		b.ReportAllocs()
		var c Cache
		for b.Loop() {
			batch := sampleBatch("batch_bench")
			for w := range uint64(watchers) {
				ev, err := c.NewTaggedEvent(&batchv1.WatchBatchResponse{Type: 2, Batch: batch, Sequence: w, ObservedAtUnixMs: 1710000000123})
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
