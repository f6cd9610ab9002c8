package simulator

import (
	"time"

	"github.com/batchgate/batchgate/internal/wire"
)

// Ids of the demo batches, in DemoBatchIDs order.
const (
	// DemoProgress goes validating -> in_progress -> finalizing ->
	// completed over three Phases (1000 requests, a few failing), stays
	// completed for one more, and starts again: a run begins every four
	// Phases from New, with a new created_at.
	DemoProgress = "batch_demo_progress"
	// DemoValidating cycles like DemoProgress but ten times slower (500
	// requests): each run stays non-terminal for thirty Phases and the
	// next begins ten Phases after it completed.
	DemoValidating = "batch_demo_validating"
	// DemoCompleted is the provider page's sample answer: completed, null
	// error_file_id and errors, no finalizing_at.
	DemoCompleted = "batch_demo_completed"
	// DemoFailed failed validation: errors.data with code, message, param
	// and line; failed_at; null files and metadata.
	DemoFailed = "batch_demo_failed"
	// DemoExpired ran out of its window with partial output and error
	// files; expired_at.
	DemoExpired = "batch_demo_expired"
	// DemoCancelled was cancelled while in progress: cancelling_at,
	// cancelled_at, null files, empty metadata object.
	DemoCancelled = "batch_demo_cancelled"
)

// seedDemo stores the demo batches, created relative to now.
func (s *Simulator) seedDemo(now time.Time) {
	at := func(d time.Duration) *wire.Int { return unixAt(now.Add(d)) }
	// The moving demo batches cycle, so that a watcher sees a whole run
	// whenever it starts (see entry.runStart).
	progressing := func(id string, slow, total int64, meta wire.Metadata) *entry {
		return &entry{
			b: wire.Batch{
				ID:               id,
				Object:           "batch",
				Endpoint:         SupportedEndpoint,
				InputFileID:      fileID("file_in_", id),
				CompletionWindow: SupportedCompletionWindow,
				CreatedAt:        unixAt(now),
				ExpiresAt:        unixAt(now.Add(completionWindow)),
				Metadata:         meta,
			},
			slow:    slow,
			created: now,
			total:   total,
			cycles:  true,
		}
	}
	// A static demo batch always has request_counts, as the upstream's do.
	static := func(b wire.Batch) *entry {
		b.Object = "batch"
		b.Endpoint = SupportedEndpoint
		b.CompletionWindow = SupportedCompletionWindow
		b.ExpiresAt = ptr(*b.CreatedAt + wire.Int(completionWindow/time.Second))
		if b.RequestCounts == nil {
			b.RequestCounts = &wire.RequestCounts{}
		}
		return &entry{b: b}
	}
	entries := []*entry{
		progressing(DemoProgress, 1, 1000, wire.Metadata{"demo": "progress"}),
		progressing(DemoValidating, 10, 500, wire.Metadata{"demo": "slow"}),
		// The provider page's sample answer, with a demo id.
		static(wire.Batch{
			ID:            DemoCompleted,
			Status:        StatusCompleted,
			InputFileID:   "file_abc123",
			OutputFileID:  ptr("file_output_xyz"),
			RequestCounts: &wire.RequestCounts{Total: 2, Completed: 2},
			CreatedAt:     at(-2 * time.Hour),
			InProgressAt:  at(-2*time.Hour + time.Minute),
			CompletedAt:   at(-time.Hour),
			Metadata:      wire.Metadata{"job": "nightly"},
		}),
		// Failed during validation: never in progress, no files, no metadata.
		static(wire.Batch{
			ID:          DemoFailed,
			Status:      StatusFailed,
			InputFileID: "file_in_demo_failed",
			CreatedAt:   at(-3 * time.Hour),
			FailedAt:    at(-3*time.Hour + 30*time.Second),
			Errors: &wire.BatchErrors{Object: "list", Data: []*wire.BatchError{
				{
					Code:    "invalid_value",
					Message: "Line 3: model 'gpt-unknown' is not supported.",
					Param:   ptr("body.model"),
					Line:    ptr[wire.Int](3),
				},
				{
					Code:    "invalid_json_line",
					Message: "Line 7 is not valid JSON.",
					Line:    ptr[wire.Int](7),
				},
			}},
		}),
		// Ran out of time with partial results.
		static(wire.Batch{
			ID:            DemoExpired,
			Status:        StatusExpired,
			InputFileID:   "file_in_demo_expired",
			OutputFileID:  ptr("file_out_demo_expired"),
			ErrorFileID:   ptr("file_err_demo_expired"),
			RequestCounts: &wire.RequestCounts{Total: 500, Completed: 320, Failed: 4},
			CreatedAt:     at(-26 * time.Hour),
			InProgressAt:  at(-26*time.Hour + 2*time.Minute),
			ExpiredAt:     at(-2 * time.Hour),
			Metadata:      wire.Metadata{"job": "backfill", "team": "search"},
		}),
		// Cancelled by its owner while in progress.
		static(wire.Batch{
			ID:            DemoCancelled,
			Status:        StatusCancelled,
			InputFileID:   "file_in_demo_cancelled",
			RequestCounts: &wire.RequestCounts{Total: 200, Completed: 40, Failed: 1},
			CreatedAt:     at(-5 * time.Hour),
			InProgressAt:  at(-5*time.Hour + time.Minute),
			CancellingAt:  at(-5*time.Hour + 10*time.Minute),
			CancelledAt:   at(-5*time.Hour + 11*time.Minute),
			Metadata:      wire.Metadata{},
		}),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		s.insertLocked(e)
		s.demo = append(s.demo, e.b.ID)
	}
}
