package simulator

import "time"

// Ids of the demo batches, in DemoBatchIDs order.
const (
	// DemoProgress goes validating -> in_progress -> finalizing ->
	// completed over three Phases from New (1000 requests, a few failing).
	DemoProgress = "batch_demo_progress"
	// DemoValidating progresses like DemoProgress but ten times slower
	// (500 requests), so it stays non-terminal for thirty Phases.
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
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	atp := func(d time.Duration) *int64 { return ptr(at(d)) }
	progressing := func(id string, slow, total int64, meta map[string]string) *entry {
		return &entry{
			b: Batch{
				ID:               id,
				Object:           "batch",
				Endpoint:         SupportedEndpoint,
				InputFileID:      fileID("file_in_", id),
				CompletionWindow: SupportedCompletionWindow,
				CreatedAt:        now.Unix(),
				ExpiresAt:        ptr(now.Add(completionWindow).Unix()),
				Metadata:         meta,
			},
			slow:    slow,
			created: now,
			total:   total,
		}
	}
	static := func(b Batch) *entry {
		b.Object = "batch"
		b.Endpoint = SupportedEndpoint
		b.CompletionWindow = SupportedCompletionWindow
		b.ExpiresAt = ptr(b.CreatedAt + int64(completionWindow/time.Second))
		return &entry{b: b}
	}
	entries := []*entry{
		progressing(DemoProgress, 1, 1000, map[string]string{"demo": "progress"}),
		progressing(DemoValidating, 10, 500, map[string]string{"demo": "slow"}),
		// The provider page's sample answer, with a demo id.
		static(Batch{
			ID:            DemoCompleted,
			Status:        StatusCompleted,
			InputFileID:   "file_abc123",
			OutputFileID:  ptr("file_output_xyz"),
			RequestCounts: RequestCounts{Total: 2, Completed: 2},
			CreatedAt:     at(-2 * time.Hour),
			InProgressAt:  atp(-2*time.Hour + time.Minute),
			CompletedAt:   atp(-time.Hour),
			Metadata:      map[string]string{"job": "nightly"},
		}),
		// Failed during validation: never in progress, no files, no metadata.
		static(Batch{
			ID:          DemoFailed,
			Status:      StatusFailed,
			InputFileID: "file_in_demo_failed",
			CreatedAt:   at(-3 * time.Hour),
			FailedAt:    atp(-3*time.Hour + 30*time.Second),
			Errors: &BatchErrors{Object: "list", Data: []BatchError{
				{
					Code:    "invalid_value",
					Message: "Line 3: model 'gpt-unknown' is not supported.",
					Param:   ptr("body.model"),
					Line:    ptr[int64](3),
				},
				{
					Code:    "invalid_json_line",
					Message: "Line 7 is not valid JSON.",
					Line:    ptr[int64](7),
				},
			}},
		}),
		// Ran out of time with partial results.
		static(Batch{
			ID:            DemoExpired,
			Status:        StatusExpired,
			InputFileID:   "file_in_demo_expired",
			OutputFileID:  ptr("file_out_demo_expired"),
			ErrorFileID:   ptr("file_err_demo_expired"),
			RequestCounts: RequestCounts{Total: 500, Completed: 320, Failed: 4},
			CreatedAt:     at(-26 * time.Hour),
			InProgressAt:  atp(-26*time.Hour + 2*time.Minute),
			ExpiredAt:     atp(-2 * time.Hour),
			Metadata:      map[string]string{"job": "backfill", "team": "search"},
		}),
		// Cancelled by its owner while in progress.
		static(Batch{
			ID:            DemoCancelled,
			Status:        StatusCancelled,
			InputFileID:   "file_in_demo_cancelled",
			RequestCounts: RequestCounts{Total: 200, Completed: 40, Failed: 1},
			CreatedAt:     at(-5 * time.Hour),
			InProgressAt:  atp(-5*time.Hour + time.Minute),
			CancellingAt:  atp(-5*time.Hour + 10*time.Minute),
			CancelledAt:   atp(-5*time.Hour + 11*time.Minute),
			Metadata:      map[string]string{},
		}),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		s.insertLocked(e)
		s.demo = append(s.demo, e.b.ID)
	}
}
