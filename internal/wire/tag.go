package wire

import (
	"crypto/sha256"
	"encoding/base64"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

// TagPrefix starts every tag: it names the scheme (version 1: a hash of
// MarshalBatch's canonical JSON), so that a later scheme cannot be taken
// for this one.
const TagPrefix = "bt1_"

// TagLen is the length of every tag: TagPrefix and 16 bytes of SHA-256 in
// unpadded base64url.
const TagLen = len(TagPrefix) + 22

// Tag returns an opaque tag of b's state: TagPrefix followed by the first
// 16 bytes of the SHA-256 of MarshalBatch(b), in base64url without
// padding ("bt1_" and 22 characters of A-Z a-z 0-9 - _). It depends on
// nothing but what MarshalBatch writes, so a state has the same tag after
// a restart and on every replica, and two states that differ in anything
// a REST client can see have different tags. (upstream_status is not
// written, and status is written from it: a batch decoded from the
// upstream always has the two in step.) The tag is a valid HTTP entity-tag
// (quoted, it is an ETag) and a valid SSE event id. A nil b has the tag "".
//
// A change of the canonical JSON (a field added to it, say) changes every
// tag: a client holding an old one then gets one snapshot, or one 200,
// more than it needed.
func Tag(b *batchv1.Batch) string {
	data, err := MarshalBatch(b)
	if err != nil {
		return "" // only for nil: encoding/json cannot fail on a Batch
	}
	return TagJSON(data)
}

// TagJSON returns the tag of the batch whose MarshalBatch output is data:
// Tag(b) is TagJSON(MarshalBatch(b)). It lets a caller that has the JSON
// already (a REST answer) tag it without encoding the batch twice.
func TagJSON(data []byte) string {
	sum := sha256.Sum256(data)
	var out [TagLen]byte
	copy(out[:], TagPrefix)
	base64.RawURLEncoding.Encode(out[len(TagPrefix):], sum[:16])
	return string(out[:])
}
