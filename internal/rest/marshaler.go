package rest

import (
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

// Marshaler is the runtime.Marshaler of the gateway's HTTP port. The
// messages that have an upstream shape are written in it by package wire:
// a *batchv1.Batch (what grpc-gateway hands over for the rules with
// response_body: batch), a File, the batch and file lists and a deleted
// file. Every other value goes to protojson with the proto field names.
// Decoding is protojson's, ignoring unknown fields (the OpenAI SDKs may
// send fields this gateway does not know). The zero value is ready to use.
type Marshaler struct{}

var _ runtime.Marshaler = (*Marshaler)(nil)

// fallback encodes and decodes everything that is not a batch.
var fallback = &runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
}

// Marshal encodes v: the upstream's objects with package wire (a nil batch
// is an error), anything else with protojson.
func (*Marshaler) Marshal(v any) ([]byte, error) {
	if data, ok, err := marshalWire(v); ok {
		return data, err
	}
	// WatchBatch events and result lines do not come here: their handlers
	// replace the generated ones and frame them themselves (watch.go,
	// lifecycle.go).
	return fallback.Marshal(v)
}

// marshalWire encodes the messages that have an upstream shape; ok is
// false for the others.
func marshalWire(v any) (data []byte, ok bool, err error) {
	switch v := v.(type) {
	case *encodedBatch:
		data = v.json
	case *batchv1.Batch:
		data, err = wire.MarshalBatch(v)
	case *batchv1.File:
		data, err = wire.MarshalFile(v)
	case *batchv1.ListBatchesResponse:
		data, err = wire.MarshalBatchList(v)
	case *batchv1.ListFilesResponse:
		data, err = wire.MarshalFileList(v)
	case *batchv1.DeleteFileResponse:
		data, err = wire.MarshalFileDeleted(v)
	default:
		return nil, false, nil
	}
	return data, true, err
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
		data, ok, err := marshalWire(v)
		if !ok {
			return fallback.NewEncoder(w).Encode(v)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(append(data, '\n'))
		return err
	})
}

// ContentType returns "application/json" whatever v is.
func (*Marshaler) ContentType(any) string {
	return "application/json"
}
