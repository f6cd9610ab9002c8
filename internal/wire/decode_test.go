package wire

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

func TestDecodeBatchGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want *batchv1.Batch
	}{
		{"provider sample", sampleJSON, sampleBatch()},
		{"only id", `{"id":"b"}`, &batchv1.Batch{Id: "b"}},
		{"nulls", `{"id":"b","object":null,"endpoint":null,"status":null,"input_file_id":null,
			"output_file_id":null,"error_file_id":null,"completion_window":null,"request_counts":null,
			"created_at":null,"in_progress_at":null,"finalizing_at":null,"completed_at":null,"failed_at":null,
			"expired_at":null,"cancelling_at":null,"cancelled_at":null,"expires_at":null,
			"metadata":null,"errors":null,"model":null,"usage":null}`,
			&batchv1.Batch{Id: "b"}},
		{"empty strings", `{"id":"b","object":"","status":"","output_file_id":"","error_file_id":"","model":""}`,
			&batchv1.Batch{Id: "b", Model: proto.String("")}},
		{"file ids set", `{"id":"b","status":"expired","output_file_id":"file_o","error_file_id":"file_e"}`,
			&batchv1.Batch{Id: "b", Status: batchv1.BatchStatus_BATCH_STATUS_EXPIRED, UpstreamStatus: "expired",
				OutputFileId: proto.String("file_o"), ErrorFileId: proto.String("file_e")}},
		{"unknown fields", `{"id":"b","future":{"x":[1,{"y":null}]},"callback_url":"https://x","status":"in_progress","request_counts":{"total":3,"extra":true}}`,
			&batchv1.Batch{Id: "b", Status: batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS, UpstreamStatus: "in_progress",
				RequestCounts: &batchv1.RequestCounts{Total: 3}}},
		{"unknown status", `{"id":"b","status":"paused"}`,
			&batchv1.Batch{Id: "b", UpstreamStatus: "paused"}},
		{"status case kept verbatim", `{"id":"b","status":"Completed"}`,
			&batchv1.Batch{Id: "b", UpstreamStatus: "Completed"}},
		{"flexible integers", `{"id":"b","created_at":1.71e9,"in_progress_at":"1710000060","finalizing_at":1710000070.0,
			"completed_at":1710003600.9,"failed_at":"","expired_at":" 42 ","cancelling_at":-1,"expires_at":"1.7100864e9",
			"request_counts":{"total":"10","completed":9.0,"failed":null}}`,
			&batchv1.Batch{Id: "b",
				CreatedAt: proto.Int64(1710000000), InProgressAt: proto.Int64(1710000060), FinalizingAt: proto.Int64(1710000070),
				CompletedAt: proto.Int64(1710003600), ExpiredAt: proto.Int64(42), CancellingAt: proto.Int64(-1),
				ExpiresAt:     proto.Int64(1710086400),
				RequestCounts: &batchv1.RequestCounts{Total: 10, Completed: 9}}},
		{"int64 extremes", `{"id":"b","created_at":9223372036854775807,"expires_at":-9223372036854775807}`,
			&batchv1.Batch{Id: "b", CreatedAt: proto.Int64(9223372036854775807), ExpiresAt: proto.Int64(-9223372036854775807)}},
		// math.MinInt64 is Int's marker for "" and so reads as absent.
		{"min int64 reads as absent", `{"id":"b","created_at":-9223372036854775808,"request_counts":{"total":-9223372036854775808}}`,
			&batchv1.Batch{Id: "b", RequestCounts: &batchv1.RequestCounts{}}},
		{"metadata empty object", `{"id":"b","metadata":{}}`,
			&batchv1.Batch{Id: "b", Metadata: &batchv1.Metadata{}}},
		{"metadata null", `{"id":"b","metadata":null}`, &batchv1.Batch{Id: "b"}},
		{"metadata mixed values", `{"id":"b","metadata":{"s":"x","n":12,"f":1.5,"t":true,"fa":false,"z":null,"o":{ "a" : 1 },"arr":[1, "two"]}}`,
			&batchv1.Batch{Id: "b", Metadata: &batchv1.Metadata{Pairs: map[string]string{
				"s": "x", "n": "12", "f": "1.5", "t": "true", "fa": "false", "o": `{"a":1}`, "arr": `[1,"two"]`}}}},
		{"errors with numeric code", `{"id":"b","status":"failed","errors":{"object":"list","data":[
			{"code":42,"message":"bad line","param":null,"line":3},
			{"code":"invalid_json","message":"x","param":"body","line":"7"},
			null,
			{"code":null}]}}`,
			&batchv1.Batch{Id: "b", Status: batchv1.BatchStatus_BATCH_STATUS_FAILED, UpstreamStatus: "failed",
				Errors: &batchv1.BatchErrors{Object: "list", Data: []*batchv1.BatchError{
					{Code: "42", Message: "bad line", Line: proto.Int64(3)},
					{Code: "invalid_json", Message: "x", Param: proto.String("body"), Line: proto.Int64(7)},
					{},
				}}}},
		{"errors empty", `{"id":"b","errors":{}}`, &batchv1.Batch{Id: "b", Errors: &batchv1.BatchErrors{}}},
		{"usage and model", `{"id":"b","model":"gpt-4o-mini","usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":20},
			"output_tokens":50,"output_tokens_details":{"reasoning_tokens":10},"total_tokens":150}}`,
			&batchv1.Batch{Id: "b", Model: proto.String("gpt-4o-mini"), Usage: &batchv1.Usage{
				InputTokens: 100, InputTokensDetails: &batchv1.InputTokensDetails{CachedTokens: 20},
				OutputTokens: 50, OutputTokensDetails: &batchv1.OutputTokensDetails{ReasoningTokens: 10},
				TotalTokens: 150}}},
		{"usage partial", `{"id":"b","usage":{"input_tokens_details":null,"total_tokens":"5"}}`,
			&batchv1.Batch{Id: "b", Usage: &batchv1.Usage{TotalTokens: 5}}},
		{"invalid UTF-8 replaced", "{\"id\":\"b\xff\",\"metadata\":{\"k\":[\"\xfe\"]}}",
			&batchv1.Batch{Id: "b\uFFFD", Metadata: &batchv1.Metadata{Pairs: map[string]string{"k": "[\"\uFFFD\"]"}}}},
		{"whitespace around", " \n\t{\"id\":\"b\"}\n ", &batchv1.Batch{Id: "b"}},
		// Plain integers of up to 18 digits take a fast path, longer ones
		// the general one; both must agree at the boundary.
		{"integers around 18 digits", `{"id":"b","created_at":999999999999999999,"in_progress_at":-999999999999999999,
			"finalizing_at":1000000000000000000,"completed_at":-1000000000000000000,"failed_at":0,"expired_at":-0}`,
			&batchv1.Batch{Id: "b", CreatedAt: proto.Int64(999999999999999999), InProgressAt: proto.Int64(-999999999999999999),
				FinalizingAt: proto.Int64(1000000000000000000), CompletedAt: proto.Int64(-1000000000000000000),
				FailedAt: proto.Int64(0), ExpiredAt: proto.Int64(0)}},
		// Strings without escapes are copied as they are, others unquoted.
		{"metadata strings escaped and not", "{\"id\":\"b\",\"metadata\":{\"plain\":\"a b\",\"esc\":\"a\\\"b\\\\c\\u00e9\\n\",\"utf8\":\"\xc3\xa9\",\"bad\":\"x\xffy\",\"empty\":\"\"}}",
			&batchv1.Batch{Id: "b", Metadata: &batchv1.Metadata{Pairs: map[string]string{
				"plain": "a b", "esc": "a\"b\\c\u00e9\n", "utf8": "\u00e9", "bad": "x\uFFFDy", "empty": ""}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeBatch([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			assertProtoEqual(t, got, tt.want)
			if (tt.want.Metadata != nil) != (got.Metadata != nil) {
				t.Errorf("Metadata presence: got %v, want %v", got.Metadata != nil, tt.want.Metadata != nil)
			}
			if _, err := proto.Marshal(got); err != nil {
				t.Errorf("proto.Marshal: %v", err)
			}
		})
	}
}

func TestDecodeBatchStatuses(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]batchv1.BatchStatus{
		"validating":  batchv1.BatchStatus_BATCH_STATUS_VALIDATING,
		"failed":      batchv1.BatchStatus_BATCH_STATUS_FAILED,
		"in_progress": batchv1.BatchStatus_BATCH_STATUS_IN_PROGRESS,
		"finalizing":  batchv1.BatchStatus_BATCH_STATUS_FINALIZING,
		"completed":   batchv1.BatchStatus_BATCH_STATUS_COMPLETED,
		"expired":     batchv1.BatchStatus_BATCH_STATUS_EXPIRED,
		"cancelling":  batchv1.BatchStatus_BATCH_STATUS_CANCELLING,
		"cancelled":   batchv1.BatchStatus_BATCH_STATUS_CANCELLED,
		"canceled":    batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED,
		"":            batchv1.BatchStatus_BATCH_STATUS_UNSPECIFIED,
	} {
		b, err := DecodeBatch([]byte(`{"id":"b","status":"` + name + `"}`))
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if b.Status != want || b.UpstreamStatus != name {
			t.Errorf("%q: Status %v, UpstreamStatus %q", name, b.Status, b.UpstreamStatus)
		}
	}
}

func TestDecodeBatchMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in   string
		wantReason string // substring of the error
	}{
		{"empty", ``, "invalid JSON"},
		{"whitespace", "  \n", "invalid JSON"},
		{"null", `null`, `missing "id"`},
		{"array", `[{"id":"b"}]`, "not a JSON object"},
		{"string", `"batch_01abc"`, "not a JSON object"},
		{"number", `42`, "not a JSON object"},
		{"truncated", sampleJSON[:len(sampleJSON)-3], "invalid JSON"},
		{"trailing garbage", `{"id":"b"} {"id":"c"}`, "invalid JSON"},
		{"trailing comma", `{"id":"b",}`, "invalid JSON"},
		{"single quotes", `{'id':'b'}`, "invalid JSON"},
		{"missing id", `{"object":"batch"}`, `missing "id"`},
		{"null id", `{"id":null}`, `missing "id"`},
		{"empty id", `{"id":""}`, `missing "id"`},
		{"numeric id", `{"id":5}`, `field "id"`},
		{"status number", `{"id":"b","status":5}`, `field "status"`},
		{"request_counts string", `{"id":"b","request_counts":"x"}`, `field "request_counts"`},
		{"request_counts array", `{"id":"b","request_counts":[1,2,3]}`, `field "request_counts"`},
		{"count bool", `{"id":"b","request_counts":{"total":true}}`, `field "request_counts.total" has a value that is not an integer`},
		{"count object", `{"id":"b","request_counts":{"total":{}}}`, "not an integer in int64 range"},
		{"timestamp word", `{"id":"b","created_at":"yesterday"}`, `field "created_at" has a value that is not an integer`},
		{"timestamp NaN string", `{"id":"b","created_at":"NaN"}`, "not an integer in int64 range"},
		{"timestamp Inf string", `{"id":"b","created_at":"-Inf"}`, "not an integer in int64 range"},
		{"timestamp hex string", `{"id":"b","created_at":"0x1p4"}`, "not an integer"},
		{"timestamp plus string", `{"id":"b","created_at":"+5"}`, "not an integer"},
		{"timestamp underscore string", `{"id":"b","created_at":"1_000"}`, "not an integer"},
		{"timestamp too large", `{"id":"b","created_at":1e300}`, "not an integer in int64 range"},
		{"timestamp just too large", `{"id":"b","created_at":9223372036854775808}`, "not an integer in int64 range"},
		{"metadata array", `{"id":"b","metadata":["a"]}`, `field "metadata"`},
		{"metadata string", `{"id":"b","metadata":"job=nightly"}`, `field "metadata"`},
		{"errors string", `{"id":"b","errors":"boom"}`, `field "errors"`},
		{"errors data object", `{"id":"b","errors":{"data":{}}}`, `field "errors.data"`},
		{"error code object", `{"id":"b","errors":{"data":[{"code":{}}]}}`, `field "errors.data.code" has an object or array`},
		{"usage number", `{"id":"b","usage":5}`, `field "usage"`},
		{"usage details string", `{"id":"b","usage":{"input_tokens_details":"x"}}`, `field "usage.input_tokens_details"`},
		{"model number", `{"id":"b","model":4}`, `field "model"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := DecodeBatch([]byte(tt.in))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeBatch = %v, %v; want ErrMalformed", b, err)
			}
			if !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("error %q does not mention %q", err, tt.wantReason)
			}
			for _, secret := range []string{"nightly", "yesterday", "boom", "job=", "batch_01abc"} {
				if strings.Contains(tt.in, secret) && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes the body", err)
				}
			}
		})
	}
}

func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		sampleJSON,
		`{"id":"b"}`,
		`{"id":"b","metadata":{}}`,
		`{"id":"b","metadata":{"a":1,"b":[true,{"c":null}],"d":null}}`,
		`{"id":"b","created_at":1.71e9,"expires_at":"1710086400","failed_at":null}`,
		`{"id":"b","errors":{"object":"list","data":[{"code":42,"message":"m","param":null,"line":"3"},null]}}`,
		`{"id":"b","usage":{"input_tokens":1,"input_tokens_details":{"cached_tokens":0},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":3}}`,
		`{"id":"b","status":"paused","request_counts":{"total":"2","completed":2.0,"failed":null}}`,
		`{"id":5}`,
		`{"id":"b","request_counts":"x"}`,
		`{"id":"b","created_at":"NaN"}`,
		`{"id":"b","created_at":-9.3e18}`,
		"{\"id\":\"\xff\"}",
		`[]`, `null`, `""`, ``, `{`, `{"id":"b"`, `{"id":"b"}}`,
		`{"id":"b","metadata":{"k":"\ud800"}}`,
		strings.Repeat("[", 20000),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			if b != nil {
				t.Fatalf("non-nil batch with error %v", err)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if len(data) >= 64 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("error quotes the body: %v", err)
			}
			return
		}
		if b.GetId() == "" {
			t.Fatalf("decoded a batch without id from %q", data)
		}
		if _, err := proto.Marshal(b); err != nil {
			t.Fatalf("decoded batch does not marshal: %v", err)
		}
	})
}

func BenchmarkDecodeBatch(b *testing.B) {
	data := []byte(sampleJSON)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeBatch(data); err != nil {
			b.Fatal(err)
		}
	}
}
