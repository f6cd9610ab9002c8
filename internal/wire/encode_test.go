package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// TestProviderSampleVerbatim: the provider's own sample goes through the
// gateway unchanged, byte for byte once whitespace is removed.
func TestProviderSampleVerbatim(t *testing.T) {
	t.Parallel()
	in := readGolden(t, "provider_sample", "upstream")
	b, err := DecodeBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := MarshalBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("got  %s\nwant %s", got, want.Bytes())
	}
}

func TestStatusString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   batchv1.BatchStatus
		upstream string
		want     string // "" means the key is absent
	}{
		{"validating", batchv1.BatchStatus_BATCH_STATUS_VALIDATING, "", "validating"},
		{"failed", batchv1.BatchStatus_BATCH_STATUS_FAILED, "", "failed"},
		{"in_progress", batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, "", "in_progress"},
		{"finalizing", batchv1.BatchStatus_BATCH_STATUS_FINALIZING, "", "finalizing"},
		{"completed", batchv1.BatchStatus_BATCH_STATUS_COMPLETED, "", "completed"},
		{"expired", batchv1.BatchStatus_BATCH_STATUS_EXPIRED, "", "expired"},
		{"cancelling", batchv1.BatchStatus_BATCH_STATUS_CANCELLING, "", "cancelling"},
		{"cancelled", batchv1.BatchStatus_BATCH_STATUS_CANCELLED, "", "cancelled"},
		{"unknown upstream status passes through", batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED, "paused", "paused"},
		{"upstream status wins over the enum", batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, "in_progress_v2", "in_progress_v2"},
		{"no status at all", batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED, "", ""},
		{"enum value unknown to this build", batchv1.BatchStatus(99), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &batchv1.Batch{Id: "batch_1", Status: tt.status, UpstreamStatus: tt.upstream}
			if got := FromProto(b).Status; got != tt.want {
				t.Errorf("Status = %q, want %q", got, tt.want)
			}
			m := marshalToMap(t, b)
			raw, ok := m["status"]
			switch {
			case tt.want == "" && ok:
				t.Errorf("status key present (%s), want absent", raw)
			case tt.want != "" && string(raw) != `"`+tt.want+`"`:
				t.Errorf("status = %s, want %q", raw, tt.want)
			}
			if _, ok := m["upstream_status"]; ok {
				t.Error("upstream_status is emitted")
			}
		})
	}
}

// TestMarshalBatchNullRules covers the package doc's rules on batches the
// upstream decoder never produces.
func TestMarshalBatchNullRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		batch *batchv1.Batch
		key   string
		want  string // "" means absent
	}{
		{"unset metadata is null", &batchv1.Batch{}, "metadata", `null`},
		{"empty metadata is {}", &batchv1.Batch{Metadata: &batchv1.Metadata{}}, "metadata", `{}`},
		{"metadata keys are sorted", &batchv1.Batch{Metadata: &batchv1.Metadata{Pairs: map[string]string{"b": "2", "a": "1"}}}, "metadata", `{"a":"1","b":"2"}`},
		{"unset errors are null", &batchv1.Batch{}, "errors", `null`},
		{"errors without data have data []", &batchv1.Batch{Errors: &batchv1.BatchErrors{Object: "list"}}, "errors", `{"object":"list","data":[]}`},
		{"a nil error entry is written empty", &batchv1.Batch{Errors: &batchv1.BatchErrors{Object: "list", Data: []*batchv1.BatchError{nil}}}, "errors",
			`{"object":"list","data":[{"code":"","message":"","param":null,"line":null}]}`},
		{"empty error_file_id is null", &batchv1.Batch{ErrorFileId: proto.String("")}, "error_file_id", `null`},
		{"empty output_file_id is kept", &batchv1.Batch{OutputFileId: proto.String("")}, "output_file_id", `""`},
		{"unset output_file_id is null", &batchv1.Batch{}, "output_file_id", `null`},
		{"zero timestamp is present", &batchv1.Batch{CompletedAt: proto.Int64(0)}, "completed_at", `0`},
		{"unset timestamp is absent", &batchv1.Batch{}, "completed_at", ``},
		{"unset request_counts is absent", &batchv1.Batch{}, "request_counts", ``},
		{"zero request_counts is present", &batchv1.Batch{RequestCounts: &batchv1.RequestCounts{}}, "request_counts", `{"total":0,"completed":0,"failed":0}`},
		{"unset model is absent", &batchv1.Batch{}, "model", ``},
		{"empty model is present", &batchv1.Batch{Model: proto.String("")}, "model", `""`},
		{"unset usage is absent", &batchv1.Batch{}, "usage", ``},
		{"usage without details", &batchv1.Batch{Usage: &batchv1.Usage{InputTokens: 1, OutputTokens: 2, TotalTokens: 3}}, "usage",
			`{"input_tokens":1,"output_tokens":2,"total_tokens":3}`},
		{"usage with zero details", &batchv1.Batch{Usage: &batchv1.Usage{InputTokensDetails: &batchv1.InputTokensDetails{}, OutputTokensDetails: &batchv1.OutputTokensDetails{}}}, "usage",
			`{"input_tokens":0,"input_tokens_details":{"cached_tokens":0},"output_tokens":0,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":0}`},
		{"empty strings are present", &batchv1.Batch{}, "completion_window", `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := marshalToMap(t, tt.batch)
			raw, ok := m[tt.key]
			if tt.want == "" {
				if ok {
					t.Errorf("%s = %s, want absent", tt.key, raw)
				}
				return
			}
			if !ok || string(raw) != tt.want {
				t.Errorf("%s = %s (present %v), want %s", tt.key, raw, ok, tt.want)
			}
		})
	}
}

func TestMarshalBatchNil(t *testing.T) {
	t.Parallel()
	if _, err := MarshalBatch(nil); !errors.Is(err, ErrNilBatch) {
		t.Errorf("MarshalBatch(nil) error = %v, want ErrNilBatch", err)
	}
	if got := FromProto(nil); got.ID != "" || got.Metadata != nil || got.Errors != nil {
		t.Errorf("FromProto(nil) = %+v, want the zero value", got)
	}
}

func TestMarshalBatchNoHTMLEscaping(t *testing.T) {
	t.Parallel()
	b := &batchv1.Batch{Id: "<script>&</script>", Metadata: &batchv1.Metadata{Pairs: map[string]string{"k": "a > b & c < d"}}}
	out, err := MarshalBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"id":"<script>&</script>"`, `"k":"a > b & c < d"`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output %s lacks %s", out, want)
		}
	}
	if bytes.HasSuffix(out, []byte("\n")) {
		t.Error("output ends with a newline")
	}
}

// TestMarshalBatchPoolIsolation: a pooled encoder that wrote a full batch
// must not leak any of it into the next, smaller one, even under
// concurrency.
func TestMarshalBatchPoolIsolation(t *testing.T) {
	t.Parallel()
	full := decodeGolden(t, "all_fields")
	fullWant, err := MarshalBatch(full)
	if err != nil {
		t.Fatal(err)
	}
	bare := &batchv1.Batch{Id: "batch_bare", Object: "batch"}
	const bareWant = `{"id":"batch_bare","object":"batch","endpoint":"","input_file_id":"","output_file_id":null,"error_file_id":null,"completion_window":"","metadata":null,"errors":null}`
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				b, want := bare, []byte(bareWant)
				if (i+j)%2 == 0 {
					b, want = full, fullWant
				}
				got, err := MarshalBatch(b)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("got  %s\nwant %s", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestMarshalBatchDoesNotAliasPool: the returned slice is the caller's and
// survives later calls.
func TestMarshalBatchDoesNotAliasPool(t *testing.T) {
	t.Parallel()
	first, err := MarshalBatch(&batchv1.Batch{Id: "batch_first"})
	if err != nil {
		t.Fatal(err)
	}
	keep := string(first)
	for range 10 {
		if _, err := MarshalBatch(&batchv1.Batch{Id: "batch_other_and_longer"}); err != nil {
			t.Fatal(err)
		}
	}
	if string(first) != keep {
		t.Errorf("first result changed to %s", first)
	}
}

func marshalToMap(t *testing.T, b *batchv1.Batch) map[string]json.RawMessage {
	t.Helper()
	out, err := MarshalBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("output %s is not a JSON object: %v", out, err)
	}
	return m
}

func decodeGolden(t testing.TB, name string) *batchv1.Batch {
	t.Helper()
	b, err := DecodeBatch(readGolden(t, name, "upstream"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkMarshalBatch measures the hot path on the provider's sample and
// on the batch with every field set, against protojson for scale.
func BenchmarkMarshalBatch(b *testing.B) {
	for _, name := range []string{"provider_sample", "all_fields"} {
		batch := decodeGolden(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MarshalBatch(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/protojson", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := protojson.Marshal(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestFromProtoEmptyErrorData: errors without entries are written with
// "data": [], also from fresh (unpooled) state.
func TestFromProtoEmptyErrorData(t *testing.T) {
	t.Parallel()
	got := FromProto(&batchv1.Batch{Errors: &batchv1.BatchErrors{Object: "list"}})
	if got.Errors == nil || got.Errors.Data == nil {
		t.Fatalf("Errors = %+v, want non-nil Data", got.Errors)
	}
	out, err := json.Marshal(got.Errors)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"object":"list","data":[]}` {
		t.Errorf("errors = %s", out)
	}
}
