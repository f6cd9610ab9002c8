package upstream

import (
	"fmt"
	"unicode/utf8"
)

// MaxBatchIDLen is the longest batch id ValidateBatchID accepts, in bytes
// (which, for a valid id, is also its length in characters).
const MaxBatchIDLen = 256

// ValidateBatchID reports whether id is an acceptable upstream batch id: 1 to
// MaxBatchIDLen characters, each an ASCII letter, digit, '_' or '-'. That set
// is enough for every id the upstream hands out and keeps an id from ever
// naming another upstream path (no '/', '.', '%', '?', '#', spaces, control
// or non-ASCII characters).
//
// A rejected id yields an error wrapping ErrInvalidBatchID with a short
// reason; the error never repeats the id itself.
func ValidateBatchID(id string) error {
	if id == "" {
		return invalidBatchID("batch id is empty")
	}
	if len(id) > MaxBatchIDLen {
		return invalidBatchID(fmt.Sprintf("batch id is %d bytes long, longer than %d", len(id), MaxBatchIDLen))
	}
	for i := 0; i < len(id); i++ {
		if isBatchIDByte(id[i]) {
			continue
		}
		r, size := utf8.DecodeRuneInString(id[i:])
		if r == utf8.RuneError && size <= 1 {
			return invalidBatchID(fmt.Sprintf("batch id contains byte 0x%02x, which is not valid UTF-8", id[i]))
		}
		return invalidBatchID(fmt.Sprintf("batch id contains character %q not allowed in batch ids (only ASCII letters, digits, '_' and '-')", r))
	}
	return nil
}

func isBatchIDByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
}

func invalidBatchID(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidBatchID, reason)
}
