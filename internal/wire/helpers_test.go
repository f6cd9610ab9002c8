package wire

import (
	"os"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/testutil"
)

// sampleJSON is the provider's sample answer to GET /v1/batches/batch_01abc.
var sampleJSON = func() string {
	data, err := os.ReadFile("testdata/golden/provider_sample.upstream.json")
	if err != nil {
		panic(err)
	}
	return string(data)
}()

// sampleBatch is sampleJSON decoded.
func sampleBatch() *batchv1.Batch { return testutil.SampleBatch() }

func assertProtoEqual(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}
