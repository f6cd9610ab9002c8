package gateway_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestOpenAIGoSDK drives the gateway with the OpenAI Go SDK, changing
// nothing but its base URL: the drop-in promise.
func TestOpenAIGoSDK(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clk := newClock()
	e := lcStart(t, clk)
	client := openai.NewClient(option.WithBaseURL(e.BaseURL+"/v1/"), option.WithAPIKey("x"))
	input := lcInput(lcCustomIDs...)

	f, err := client.Files.New(ctx, openai.FileNewParams{
		File:    openai.File(bytes.NewReader(input), "input.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch,
	})
	if err != nil {
		t.Fatalf("Files.New: %v", err)
	}
	if f.Bytes != int64(len(input)) || f.Filename != "input.jsonl" || string(f.Purpose) != "batch" {
		t.Errorf("uploaded %+v", f)
	}
	newBatch := func(opts ...option.RequestOption) *openai.Batch {
		t.Helper()
		b, err := client.Batches.New(ctx, openai.BatchNewParams{
			InputFileID:      f.ID,
			Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
		}, opts...)
		if err != nil {
			t.Fatalf("Batches.New: %v", err)
		}
		return b
	}
	b := newBatch()
	if b.Status != openai.BatchStatusValidating || b.InputFileID != f.ID {
		t.Errorf("created %+v", b)
	}
	clk.Advance(3*phase + time.Second)
	waitFor(t, "the batch to complete", func() bool {
		got, err := client.Batches.Get(ctx, b.ID)
		if err != nil {
			t.Fatalf("Batches.Get: %v", err)
		}
		b = got
		return b.Status == openai.BatchStatusCompleted
	})
	if b.OutputFileID == "" || b.RequestCounts.Total != 3 || b.RequestCounts.Failed != 1 {
		t.Fatalf("completed batch %+v", b)
	}
	resp, err := client.Files.Content(ctx, b.OutputFileID)
	if err != nil {
		t.Fatalf("Files.Content: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want, _ := e.Sim.FileContent(b.OutputFileID); err != nil || !bytes.Equal(got, want) {
		t.Errorf("content %q (%v), want %q", got, err, want)
	}

	other := newBatch()
	mine := map[string]int{b.ID: 0, other.ID: 0}
	iter := client.Batches.ListAutoPaging(ctx, openai.BatchListParams{Limit: openai.Int(2)})
	total := 0
	for iter.Next() {
		total++
		if _, ok := mine[iter.Current().ID]; ok {
			mine[iter.Current().ID]++
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("ListAutoPaging: %v", err)
	}
	for id, n := range mine {
		if n != 1 {
			t.Errorf("batch %s listed %d times in %d", id, n, total)
		}
	}

	c, err := client.Batches.Cancel(ctx, other.ID)
	if err != nil || c.Status != openai.BatchStatusCancelling {
		t.Fatalf("Batches.Cancel: %+v %v", c, err)
	}

	before := e.Sim.Creates()
	k1 := newBatch(option.WithHeader("Idempotency-Key", "sdk-key"))
	k2 := newBatch(option.WithHeader("Idempotency-Key", "sdk-key"))
	if k1.ID != k2.ID || e.Sim.Creates() != before+1 {
		t.Fatalf("the same Idempotency-Key gave %s and %s with %d creates, want one", k1.ID, k2.ID, e.Sim.Creates()-before)
	}
}
