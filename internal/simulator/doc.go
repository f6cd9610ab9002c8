// Package simulator is an embedded fake of the upstream OpenAI-compatible
// REST batch API. A *Simulator is a plain http.Handler: mount it on an
// httptest.Server (tests, benchmarks) or on a loopback listener (the
// gateway's -demo mode) and point the gateway's upstream client at it.
//
// It serves the upstream's batch object as [wire.Batch], the one Go shape of
// that object, written by encoding/json from the struct's tags (Put and
// PutWithExtra store one, Create returns one). It uses none of wire's
// decoding or encoding code (DecodeBatch, MarshalBatch, FromProto), so the
// gateway's reading of the upstream is still tested against JSON that code
// did not write; the shape itself is pinned to the provider's sample by
// wire's golden tests.
//
// # Endpoints
//
// Every request needs "Authorization: Bearer <key>". A missing key is
// answered 401 with type "invalid_request_error" and code "missing_api_key";
// a wrong key 401 with type and code "invalid_api_key".
//
//	GET    /v1/batches/{id}         the batch; unknown id: 404 not_found_error
//	GET    /v1/batches?after=&limit= list object, newest first, limit 1..100 (default 20)
//	POST   /v1/batches              create a batch (validating); body capped at 1 MiB
//	POST   /v1/batches/{id}/cancel  cancelling, then cancelled one Phase later
//	POST   /v1/files                upload a file: multipart/form-data, parts "purpose" ("batch") and "file" (with a filename)
//	GET    /v1/files?after=&limit=&purpose=&order=  list object of files, newest first (order=asc: oldest), limit 1..10000 (default 10000)
//	GET    /v1/files/{id}           the file object; unknown id: 404 not_found_error
//	DELETE /v1/files/{id}           {"id","object":"file","deleted":true}
//	GET    /v1/files/{id}/content   the file's bytes, application/octet-stream
//
// Any other path is answered 404 and a known path with the wrong method 405
// (with an Allow header). Every error body is the upstream's envelope
// {"error":{"message","type","param","code"}}, with code always a string.
//
// # Files
//
// Files are held in memory. An upload is read as it streams in and stored
// with status "processed"; a purpose other than "batch" is answered 400
// (param "purpose"), an empty file 400 (param "file"). A file larger than
// Options.MaxFileBytes (DefaultMaxFileBytes, 200 MB) is answered 413 with
// type "invalid_request_error" and code "file_too_large"; when the store's
// Options.MaxStoreBytes (DefaultMaxStoreBytes, 512 MiB) has no room for it,
// 400 with code "storage_full" (not a 5xx: retrying does not help until
// files are deleted). No more of a file is read than its limit, so a
// refused upload costs no more memory than an accepted one. PutFile stores
// a file directly, of any purpose and beyond the limits; FileContent reads
// one. Files never expire.
//
// # Lifecycle
//
// A batch made by POST /v1/batches (or Create) and the demo batch
// "batch_demo_progress" move through their lifecycle as a pure function of
// their creation time and Options.Now: validating for one Phase,
// in_progress for one Phase while request_counts.completed (and
// request_counts.failed) rises smoothly to the total, finalizing for one
// Phase, then completed with an output_file_id (when some requests
// succeeded) and an error_file_id (when some failed). Timestamps appear as
// their phase is reached. "batch_demo_validating" does the same on a ten
// times slower clock. Batches stored with Put are static: they are
// returned exactly as stored, until cancelled.
//
// The two moving demo batches cycle, so that whoever watches them sees a
// whole run however long after New they start: after one Phase (of their
// own clock) completed, a run ends and the next begins, validating again
// with created_at (and expires_at) moved to its start and in_progress_at,
// finalizing_at, completed_at, the request counts and the file ids starting
// over. A cycle is four Phases: 40 s for "batch_demo_progress" and 400 s
// for "batch_demo_validating" (non-terminal for the first 300 s of each)
// with DefaultPhase. A cancel holds until the end of its run's cycle; the
// next run starts afresh. Batches made by POST /v1/batches or Create never
// cycle. The list orders the demo batches by their current created_at, so
// a listing paged across a cycle's end may see one twice or miss it.
//
// # Batches of uploaded files
//
// POST /v1/batches needs an input_file_id naming a stored file of purpose
// "batch" (else 400 invalid_request_error, param "input_file_id"). The
// file is read at the create: JSONL, one request
// {"custom_id","method":"POST","url","body":{"model",...}} a line, blank
// lines ignored, at most MaxInputLines requests, custom_ids unique, url the
// batch's endpoint. A file that does not pass fails the batch one Phase in
// (validating, then failed with failed_at, request_counts all zero and
// errors.data naming each bad line, up to 100 of them, with codes such as
// "invalid_json_line", "invalid_value" (param "url", "method" or "body"),
// "missing_required_parameter", "duplicate_custom_id", "empty_file" and
// "too_many_requests"). Otherwise request_counts.total is the number of
// requests and they run in file order.
//
// The fail rule: a request whose custom_id begins with FailPrefix ("fail")
// fails; every other succeeds. When the batch is terminal its output file
// holds one result line {"id":"batch_req_<hex>","custom_id",
// "response":{"status_code":200,"request_id","body":<a chat.completion
// echoing the request's model>},"error":null} for each request that
// succeeded, and its error file one with "status_code":400 and the
// upstream's error envelope as body (code "simulated_failure") for each
// that failed, both in input order, with purpose "batch_output",
// created at the instant the batch became terminal, and with expires_at
// when the create asked for output_expires_after. A batch cancelled (or
// expired) part way has the results of the requests it ran before the
// cancel: the first request_counts.completed+failed of the file. The
// input file may be deleted once the batch is made.
//
// The results of a batch take room in the store from its create (its
// output and error files hold at most that much); a batch whose results
// do not fit fails validation with code "storage_full". A batch made by
// Create with an input_file_id that names no stored batch file (as tests
// of the watch path do) runs CreatedBatchTotal synthetic requests instead,
// "request-1" on, every 25th failing. The output and error files of such
// batches, and of the moving demo batches, are virtual: GET
// /v1/files/{id}, its content and DELETE serve them while the batch names
// them, written from the batch's state (the same bytes every time within a
// run), but they are not listed and take no room in the store.
//
// # Demo files
//
// New also seeds canned files that the static demo batches name and that
// do not count against Options.MaxStoreBytes: DemoInputFile (the input of
// "batch_demo_completed", so that GET /v1/files shows an uploaded file and
// a batch can be made of it), DemoOutputFile (its output), and the partial
// output and error files of "batch_demo_expired", DemoExpiredOutputFile
// (whose second line is not JSON, to test result parsers) and
// DemoExpiredErrorFile (error lines of both shapes: a 400 response, and a
// null response with an error object).
//
// # Faults
//
// InjectFaults queues failures (error statuses with Retry-After, raw or
// truncated bodies, delays, connection resets) for the next
// GET /v1/batches/{id} requests, so that retry and error handling can be
// tested deterministically; InjectCreateFaults, InjectUploadFaults and
// InjectContentFaults do the same for POST /v1/batches, POST /v1/files and
// GET /v1/files/{id}/content. A fault with AfterApply is applied after the
// request took effect, in place of its answer: a create answered 500, cut
// off by a reset, or left hanging until the client gives up, though the
// batch was made. Creates counts the batches POST /v1/batches made, so
// that a test can check a client did not make a second one by retrying.
package simulator
