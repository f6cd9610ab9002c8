// Package loadtest measures the gateway end to end, from outside.
//
// Run measures WatchBatch fan-out: an upstream simulator with a counting
// wrapper, a gateway (a separate process, or in process for tests),
// thousands of gRPC and SSE watchers, and for comparison the same number
// of naive clients polling the upstream directly. cmd/loadwatch is its
// command line.
//
// RunFloor measures GetBatch against its floor: the simulator, two
// gateways (cache off and default cache) and the canned hops each run as
// a separate process, and MeasureFloor calls all seven targets in
// interleaved rounds. cmd/loadget is its command line. The README's
// Performance section quotes both.
//
// # Definitions
//
// The simulator's clock is wall time floored to a grid (Config.Tick), so
// every upstream change happens at a known instant; after the run the tool
// replays the simulator's history on that grid to get, per batch, the
// sequence of states and when each began (the timeline).
//
//   - Upstream requests per interval: GET /v1/batches/{id} requests the
//     simulator served, counted in consecutive whole poll intervals of the
//     steady window.
//   - Delivery latency (gRPC): a watcher's receipt time of a CHANGE minus
//     the event's observed_at_unix_ms, which the gateway sets when the poll
//     that saw the change returned. One sample per (watcher, observed
//     change); a watcher that skipped a state (conflation) counts from the
//     observation of the skipped state to its receipt of the later one.
//   - Delivery latency from the upstream response: the same, measured from
//     when the simulator wrote the response of the poll that first returned
//     the state; needs no field from the gateway, so it also covers SSE.
//   - Client-visible delay (staleness): from the instant the upstream
//     changed to a client's first receipt of that state or a later one:
//     for watchers, the wait for the gateway's next poll plus delivery; for
//     naive clients, the wait for their own next poll.
//   - Missed states (CheckStates): per watcher, the states of its batch
//     that began in the window, lasted longer than one poll interval on
//     the upstream, and never reached the watcher as themselves (a later
//     state in their place does not count). States shorter than an
//     interval may be skipped by design; these may not.
//   - Terminal events (CountTerminals): per watcher of a batch that became
//     terminal, whether it got that state in an event marked terminal.
//   - Resumption (RunReplicas with a kill): the killed replica's watchers
//     reconnect to the other replicas with the resume tag of their last
//     state; from the kill to the first event of the resumed stream.
//
// All times are wall-clock Unix microseconds on one machine, so the load
// tool and the gateway share the clock. The simulator's clock can jump
// forward once (Upstream.FinishIn), to bring the batches to their end;
// the timelines are replayed in wall time, through the jump.
package loadtest
