// Package ownership decides which batches and files a caller may reach
// when many callers share the gateway's one upstream key (key mode).
//
// A batch created through the gateway carries its creator's name in the
// reserved metadata key MetaCaller; a caller reaches a batch when its
// scopes hold callinfo.ScopeAll or the batch names it. Files have no
// metadata upstream, so Files remembers, in memory and bounded, which
// caller uploaded a file or owns a batch that names it (input, output,
// error). That record is lost on restart and rebuilt as callers read their
// batches again; batch ownership itself lives upstream and survives.
package ownership

import (
	"container/list"
	"strings"
	"sync"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
	"github.com/batchgate/batchgate/internal/callinfo"
)

// Reserved metadata keys. Callers may not set keys with ReservedPrefix.
const (
	// ReservedPrefix starts every key the gateway reserves.
	ReservedPrefix = "batchgate_"
	// MetaCaller holds the name of the caller that created the batch (key
	// mode only).
	MetaCaller = ReservedPrefix + "caller"
	// MetaIdempotencyKey holds the create's idempotency key.
	MetaIdempotencyKey = ReservedPrefix + "idempotency_key"
)

// Restricted reports whether c reaches only its own batches and files.
func Restricted(c callinfo.Caller) bool { return !c.Scopes.Has(callinfo.ScopeAll) }

// Owner returns the name a batch records as its creator, "" for none.
func Owner(b *batchv1.Batch) string {
	return b.GetMetadata().GetPairs()[MetaCaller]
}

// CanSee reports whether c may reach b: unrestricted callers reach every
// batch, the others only the batches that name them.
func CanSee(c callinfo.Caller, b *batchv1.Batch) bool {
	return !Restricted(c) || (c.Name != "" && Owner(b) == c.Name)
}

// IsReserved reports whether a metadata key is the gateway's.
func IsReserved(key string) bool { return strings.HasPrefix(key, ReservedPrefix) }

// DefaultMaxFiles is the size of a Files record with a zero max.
const DefaultMaxFiles = 100_000

// Files remembers which caller owns which file, for the most recent max
// files (the least recently added or used are forgotten first). The zero
// value is not usable; create it with NewFiles. Safe for concurrent use.
type Files struct {
	mu    sync.Mutex
	max   int
	byID  map[string]*list.Element
	order list.List // of *fileEntry, most recent first
}

type fileEntry struct {
	id, owner string
}

// NewFiles returns an empty record of at most max files (DefaultMaxFiles
// when max <= 0).
func NewFiles(max int) *Files {
	if max <= 0 {
		max = DefaultMaxFiles
	}
	return &Files{max: max, byID: make(map[string]*list.Element)}
}

// Add records owner as the owner of file id. A file keeps its first owner:
// a second caller naming it (a batch of its own made from another's file
// cannot exist, since creates check the input file) does not take it over.
// Empty ids and owners are ignored.
func (f *Files) Add(id, owner string) {
	if id == "" || owner == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.byID[id]; ok {
		f.order.MoveToFront(e)
		return
	}
	f.byID[id] = f.order.PushFront(&fileEntry{id: id, owner: owner})
	for f.order.Len() > f.max {
		last := f.order.Back()
		delete(f.byID, last.Value.(*fileEntry).id)
		f.order.Remove(last)
	}
}

// AddBatch records b's owner as the owner of the files b names.
func (f *Files) AddBatch(b *batchv1.Batch) {
	owner := Owner(b)
	if owner == "" {
		return
	}
	f.Add(b.GetInputFileId(), owner)
	f.Add(b.GetOutputFileId(), owner)
	f.Add(b.GetErrorFileId(), owner)
}

// Remove forgets file id.
func (f *Files) Remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.byID[id]; ok {
		delete(f.byID, id)
		f.order.Remove(e)
	}
}

// CanSee reports whether c may reach file id: unrestricted callers reach
// every file, the others the files recorded as theirs.
func (f *Files) CanSee(c callinfo.Caller, id string) bool {
	if !Restricted(c) {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.byID[id]
	if !ok {
		return false
	}
	f.order.MoveToFront(e)
	return c.Name != "" && e.Value.(*fileEntry).owner == c.Name
}

// Len returns the number of files recorded.
func (f *Files) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.order.Len()
}
