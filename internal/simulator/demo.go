package simulator

import (
	"encoding/json"
	"net/http"
	"strconv"
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
	s.seedDemoFilesLocked(now)
}

// Ids of the demo's canned files, seeded by New. They do not count against
// Options.MaxStoreBytes.
const (
	// DemoInputFile is the input of DemoCompleted, purpose "batch": the two
	// requests "request-1" and "request-2".
	DemoInputFile = "file_abc123"
	// DemoOutputFile is the output of DemoCompleted: the results of both
	// requests of DemoInputFile.
	DemoOutputFile = "file_output_xyz"
	// DemoExpiredOutputFile is the partial output of DemoExpired: 320
	// result lines, of requests "request-1" to "request-324" but for the
	// four failed ones; its second line is cut short, not JSON, as a
	// corrupted line would be.
	DemoExpiredOutputFile = "file_out_demo_expired"
	// DemoExpiredErrorFile is the error file of DemoExpired: the four
	// failed requests, "request-81" and "request-162" answered 400,
	// "request-243" and "request-324" with a null response and an error
	// object.
	DemoExpiredErrorFile = "file_err_demo_expired"
)

// seedDemoFilesLocked stores the demo's canned files, created relative to
// now.
func (s *Simulator) seedDemoFilesLocked(now time.Time) {
	request := func(n int) inputLine { return inputLine{customID: "request-" + strconv.Itoa(n), model: syntheticModel} }
	at := func(d time.Duration) time.Time { return now.Add(d) }

	// DemoCompleted: two requests, both answered.
	var in, out []byte
	for n := 1; n <= 2; n++ {
		line, err := json.Marshal(wire.InputLine{
			CustomID: request(n).customID, Method: http.MethodPost, URL: SupportedEndpoint,
			Body: json.RawMessage(`{"model":"` + syntheticModel + `","messages":[{"role":"user","content":"Hello world!"}],"max_tokens":1000}`),
		})
		if err != nil {
			panic(err)
		}
		in = append(append(in, line...), '\n')
		out = appendResult(out, request(n), n, at(-2*time.Hour+time.Minute).Unix(), detResultIDs(DemoCompleted, n), false)
	}
	s.storeFileLocked(DemoInputFile, "batch_input.jsonl", PurposeBatch, in, at(-2*time.Hour-time.Minute), false)
	s.storeFileLocked(DemoOutputFile, DemoCompleted+"_output.jsonl", PurposeBatchOutput, out, at(-time.Hour), false)

	// DemoExpired: 324 of 500 requests ran, four failed.
	created := at(-26*time.Hour + 2*time.Minute).Unix()
	failed := map[int]bool{81: true, 162: true, 243: true, 324: true}
	out = nil
	var errs []byte
	for n := 1; n <= 324; n++ {
		ids := detResultIDs(DemoExpired, n)
		switch {
		case n == 2:
			line := appendResult(nil, request(n), n, created, ids, false)
			out = append(append(out, line[:len(line)/2]...), '\n')
		case !failed[n]:
			out = appendResult(out, request(n), n, created, ids, false)
		case n < 200:
			errs = appendResult(errs, request(n), n, created, ids, true)
		default:
			line, err := json.Marshal(&wire.ResultLine{ID: ids.line, CustomID: request(n).customID, Error: &wire.ResultError{
				Code: "server_error", Message: "The server had an error while processing the request.",
			}})
			if err != nil {
				panic(err)
			}
			errs = append(append(errs, line...), '\n')
		}
	}
	s.storeFileLocked(DemoExpiredOutputFile, DemoExpired+"_output.jsonl", PurposeBatchOutput, out, at(-2*time.Hour), false)
	s.storeFileLocked(DemoExpiredErrorFile, DemoExpired+"_error.jsonl", PurposeBatchOutput, errs, at(-2*time.Hour), false)
}
