package testutil

import (
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// SampleBatch is the provider's sample answer to GET /v1/batches/batch_01abc
// (internal/wire/testdata/golden/provider_sample.upstream.json) as the
// gateway decodes it, written out by hand.
func SampleBatch() *batchv1.Batch {
	return &batchv1.Batch{
		Id:               "batch_01abc",
		Object:           "batch",
		Endpoint:         "/v1/chat/completions",
		Status:           batchv1.BatchStatus_BATCH_STATUS_COMPLETED,
		UpstreamStatus:   "completed",
		InputFileId:      "file_abc123",
		OutputFileId:     proto.String("file_output_xyz"),
		CompletionWindow: "24h",
		RequestCounts:    &batchv1.RequestCounts{Total: 2, Completed: 2, Failed: 0},
		CreatedAt:        proto.Int64(1710000000),
		InProgressAt:     proto.Int64(1710000060),
		CompletedAt:      proto.Int64(1710003600),
		ExpiresAt:        proto.Int64(1710086400),
		Metadata:         &batchv1.Metadata{Pairs: map[string]string{"job": "nightly"}},
	}
}
