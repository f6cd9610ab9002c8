package upstream

import (
	"fmt"
	"unicode/utf8"
)

// MaxBatchIDLen is the longest batch id ValidateBatchID accepts, in bytes
// (which, for a valid id, is also its length in characters).
const MaxBatchIDLen = 256

// MaxFileIDLen is the longest file id ValidateFileID accepts, in bytes.
const MaxFileIDLen = 256

// ValidateBatchID reports whether id is an acceptable upstream batch id: 1 to
// MaxBatchIDLen characters, each an ASCII letter, digit, '_' or '-'. That set
// is enough for every id the upstream hands out and keeps an id from ever
// naming another upstream path (no '/', '.', '%', '?', '#', spaces, control
// or non-ASCII characters).
//
// A rejected id yields an error wrapping ErrInvalidBatchID with a short
// reason; the error never repeats the id itself.
func ValidateBatchID(id string) error {
	return validateID(id, "batch", MaxBatchIDLen, ErrInvalidBatchID)
}

// ValidateFileID reports whether id is an acceptable upstream file id, by
// the rules of ValidateBatchID: 1 to MaxFileIDLen characters, each an ASCII
// letter, digit, '_' or '-'.
//
// A rejected id yields an error wrapping ErrInvalidFileID with a short
// reason; the error never repeats the id itself.
func ValidateFileID(id string) error {
	return validateID(id, "file", MaxFileIDLen, ErrInvalidFileID)
}

// validateID checks id by the rules of ValidateBatchID; kind ("batch",
// "file") names it in the reason, which wraps sentinel.
func validateID(id, kind string, maxLen int, sentinel error) error {
	if id == "" {
		return invalidID(sentinel, kind+" id is empty")
	}
	if len(id) > maxLen {
		return invalidID(sentinel, fmt.Sprintf("%s id is %d bytes long, longer than %d", kind, len(id), maxLen))
	}
	for i := 0; i < len(id); i++ {
		if isIDByte(id[i]) {
			continue
		}
		r, size := utf8.DecodeRuneInString(id[i:])
		if r == utf8.RuneError && size <= 1 {
			return invalidID(sentinel, fmt.Sprintf("%s id contains byte 0x%02x, which is not valid UTF-8", kind, id[i]))
		}
		return invalidID(sentinel, fmt.Sprintf("%s id contains character %q not allowed in %s ids (only ASCII letters, digits, '_' and '-')", kind, r, kind))
	}
	return nil
}

func isIDByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
}

func invalidID(sentinel error, reason string) error {
	return fmt.Errorf("%w: %s", sentinel, reason)
}
