package telemetry

import (
	"sync"
	"unicode/utf8"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// Caller label values that are not caller names.
const (
	// callerUnknown labels requests without a caller name: rejected before
	// authentication, or served without authentication.
	callerUnknown = "unknown"
	// callerOther labels names too long or not UTF-8, and, without
	// Options.CapCaller, requests of callers beyond the cap.
	callerOther = "other"
	// defaultMaxCallers caps the distinct capped caller names of one group
	// used as labels.
	defaultMaxCallers = 100
	// maxCallerLen is the longest caller name used as a label, in bytes.
	maxCallerLen = 128
)

// callerSet bounds the caller label. A name that its group function says is
// capped (one of a group anyone can add names to) keeps its own label only
// if it is among the first max distinct names of its group, which is
// identified by its overflow label; later ones get that overflow label.
// Other names (known callers) always keep their own label.
type callerSet struct {
	group func(name string) (overflow string, capped bool)
	seen  sync.Map // string → struct{}: names that keep their own label
	mu    sync.Mutex
	n     map[string]int // kept capped names per overflow label, under mu
	max   int
}

// newCallerSet returns a callerSet that keeps max names per group; a nil
// group puts every name in one group whose overflow label is "other".
func newCallerSet(max int, group func(string) (string, bool)) *callerSet {
	if group == nil {
		group = func(string) (string, bool) { return callerOther, true }
	}
	return &callerSet{group: group, n: make(map[string]int), max: max}
}

// label returns the caller label value for name.
func (c *callerSet) label(name string) string {
	if name == "" {
		return callerUnknown
	}
	if _, ok := c.seen.Load(name); ok {
		return name
	}
	if len(name) > maxCallerLen || !utf8.ValidString(name) {
		return callerOther
	}
	overflow, capped := c.group(name)
	if !capped {
		c.seen.Store(name, struct{}{})
		return name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen.Load(name); ok {
		return name
	}
	if c.n[overflow] >= c.max {
		return overflow
	}
	c.seen.Store(name, struct{}{})
	c.n[overflow]++
	return name
}

// caller returns the caller label of the call whose callinfo.Record is
// rec (nil: none): its caller's name, bounded by t.callers.
func (t *Telemetry) caller(rec *callinfo.Record) string {
	return t.callers.label(rec.CallerName())
}
