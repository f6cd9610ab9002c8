package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/wire"
)

func TestMarshalerMarshal(t *testing.T) {
	t.Parallel()
	batch := &batchv1.Batch{
		Id:             "batch_1",
		Object:         "batch",
		Status:         batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS,
		UpstreamStatus: "in_progress",
		InputFileId:    "file_in",
		CreatedAt:      proto.Int64(1710000000),
	}
	batchJSON, err := wire.MarshalBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		v       any
		want    string // exact output, when set
		contain []string
		absent  []string
		wantErr error
	}{
		{name: "batch takes the upstream shape", v: batch, want: string(batchJSON)},
		{name: "nil batch is an error", v: (*batchv1.Batch)(nil), wantErr: wire.ErrNilBatch},
		{
			name:    "other messages take protojson with proto names",
			v:       &batchv1.GetBatchResponse{Batch: batch},
			contain: []string{`"batch":{`, `"input_file_id":"file_in"`, `"upstream_status":"in_progress"`, `"status":"BATCH_STATUS_IN_PROGRESS"`, `"created_at":"1710000000"`},
			absent:  []string{`inputFileId`},
		},
		{
			name:    "stream events take protojson for now",
			v:       map[string]any{"result": &batchv1.WatchBatchResponse{Type: batchv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Sequence: 7}},
			contain: []string{`"result":{`, `"type":"WATCH_EVENT_TYPE_HEARTBEAT"`, `"sequence":"7"`},
		},
		{
			name:    "status messages take protojson",
			v:       status.New(codes.NotFound, "no such batch").Proto(),
			contain: []string{`"code":5`, `"message":"no such batch"`},
		},
		{name: "non-messages take JSONPb's fallback", v: "a string", want: `"a string"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := (&Marshaler{}).Marshal(tt.v)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := compact(t, got) // protojson adds random spaces
			if tt.want != "" && string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			for _, c := range tt.contain {
				if !strings.Contains(s, c) {
					t.Errorf("output %s lacks %s", got, c)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(s, a) {
					t.Errorf("output %s has %s", got, a)
				}
			}
		})
	}
}

func TestMarshalerDecoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
	}{
		{"proto names", `{"batch_id":"batch_1"}`},
		{"json names", `{"batchId":"batch_1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := &Marshaler{}
			var a, b batchv1.GetBatchRequest
			if err := m.Unmarshal([]byte(tt.in), &a); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if err := m.NewDecoder(strings.NewReader(tt.in)).Decode(&b); err != nil {
				t.Fatalf("NewDecoder: %v", err)
			}
			if a.GetBatchId() != "batch_1" || b.GetBatchId() != "batch_1" {
				t.Errorf("Unmarshal gave %q, NewDecoder gave %q, want batch_1", a.GetBatchId(), b.GetBatchId())
			}
		})
	}
}

func TestMarshalerNewEncoder(t *testing.T) {
	t.Parallel()
	batch := &batchv1.Batch{Id: "batch_1", UpstreamStatus: "completed", CreatedAt: proto.Int64(1)}
	batchJSON, err := wire.MarshalBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"batch in the upstream shape", batch, string(batchJSON) + "\n"},
		{"others in protojson", &batchv1.GetBatchRequest{BatchId: "batch_1"}, `{"batch_id":"batch_1"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := (&Marshaler{}).NewEncoder(&buf).Encode(tt.v); err != nil {
				t.Fatal(err)
			}
			if got := compact(t, buf.Bytes()) + "\n"; got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if err := (&Marshaler{}).NewEncoder(&bytes.Buffer{}).Encode((*batchv1.Batch)(nil)); !errors.Is(err, wire.ErrNilBatch) {
		t.Errorf("encoding a nil batch: error = %v, want wire.ErrNilBatch", err)
	}
}

func TestMarshalerContentType(t *testing.T) {
	t.Parallel()
	for _, v := range []any{&batchv1.Batch{}, &batchv1.GetBatchResponse{}, nil} {
		if got := (&Marshaler{}).ContentType(v); got != "application/json" {
			t.Errorf("ContentType(%T) = %q", v, got)
		}
	}
}

// compact returns data without insignificant whitespace.
func compact(t *testing.T, data []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		t.Fatalf("%s is not JSON: %v", data, err)
	}
	return buf.String()
}
