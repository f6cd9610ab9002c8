package callinfo

import (
	"errors"
	"strings"
)

// Scopes is what a caller may do, a set of Scope bits. In key mode it comes
// from the caller's line of the tokens file; in the other modes it is
// Unrestricted (the upstream, or nobody, decides).
type Scopes uint8

// The scopes.
const (
	// ScopeRead: get, watch, list, results and file reads.
	ScopeRead Scopes = 1 << iota
	// ScopeWrite: create, cancel, upload and delete.
	ScopeWrite
	// ScopeAll: read and write reach every batch and file, also ones made
	// outside the gateway or by other callers; without it a caller reaches
	// only its own.
	ScopeAll
)

// DefaultScopes are the scopes of a tokens-file line that names none: read
// and write, on the caller's own batches and files.
const DefaultScopes = ScopeRead | ScopeWrite

// Unrestricted is every scope: the modes in which the gateway keeps no
// ownership (passthrough and none).
const Unrestricted = ScopeRead | ScopeWrite | ScopeAll

// Has reports whether s holds every scope of x.
func (s Scopes) Has(x Scopes) bool { return s&x == x }

var scopeNames = []struct {
	name  string
	scope Scopes
}{{"read", ScopeRead}, {"write", ScopeWrite}, {"all", ScopeAll}}

// String returns s as ParseScopes reads it, for example "read,write".
func (s Scopes) String() string {
	var names []string
	for _, n := range scopeNames {
		if s.Has(n.scope) {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// ParseScopes reads a comma-separated list of scope names: read, write,
// all. "all" alone means read,write,all; with read or write beside it, only
// those reach every batch ("read,all": read everything, write nothing).
// Names may not repeat; the list may not be empty.
func ParseScopes(list string) (Scopes, error) {
	var s Scopes
	for name := range strings.SplitSeq(list, ",") {
		var found Scopes
		for _, n := range scopeNames {
			if name == n.name {
				found = n.scope
			}
		}
		switch {
		case found == 0:
			return 0, errors.New("unknown scope (want read, write or all, comma-separated)")
		case s.Has(found):
			return 0, errors.New("a scope is named twice")
		}
		s |= found
	}
	if s == ScopeAll {
		s = Unrestricted
	}
	return s, nil
}
