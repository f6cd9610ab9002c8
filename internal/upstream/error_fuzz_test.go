package upstream

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzStatusError feeds arbitrary error bodies and Retry-After headers to
// the error parser: it never panics, never waits longer than the cap or a
// negative time, keeps envelope fields short and printable, and never lets
// the secret through.
func FuzzStatusError(f *testing.F) {
	const secret = "sk-FUZZ-SECRET-0123456789"
	for _, s := range []struct{ body, ra, raMs string }{
		{`{"error":{"message":"m","type":"rate_limit_error","param":null,"code":"429"}}`, "3", ""},
		{`{"error":{"message":"Incorrect API key provided: sk-FUZZ-SECRET-0123456789","type":"invalid_api_key","code":401}}`, "", "1500"},
		{`{"error":"plain text sk-FUZZ-SECRET-0123456789"}`, "Wed, 21 Oct 2015 07:28:00 GMT", ""},
		{`<html>502 Bad Gateway</html>`, "-5", "abc"},
		{`{"error":{"type":{"nested":true},"code":[1,2],"param":"\u0000\u001b"}}`, "1e400", "NaN"},
		{``, "99999999999999999999", "-1"},
	} {
		f.Add(s.body, s.ra, s.raMs)
	}
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, body, ra, raMs string) {
		h := http.Header{}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		if raMs != "" {
			h.Set("Retry-After-Ms", raMs)
		}
		e := newStatusError(503, h, []byte(body), now, time.Minute, secret)
		if e.HTTPStatus != 503 {
			t.Fatalf("status %d", e.HTTPStatus)
		}
		if e.RetryAfter < 0 || e.RetryAfter > time.Minute {
			t.Fatalf("RetryAfter %v outside [0, 1m]", e.RetryAfter)
		}
		for _, field := range []string{e.Type, e.Code, e.Param} {
			if len(field) > maxEnvelopeFieldLen || strings.ContainsFunc(field, isCTL) || !utf8.ValidString(field) {
				t.Fatalf("envelope field %q is not short printable text", field)
			}
		}
		for _, s := range []string{e.Type, e.Code, e.Param, e.Message, e.Error()} {
			if strings.Contains(s, secret) {
				t.Fatalf("the secret got through: %q", s)
			}
		}
	})
}
