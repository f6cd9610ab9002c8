// Package fanout sends one batch state to many gRPC watch streams with one
// encoding of the batch, however many watchers it has.
//
// A Cache keeps the proto encoding of each *batchv1.Batch it is asked
// about, and its tag (wire.Tag), for as long as the batch is reachable
// (the hub shares one pointer per state among all its subscribers). Event
// wraps a WatchBatchResponse with that encoding; Codec, installed on the
// gRPC server with ServerOption, writes an Event as up to four buffers:
// its own few header bytes, the shared batch bytes, its trailing fields,
// and the tag field (shared too, when the tag is the batch's). Anything else is
// encoded by the standard proto codec, and so is an Event on a server
// without the Codec (an Event is a proto.Message).
package fanout

import (
	"runtime"
	"sync"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// Field numbers of batch.v1.WatchBatchResponse.
const (
	fieldType       protowire.Number = 1
	fieldBatch      protowire.Number = 2
	fieldTerminal   protowire.Number = 3
	fieldSequence   protowire.Number = 4
	fieldObservedAt protowire.Number = 5
	fieldTag        protowire.Number = 6
)

// Cache holds one encoding of each batch it is asked about. The zero value
// is ready to use and encodes with proto; a Cache must not be copied after
// first use.
type Cache struct {
	// Encode encodes a batch; nil means proto.Marshal. NewEvent needs the
	// proto encoding.
	Encode func(*batchv1.Batch) ([]byte, error)
	// TagOf, if set, derives a batch's tag from its encoding (wire.TagJSON,
	// when Encode is wire.MarshalBatch), so that Tag does not encode the
	// batch a second time; nil means wire.Tag(b). A batch whose encoding
	// fails has the tag "".
	TagOf func(encoded []byte) string

	mu sync.Mutex
	m  map[weak.Pointer[batchv1.Batch]]*encoded
}

type encoded struct {
	once sync.Once
	b    []byte
	buf  mem.Buffer // b, boxed once for all the events that send it
	err  error

	tagOnce  sync.Once
	tag      string
	tagField mem.Buffer // field 6 of WatchBatchResponse holding tag
}

// Bytes returns the encoding of b, computing it once per batch. The
// result is shared: do not modify it. b must not be modified after it was
// first passed to Bytes.
func (c *Cache) Bytes(b *batchv1.Batch) ([]byte, error) {
	e := c.get(b)
	return e.b, e.err
}

// get returns b's entry with its encoding computed.
func (c *Cache) get(b *batchv1.Batch) *encoded {
	e := c.entry(b)
	c.encode(e, b)
	return e
}

// encode computes e's encoding, the encoding of b, once.
func (c *Cache) encode(e *encoded, b *batchv1.Batch) {
	e.once.Do(func() {
		if c.Encode != nil {
			e.b, e.err = c.Encode(b)
		} else {
			e.b, e.err = protobuf.Marshal(b)
		}
		e.buf = mem.SliceBuffer(e.b)
	})
}

// entry returns b's entry, making it (empty) on first use.
func (c *Cache) entry(b *batchv1.Batch) *encoded {
	wp := weak.Make(b)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[weak.Pointer[batchv1.Batch]]*encoded)
	}
	e, ok := c.m[wp]
	if !ok {
		e = new(encoded)
		c.m[wp] = e
		runtime.AddCleanup(b, c.forget, wp)
	}
	c.mu.Unlock()
	return e
}

// Tag returns wire.Tag(b), computing it once per batch (and the encoding
// of the tag field that NewEvent shares among the events that carry it).
// b must not be modified after it was first passed to Tag. A nil b has the
// tag "".
func (c *Cache) Tag(b *batchv1.Batch) string {
	if b == nil {
		return ""
	}
	return c.tagged(c.entry(b), b)
}

// tagged computes e's tag, the tag of b, once.
func (c *Cache) tagged(e *encoded, b *batchv1.Batch) string {
	e.tagOnce.Do(func() {
		if c.TagOf == nil {
			e.tag = wire.Tag(b)
		} else if c.encode(e, b); e.err == nil {
			e.tag = c.TagOf(e.b)
		}
		e.tagField = mem.SliceBuffer(appendTagField(nil, e.tag))
	})
	return e.tag
}

// appendTagField appends field 6 holding tag.
func appendTagField(dst []byte, tag string) []byte {
	dst = protowire.AppendTag(dst, fieldTag, protowire.BytesType)
	return protowire.AppendString(dst, tag)
}

// forget drops the encoding of a batch that was garbage collected.
func (c *Cache) forget(wp weak.Pointer[batchv1.Batch]) {
	c.mu.Lock()
	delete(c.m, wp)
	c.mu.Unlock()
}

// Len returns the number of batches whose encoding is held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Event is a WatchBatchResponse ready to send on many streams: the batch
// is encoded once (by a Cache), the rest of the message per stream.
type Event struct {
	*batchv1.WatchBatchResponse
	own   [48]byte // the event's own fields: head, then tail
	nhead uint8    // at most len(own): small fields keep an Event in 144 bytes
	ntail uint8
	tag   tagKind
	batch *encoded
	bufs  [4]mem.Buffer
}

// tagKind says where an Event's tag field comes from.
type tagKind uint8

const (
	tagNone   tagKind = iota
	tagShared         // the batch's (encoded.tagField)
	tagOwn            // another: encoded when the event is marshaled
)

// NewEvent returns msg as an Event, its batch encoded through c. msg must
// not be modified afterwards. A msg.Tag that is its batch's (Cache.Tag)
// is sent from the encoding shared by all the events of that batch; any
// other is encoded for this event when it is marshaled.
func (c *Cache) NewEvent(msg *batchv1.WatchBatchResponse) (*Event, error) {
	return c.newEvent(msg, false)
}

// NewTaggedEvent is NewEvent after setting msg.Tag to its batch's tag
// (Cache.Tag; left as it is when msg has no batch), finding the batch's
// encoding and tag with one lookup: what a watch stream sends for each
// state, to each of its watchers.
func (c *Cache) NewTaggedEvent(msg *batchv1.WatchBatchResponse) (*Event, error) {
	return c.newEvent(msg, true)
}

func (c *Cache) newEvent(msg *batchv1.WatchBatchResponse, setTag bool) (*Event, error) {
	ev := &Event{WatchBatchResponse: msg}
	head := ev.own[:0]
	if t := msg.GetType(); t != 0 {
		head = protowire.AppendTag(head, fieldType, protowire.VarintType)
		head = protowire.AppendVarint(head, uint64(t))
	}
	if b := msg.GetBatch(); b != nil {
		e := c.get(b)
		if e.err != nil {
			return nil, e.err
		}
		head = protowire.AppendTag(head, fieldBatch, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(len(e.b)))
		ev.batch = e
		if setTag {
			msg.Tag = c.tagged(e, b)
		}
	}
	tail := head[len(head):]
	if msg.GetTerminal() {
		tail = protowire.AppendTag(tail, fieldTerminal, protowire.VarintType)
		tail = protowire.AppendVarint(tail, 1)
	}
	if s := msg.GetSequence(); s != 0 {
		tail = protowire.AppendTag(tail, fieldSequence, protowire.VarintType)
		tail = protowire.AppendVarint(tail, s)
	}
	if at := msg.GetObservedAtUnixMs(); at != 0 {
		tail = protowire.AppendTag(tail, fieldObservedAt, protowire.VarintType)
		tail = protowire.AppendVarint(tail, uint64(at))
	}
	// At most 2+10 bytes of head and 2+2+10+10 of tail: both fit in own.
	ev.nhead, ev.ntail = uint8(len(head)), uint8(len(tail))
	if t := msg.GetTag(); t != "" {
		ev.tag = tagOwn
		if ev.batch != nil && c.tagged(ev.batch, msg.GetBatch()) == t {
			ev.tag = tagShared
		}
	}
	return ev, nil
}

// Message returns the event as a plain message, for in-process streams.
func (e *Event) Message() *batchv1.WatchBatchResponse { return e.WatchBatchResponse }

// buffers returns the event's wire encoding without copying the batch.
func (e *Event) buffers() mem.BufferSlice {
	bs := e.bufs[:0]
	if e.nhead > 0 {
		bs = append(bs, mem.SliceBuffer(e.own[:e.nhead]))
	}
	if e.batch != nil && len(e.batch.b) > 0 {
		bs = append(bs, e.batch.buf)
	}
	if e.ntail > 0 {
		bs = append(bs, mem.SliceBuffer(e.own[e.nhead:e.nhead+e.ntail]))
	}
	// Field 6 comes last, as proto.Marshal orders it.
	switch e.tag {
	case tagShared:
		bs = append(bs, e.batch.tagField)
	case tagOwn:
		bs = append(bs, mem.SliceBuffer(appendTagField(nil, e.GetTag())))
	}
	return bs
}

// Codec is the standard proto codec, except that it writes an *Event from
// its pre-encoded parts.
type Codec struct{ encoding.CodecV2 }

// Marshal implements encoding.CodecV2.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*Event); ok {
		return e.buffers(), nil
	}
	return c.CodecV2.Marshal(v)
}

// ServerOption installs Codec on a gRPC server.
func ServerOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(Codec{encoding.GetCodecV2(proto.Name)})
}
