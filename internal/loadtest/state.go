package loadtest

import (
	"encoding/json"
	"time"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"

	"github.com/batchgate/batchgate/internal/wire"
)

// FP fingerprints a state of one progressing simulator batch: its status
// and request counts. Every field that changes during a progressing batch's
// lifecycle (timestamps, file ids) changes together with one of these, so
// within one batch two different states have different fingerprints.
type FP struct {
	// Status is the batchv1.BatchStatus of the upstream's status string
	// (wire.StatusFromString), kept in a byte.
	Status    uint8
	Completed int32
	Failed    int32
}

// Terminal reports whether the state's status is terminal.
func (f FP) Terminal() bool { return wire.IsTerminalStatus(batchv1.BatchStatus(f.Status)) }

// MakeFP returns the fingerprint of a batch with the given upstream status
// string and request counts.
func MakeFP(status string, completed, failed int64) FP {
	return FP{Status: uint8(wire.StatusFromString(status)), Completed: int32(completed), Failed: int32(failed)}
}

// batchJSON is the part of the upstream's batch JSON (wire.Batch) a
// fingerprint needs: the load tool parses every event of every watcher.
type batchJSON struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	RequestCounts struct {
		Completed int64 `json:"completed"`
		Failed    int64 `json:"failed"`
	} `json:"request_counts"`
}

// ParseFP reads the fingerprint (and id) of a batch in the upstream's JSON
// shape.
func ParseFP(data []byte) (FP, string, error) {
	var b batchJSON
	if err := json.Unmarshal(data, &b); err != nil {
		return FP{}, "", err
	}
	return MakeFP(b.Status, b.RequestCounts.Completed, b.RequestCounts.Failed), b.ID, nil
}

// State is one state of a batch's upstream timeline: the fingerprint and
// the instant (Unix µs) the upstream started returning it.
type State struct {
	At int64
	FP FP
}

// Timeline is the upstream history of one batch: its states in order, and
// their indexes by fingerprint.
type Timeline struct {
	States []State
	index  map[FP]int
}

// NewTimeline returns the timeline of states, which must be in order.
func NewTimeline(states []State) *Timeline {
	t := &Timeline{States: states, index: make(map[FP]int, len(states))}
	for i, s := range states {
		if _, dup := t.index[s.FP]; !dup {
			t.index[s.FP] = i
		}
	}
	return t
}

// Index returns the position of fp in the timeline.
func (t *Timeline) Index(fp FP) (int, bool) {
	i, ok := t.index[fp]
	return i, ok
}

// At returns the state in force at instant at (Unix µs), and false before
// the first state.
func (t *Timeline) At(at int64) (State, bool) {
	var cur State
	ok := false
	for _, s := range t.States {
		if s.At > at {
			break
		}
		cur, ok = s, true
	}
	return cur, ok
}

// Event is something that happened to one batch and that a client should
// see: state Idx of its timeline, at instant At (Unix µs).
type Event struct {
	Idx int
	At  int64
}

// Seen is one state a client received: the timeline index and when
// (Unix µs). A client's Seen values are in arrival order, and their indexes
// never decrease (a batch's state only moves forward).
type Seen struct {
	Idx int
	At  int64
}

// Delivery is the outcome of matching a client's receipts to a batch's
// events.
type Delivery struct {
	// Delays has one value per event the client saw: the time from the
	// event to the client's first receipt of that state or a later one.
	Delays []time.Duration
	// Skipped counts events the client first saw as a later state
	// (conflation); each still has a delay in Delays.
	Skipped int
	// Missed counts events the client never saw, not even as a later state.
	Missed int
}

// Deliver matches one client's receipts (in arrival order, indexes
// non-decreasing) against events sorted by index, and appends to d. An
// event counts as delivered by the client's first receipt with an index at
// least the event's: a client that missed an intermediate state but got a
// newer one has seen the change, late if at all.
func Deliver(d *Delivery, seen []Seen, events []Event) {
	p := 0
	for _, e := range events {
		for p < len(seen) && seen[p].Idx < e.Idx {
			p++
		}
		if p == len(seen) {
			d.Missed++
			continue
		}
		if seen[p].Idx > e.Idx {
			d.Skipped++
		}
		d.Delays = append(d.Delays, time.Duration(seen[p].At-e.At)*time.Microsecond)
	}
}
