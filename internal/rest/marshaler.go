package rest

import (
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// Marshaler is the runtime.Marshaler of the gateway's HTTP port. A
// *batchv1.Batch (what grpc-gateway hands over for GetBatch, whose HTTP rule
// has response_body: batch) is written by MarshalBatch in the upstream's
// shape; every other value goes to protojson with the proto field names.
// Decoding is protojson's. The zero value is ready to use.
type Marshaler struct{}

var _ runtime.Marshaler = (*Marshaler)(nil)

// fallback encodes and decodes everything that is not a batch.
var fallback = &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true}}

// Marshal encodes v: a *batchv1.Batch with MarshalBatch (a nil one is an
// error), anything else with protojson.
func (*Marshaler) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*batchv1.Batch); ok {
		return wire.MarshalBatch(b)
	}
	// WatchBatch events do not come here: RegisterWatchHandler replaces
	// the generated handler (runtime.ForwardResponseStream) and frames
	// them itself, as NDJSON or SSE (watch.go).
	return fallback.Marshal(v)
}

// Unmarshal decodes data into v with protojson.
func (*Marshaler) Unmarshal(data []byte, v any) error {
	return fallback.Unmarshal(data, v)
}

// NewDecoder returns protojson's decoder reading from r.
func (*Marshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return fallback.NewDecoder(r)
}

// NewEncoder returns an encoder writing each value to w as Marshal does,
// followed by a newline.
func (m *Marshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, ok := v.(*batchv1.Batch)
		if !ok {
			return fallback.NewEncoder(w).Encode(v)
		}
		buf, err := wire.MarshalBatch(b)
		if err != nil {
			return err
		}
		_, err = w.Write(append(buf, '\n'))
		return err
	})
}

// ContentType returns "application/json" whatever v is.
func (*Marshaler) ContentType(any) string {
	return "application/json"
}
