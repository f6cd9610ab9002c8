package wire

import (
	"regexp"
	"testing"

	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// Pinned tags of golden inputs (checked independently: SHA-256 of the
// compact testdata/golden/<name>.gateway.json, first 16 bytes, base64url).
// They must never change by accident: a tag is what clients hold across
// restarts and replicas. Change them only with the canonical JSON (and say
// so in the commit).
var pinnedTags = map[string]string{
	"provider_sample": "bt1_sxM2tIvkIKv1RvEkn2ULnQ",
	"all_fields":      "bt1_fFwEXIWGxzNnXAzfLm5hPg",
}

var tagPattern = regexp.MustCompile(`^bt1_[A-Za-z0-9_-]{22}$`)

// TestTagPinned: the tag of a golden input is the pinned one, and it is
// the tag of the golden gateway output's bytes (the tag hashes exactly
// what GET /v1/batches/{batch_id} sends).
func TestTagPinned(t *testing.T) {
	t.Parallel()
	for name, want := range pinnedTags {
		b, err := DecodeBatch(readGolden(t, name, "upstream"))
		if err != nil {
			t.Fatal(err)
		}
		got := Tag(b)
		if got != want {
			t.Errorf("Tag(%s) = %q, want the pinned %q", name, got, want)
		}
		if !tagPattern.MatchString(got) || len(got) != TagLen {
			t.Errorf("Tag(%s) = %q: not of the documented form", name, got)
		}
		data, err := MarshalBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if TagJSON(data) != got {
			t.Errorf("TagJSON(MarshalBatch(%s)) differs from Tag", name)
		}
	}
}

// TestTagEqualContent: equal content, equal tags, however the messages
// were made (a clone, a decode, a map filled in another order).
func TestTagEqualContent(t *testing.T) {
	t.Parallel()
	b := sampleBatch()
	decoded, err := DecodeBatch([]byte(sampleJSON))
	if err != nil {
		t.Fatal(err)
	}
	clone := proto.Clone(b).(*batchv1.Batch)
	clone.Metadata = &batchv1.Metadata{Pairs: map[string]string{}}
	for _, k := range []string{"z", "a", "job", "m"} {
		clone.Metadata.Pairs[k] = "v"
	}
	clone.Metadata.Pairs["job"] = "nightly"
	b.Metadata.Pairs["a"], b.Metadata.Pairs["m"], b.Metadata.Pairs["z"] = "v", "v", "v"
	decoded.Metadata.Pairs["m"], decoded.Metadata.Pairs["z"], decoded.Metadata.Pairs["a"] = "v", "v", "v"
	want := Tag(b)
	for name, other := range map[string]*batchv1.Batch{"clone": clone, "decoded": decoded, "same": b} {
		if got := Tag(other); got != want {
			t.Errorf("%s: Tag = %q, want %q", name, got, want)
		}
	}
	if Tag(nil) != "" {
		t.Errorf("Tag(nil) = %q, want empty", Tag(nil))
	}
}

// TestTagDiffers: a change of any field of the batch changes the tag.
// Every field of batch.v1.Batch must have a mutation here, so that a field
// added to the proto (and to the canonical JSON) is covered.
func TestTagDiffers(t *testing.T) {
	t.Parallel()
	base, err := DecodeBatch(readGolden(t, "all_fields", "upstream"))
	if err != nil {
		t.Fatal(err)
	}
	mutations := map[string]func(b *batchv1.Batch){
		"id":                func(b *batchv1.Batch) { b.Id += "x" },
		"object":            func(b *batchv1.Batch) { b.Object = "batch2" },
		"endpoint":          func(b *batchv1.Batch) { b.Endpoint = "/v1/embeddings" },
		"status":            func(b *batchv1.Batch) { b.Status, b.UpstreamStatus = batchv1.BatchStatus_BATCH_STATUS_COMPLETED, "" },
		"upstream_status":   func(b *batchv1.Batch) { b.UpstreamStatus = "paused" },
		"input_file_id":     func(b *batchv1.Batch) { b.InputFileId += "x" },
		"output_file_id":    func(b *batchv1.Batch) { b.OutputFileId = nil },
		"error_file_id":     func(b *batchv1.Batch) { b.ErrorFileId = proto.String("file_other") },
		"completion_window": func(b *batchv1.Batch) { b.CompletionWindow = "48h" },
		"request_counts":    func(b *batchv1.Batch) { b.RequestCounts.Completed++ },
		"created_at":        func(b *batchv1.Batch) { *b.CreatedAt++ },
		"in_progress_at":    func(b *batchv1.Batch) { *b.InProgressAt++ },
		"finalizing_at":     func(b *batchv1.Batch) { *b.FinalizingAt++ },
		"completed_at":      func(b *batchv1.Batch) { b.CompletedAt = nil },
		"failed_at":         func(b *batchv1.Batch) { *b.FailedAt++ },
		"expired_at":        func(b *batchv1.Batch) { *b.ExpiredAt++ },
		"cancelling_at":     func(b *batchv1.Batch) { *b.CancellingAt++ },
		"cancelled_at":      func(b *batchv1.Batch) { *b.CancelledAt++ },
		"expires_at":        func(b *batchv1.Batch) { *b.ExpiresAt++ },
		"metadata":          func(b *batchv1.Batch) { b.Metadata.Pairs["k"] = "v2" },
		"errors":            func(b *batchv1.Batch) { b.Errors.Data[0].Message += "!" },
		"model":             func(b *batchv1.Batch) { b.Model = proto.String("other-model") },
		"usage":             func(b *batchv1.Batch) { b.Usage.InputTokensDetails.CachedTokens++ },
	}
	fields := base.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		if _, ok := mutations[name]; !ok {
			t.Errorf("field %s of Batch has no mutation in this test", name)
		}
	}
	want := Tag(base)
	seen := map[string]string{want: "base"}
	for name, mutate := range mutations {
		b := proto.Clone(base).(*batchv1.Batch)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%s: all_fields lacks what the mutation changes: %v", name, r)
				}
			}()
			mutate(b)
		}()
		got := Tag(b)
		if got == want {
			t.Errorf("changing %s left the tag %q", name, got)
		}
		if other, ok := seen[got]; ok && other != "base" {
			t.Errorf("changing %s and changing %s give the same tag", name, other)
		}
		seen[got] = name
	}
}

func BenchmarkTag(b *testing.B) {
	batch := sampleBatch()
	b.ReportAllocs()
	for b.Loop() {
		_ = Tag(batch)
	}
}
