// Package webhook receives the upstream's webhooks: events signed as
// Standard Webhooks and the OpenAI SDKs do it, which say that a batch has
// ended. A Verifier checks a delivery; a Receiver serves the webhook
// endpoint, verifies, deduplicates and acknowledges deliveries at once and
// then pokes the shared pollers of the batch (a Poker), so that watchers
// and caches learn of the end within a second instead of at the next poll.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tolerance is how far a delivery's webhook-timestamp may be from the
// receiver's clock, either way.
const Tolerance = 5 * time.Minute

// SecretPrefix starts every signing secret; the rest is base64.
const SecretPrefix = "whsec_"

// minSecretBytes is the shortest decoded secret accepted (Standard
// Webhooks symmetric keys have at least 24 bytes; so does the OpenAI SDK).
const minSecretBytes = 24

// The signed headers, in canonical form (looked up without
// canonicalization, which would allocate).
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// Reason says why a delivery was refused.
type Reason int

// The reasons of Error.
const (
	// ReasonMissingHeader: webhook-id, webhook-timestamp or
	// webhook-signature is missing or empty.
	ReasonMissingHeader Reason = iota + 1
	// ReasonBadSignature: no v1 signature matches any secret.
	ReasonBadSignature
	// ReasonStale: the timestamp is more than Tolerance away from now.
	ReasonStale
	// ReasonMalformed: a timestamp that is not an integer, a body that is
	// too large or is not an event.
	ReasonMalformed
)

// String returns the reason as a metric label: missing_header,
// bad_signature, stale or malformed.
func (r Reason) String() string {
	switch r {
	case ReasonMissingHeader:
		return "missing_header"
	case ReasonBadSignature:
		return "bad_signature"
	case ReasonStale:
		return "stale"
	case ReasonMalformed:
		return "malformed"
	}
	return "unknown"
}

// Error is the one error type of Verify. It carries no detail of the
// delivery: its text is only the reason.
type Error struct{ Reason Reason }

func (e *Error) Error() string { return "webhook: refused: " + e.Reason.String() }

// Pre-made errors, so that refusing allocates nothing.
var (
	errMissingHeader = &Error{ReasonMissingHeader}
	errBadSignature  = &Error{ReasonBadSignature}
	errStale         = &Error{ReasonStale}
	errMalformed     = &Error{ReasonMalformed}
)

// ReasonOf returns the reason of a Verify error, 0 for nil or another
// error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return 0
}

// Event is a verified delivery's body:
// {id, object:"event", type, created_at, data:{id}}.
type Event struct {
	ID        string    `json:"id"`
	Object    string    `json:"object"`
	Type      string    `json:"type"`
	CreatedAt int64     `json:"created_at"`
	Data      EventData `json:"data"`
}

// EventData is the object an event is about; for batch events, the batch.
type EventData struct {
	ID string `json:"id"`
}

// Verifier checks deliveries against one or more secrets. It is safe for
// concurrent use.
type Verifier struct {
	keys []*key
}

// key is one decoded secret and a pool of HMACs keyed with it.
type key struct {
	pool sync.Pool // of hash.Hash
}

func newKey(secret []byte) *key {
	k := &key{}
	k.pool.New = func() any { return hmac.New(sha256.New, secret) }
	return k
}

// ParseSecret decodes one "whsec_<base64>" secret. Its errors never
// repeat the secret.
func ParseSecret(s string) ([]byte, error) {
	enc, ok := strings.CutPrefix(strings.TrimSpace(s), SecretPrefix)
	if !ok {
		return nil, errors.New("webhook secret: must start with " + SecretPrefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil || base64.StdEncoding.EncodeToString(b) != enc {
		return nil, errors.New("webhook secret: the part after " + SecretPrefix + " must be canonical standard base64")
	}
	if len(b) < minSecretBytes {
		return nil, fmt.Errorf("webhook secret: must decode to at least %d bytes", minSecretBytes)
	}
	return b, nil
}

// NewVerifier returns a Verifier of secrets: one or more comma-separated
// "whsec_<base64>" secrets, any of which may have signed a delivery (to
// rotate, list the new secret with the old one, then drop the old one).
// Its errors say which secret (by position) is wrong, never the secret.
func NewVerifier(secrets string) (*Verifier, error) {
	v := &Verifier{}
	for i, s := range strings.Split(secrets, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		b, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d of the list: %w", i+1, err)
		}
		v.keys = append(v.keys, newKey(b))
	}
	if len(v.keys) == 0 {
		return nil, errors.New("webhook secret: none given")
	}
	return v, nil
}

// sigLen is the length of a base64 HMAC-SHA256 signature.
const sigLen = 44

// Verify checks a delivery as Standard Webhooks says: the three headers
// present; the timestamp within Tolerance of now; one of the
// space-separated "v1,<base64>" signatures of webhook-signature the
// HMAC-SHA256, with one of the secrets, of "<id>.<timestamp>.<body>"
// (every secret against every signature, in constant time; other
// versions are ignored); then the body an event. It returns the event or
// an *Error. It allocates nothing of its own but the parsed event.
func (v *Verifier) Verify(h http.Header, body []byte, now time.Time) (Event, error) {
	id, ts, sigs := first(h, HeaderID), first(h, HeaderTimestamp), first(h, HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return Event{}, errMissingHeader
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Event{}, errMalformed
	}
	tol := int64(Tolerance / time.Second)
	if n := now.Unix(); n-sec > tol || sec-n > tol {
		return Event{}, errStale
	}
	if !v.signed(id, ts, body, sigs) {
		return Event{}, errBadSignature
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.Object != "event" || ev.Type == "" || ev.ID == "" {
		return Event{}, errMalformed
	}
	return ev, nil
}

// signed reports whether one of sigs is the signature of id.ts.body with
// one of the keys.
func (v *Verifier) signed(id, ts string, body []byte, sigs string) bool {
	var sum [sha256.Size]byte
	var want [sigLen]byte
	ok := 0
	for _, k := range v.keys {
		mac := k.pool.Get().(hash.Hash)
		mac.Reset()
		writeSigned(mac, id, ts, body)
		mac.Sum(sum[:0])
		k.pool.Put(mac)
		base64.StdEncoding.Encode(want[:], sum[:])
		for s := range strings.SplitSeq(sigs, " ") {
			b64, isV1 := strings.CutPrefix(s, "v1,")
			if !isV1 || len(b64) != sigLen {
				continue // other versions, empty fields, wrong lengths
			}
			ok |= equal(&want, b64)
		}
	}
	return ok == 1
}

// equal compares want and s, of the same length, in constant time: 1 when
// equal.
func equal(want *[sigLen]byte, s string) int {
	var d byte
	for i := range want {
		d |= want[i] ^ s[i]
	}
	return subtle.ConstantTimeByteEq(d, 0)
}

// writeSigned writes the signed content id.ts.body to mac.
func writeSigned(mac hash.Hash, id, ts string, body []byte) {
	// hash.Hash writes never fail; io.WriteString does not copy for
	// hashes that are StringWriters and copies small strings otherwise.
	var buf [128]byte
	for _, s := range []string{id, ".", ts, "."} {
		for len(s) > 0 {
			n := copy(buf[:], s)
			mac.Write(buf[:n])
			s = s[n:]
		}
	}
	mac.Write(body)
}

// first returns the first value of the canonical header name.
func first(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Sign returns the "v1,<base64>" signature of a delivery with the decoded
// secret key (see ParseSecret): HMAC-SHA256 of "<id>.<ts>.<body>", ts in
// Unix seconds.
func Sign(key []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	writeSigned(mac, id, strconv.FormatInt(ts, 10), body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Headers returns the headers of a delivery of body signed with key, sent
// at ts: webhook-id, webhook-timestamp, webhook-signature and a JSON
// Content-Type.
func Headers(key []byte, id string, ts time.Time, body []byte) http.Header {
	return http.Header{
		HeaderID:        {id},
		HeaderTimestamp: {strconv.FormatInt(ts.Unix(), 10)},
		HeaderSignature: {Sign(key, id, ts.Unix(), body)},
		"Content-Type":  {"application/json"},
	}
}
