package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/webhooks"
)

// Test secrets: whsec_ and 32 bytes of base64.
var (
	secretA = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("a"), 32))
	secretB = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("b"), 32))
	keyA    = mustKey(secretA)
	keyB    = mustKey(secretB)
)

func mustKey(s string) []byte {
	k, err := ParseSecret(s)
	if err != nil {
		panic(err)
	}
	return k
}

var testNow = time.Unix(1_800_000_000, 0)

const testBody = `{"id":"evt_1","object":"event","type":"batch.completed","created_at":1800000000,"data":{"id":"batch_abc"}}`

// delivery returns headers of testBody signed with key at ts.
func delivery(key []byte, ts time.Time, body string) http.Header {
	return Headers(key, "msg_1", ts, []byte(body))
}

// sdkSign is the SDK's documented algorithm, computed independently.
func sdkSign(key []byte, id, ts, body string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestParseSecret(t *testing.T) {
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))
	for _, s := range []string{"", "whsec_", "abc", "whsec_!!!notbase64", short, "sk-" + secretA[6:], secretA + "x"} {
		_, err := NewVerifier(s)
		if err == nil {
			t.Errorf("NewVerifier(%q) succeeded", s)
			continue
		}
		if s != "" && len(s) > 8 && strings.Contains(err.Error(), s[6:]) {
			t.Errorf("error %q repeats the secret", err)
		}
	}
	if _, err := NewVerifier(secretA + ", " + secretB); err != nil {
		t.Fatalf("two secrets: %v", err)
	}
	_, err := NewVerifier(secretA + ",whsec_bad")
	if err == nil || !strings.Contains(err.Error(), "secret 2") || strings.Contains(err.Error(), "bad") {
		t.Errorf("bad second secret: %v", err)
	}
}

func TestVerify(t *testing.T) {
	one, _ := NewVerifier(secretA)
	rotated, _ := NewVerifier(secretB + "," + secretA) // A matches second
	good := func() http.Header { return delivery(keyA, testNow, testBody) }
	without := func(name string) http.Header { h := good(); delete(h, name); return h }
	with := func(name, v string) http.Header { h := good(); h[name] = []string{v}; return h }
	sigA := good()[HeaderSignature][0]
	sigB := Sign(keyB, "msg_1", testNow.Unix(), []byte(testBody))

	tests := []struct {
		name string
		v    *Verifier
		h    http.Header
		body string
		now  time.Time
		want Reason // 0: accepted
	}{
		{"good", one, good(), testBody, testNow, 0},
		{"missing id", one, without(HeaderID), testBody, testNow, ReasonMissingHeader},
		{"missing timestamp", one, without(HeaderTimestamp), testBody, testNow, ReasonMissingHeader},
		{"missing signature", one, without(HeaderSignature), testBody, testNow, ReasonMissingHeader},
		{"empty signature", one, with(HeaderSignature, ""), testBody, testNow, ReasonMissingHeader},
		{"wrong secret", one, delivery(keyB, testNow, testBody), testBody, testNow, ReasonBadSignature},
		{"rotated: second secret matches", rotated, good(), testBody, testNow, 0},
		{"rotated: first secret matches", rotated, delivery(keyB, testNow, testBody), testBody, testNow, 0},
		{"several signatures, last matches", one, with(HeaderSignature, sigB+" v1,AAAA "+sigA), testBody, testNow, 0},
		{"several signatures, none matches", one, with(HeaderSignature, sigB+" "+sigB), testBody, testNow, ReasonBadSignature},
		{"non-v1 version ignored", one, with(HeaderSignature, "v2,"+sigA[3:]), testBody, testNow, ReasonBadSignature},
		{"bare signature ignored", one, with(HeaderSignature, sigA[3:]), testBody, testNow, ReasonBadSignature},
		{"v1a version ignored", one, with(HeaderSignature, "v1a,"+sigA[3:]), testBody, testNow, ReasonBadSignature},
		{"stale", one, good(), testBody, testNow.Add(Tolerance + time.Second), ReasonStale},
		{"just within tolerance", one, good(), testBody, testNow.Add(Tolerance), 0},
		{"future", one, good(), testBody, testNow.Add(-Tolerance - time.Second), ReasonStale},
		{"timestamp not an integer", one, with(HeaderTimestamp, "soon"), testBody, testNow, ReasonMalformed},
		{"timestamp altered", one, with(HeaderTimestamp, strconv.FormatInt(testNow.Unix()+1, 10)), testBody, testNow, ReasonBadSignature},
		{"id altered", one, with(HeaderID, "msg_2"), testBody, testNow, ReasonBadSignature},
		{"body altered", one, good(), strings.Replace(testBody, "batch_abc", "batch_abd", 1), testNow, ReasonBadSignature},
		{"malformed JSON, signed", one, delivery(keyA, testNow, `{"id":`), `{"id":`, testNow, ReasonMalformed},
		{"not an event, signed", one, delivery(keyA, testNow, `{"id":"x","object":"batch","type":"t"}`), `{"id":"x","object":"batch","type":"t"}`, testNow, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := tt.v.Verify(tt.h, []byte(tt.body), tt.now)
			if got := ReasonOf(err); got != tt.want || (err != nil) != (tt.want != 0) {
				t.Fatalf("Verify = %v (reason %v), want reason %v", err, got, tt.want)
			}
			if tt.want == 0 && (ev.Type != "batch.completed" || ev.Data.ID != "batch_abc" || ev.ID != "evt_1") {
				t.Errorf("event = %+v", ev)
			}
			if err != nil && strings.ContainsAny(err.Error(), "=,{") {
				t.Errorf("error %q carries detail", err)
			}
		})
	}
}

// TestSignMatchesSDKAlgorithm: Sign is the documented algorithm.
func TestSignMatchesSDKAlgorithm(t *testing.T) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	if got, want := Sign(keyA, "msg_1", testNow.Unix(), []byte(testBody)), sdkSign(keyA, "msg_1", ts, testBody); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	long := strings.Repeat("x", 1000) // ids longer than writeSigned's buffer
	if got, want := Sign(keyA, long, 7, nil), sdkSign(keyA, long, "7", ""); got != want {
		t.Fatalf("Sign(long id) = %s, want %s", got, want)
	}
}

// TestCrossCheckSDK: the official Go SDK's verifier accepts and refuses
// the same deliveries as Verify (its own signatures, and ours). The SDK
// also takes a signature without the "v1," prefix; Verify ignores it (the
// Standard Webhooks rule), so such inputs are left out.
func TestCrossCheckSDK(t *testing.T) {
	sdk := webhooks.NewWebhookService(option.WithWebhookSecret(secretA))
	v, _ := NewVerifier(secretA)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	hdr := func(id, ts, sig string) http.Header {
		return http.Header{HeaderID: {id}, HeaderTimestamp: {ts}, HeaderSignature: {sig}}
	}
	other := strings.Replace(testBody, "abc", "xyz", 1)
	cases := []struct {
		name string
		h    http.Header
		body string
		now  time.Time
	}{
		{"sdk-signed", hdr("msg_1", ts, sdkSign(keyA, "msg_1", ts, testBody)), testBody, testNow},
		{"our-signed", delivery(keyA, testNow, testBody), testBody, testNow},
		{"wrong key", hdr("msg_1", ts, sdkSign(keyB, "msg_1", ts, testBody)), testBody, testNow},
		{"two sigs", hdr("msg_1", ts, sdkSign(keyB, "msg_1", ts, testBody)+" "+sdkSign(keyA, "msg_1", ts, testBody)), testBody, testNow},
		{"v2 only", hdr("msg_1", ts, "v2,"+sdkSign(keyA, "msg_1", ts, testBody)[3:]), testBody, testNow},
		{"body altered", hdr("msg_1", ts, sdkSign(keyA, "msg_1", ts, testBody)), other, testNow},
		{"stale", hdr("msg_1", ts, sdkSign(keyA, "msg_1", ts, testBody)), testBody, testNow.Add(Tolerance + time.Second)},
		{"edge of tolerance", hdr("msg_1", ts, sdkSign(keyA, "msg_1", ts, testBody)), testBody, testNow.Add(-Tolerance)},
		{"future", hdr("msg_1", ts, sdkSign(keyA, "msg_1", ts, testBody)), testBody, testNow.Add(-Tolerance - time.Second)},
		{"no id", hdr("", ts, sdkSign(keyA, "", ts, testBody)), testBody, testNow},
		{"bad ts", hdr("msg_1", "x", sdkSign(keyA, "msg_1", "x", testBody)), testBody, testNow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sdkErr := sdk.VerifySignatureWithToleranceAndTime([]byte(c.body), c.h, Tolerance, c.now)
			_, err := v.Verify(c.h, []byte(c.body), c.now)
			// Verify also parses the body; every body here is an event.
			if (sdkErr == nil) != (err == nil) {
				t.Fatalf("SDK: %v, Verify: %v", sdkErr, err)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	v, _ := NewVerifier(secretA + "," + secretB)
	good := delivery(keyA, testNow, testBody)
	f.Add("msg_1", good[HeaderTimestamp][0], good[HeaderSignature][0], []byte(testBody), int64(0))
	f.Add("msg_1", "1800000000", "v1,AAAA v1, v2,x", []byte(`{}`), int64(10))
	f.Add("", "", "", []byte(nil), int64(-400))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte, skew int64) {
		h := http.Header{HeaderID: {id}, HeaderTimestamp: {ts}, HeaderSignature: {sig}}
		now := testNow.Add(time.Duration(skew) * time.Second)
		ev, err := v.Verify(h, body, now)
		if err != nil {
			if ReasonOf(err) == 0 {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if _, perr := strconv.ParseInt(ts, 10, 64); perr != nil {
			t.Fatal("accepted a timestamp that is not an integer")
		}
		// The HMAC is over the header text of the timestamp.
		fields := " " + sig + " "
		okA := strings.Contains(fields, " "+sdkSign(keyA, id, ts, string(body))+" ")
		okB := strings.Contains(fields, " "+sdkSign(keyB, id, ts, string(body))+" ")
		if !okA && !okB {
			t.Fatalf("accepted without a valid HMAC: id=%q ts=%q sig=%q", id, ts, sig)
		}
		if ev.Object != "event" {
			t.Fatalf("accepted a body that is not an event: %+v", ev)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	v, _ := NewVerifier(secretA)
	body := []byte(testBody)
	good := delivery(keyA, testNow, testBody)
	bad := delivery(keyB, testNow, testBody)
	b.Run("good", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(good, body, testNow); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bad_signature", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(bad, body, testNow); err == nil {
				b.Fatal("accepted")
			}
		}
	})
	big := bytes.Repeat([]byte("x"), MaxBodyBytes)
	badBig := delivery(keyB, testNow, string(big))
	b.Run("bad_signature_1MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(big)))
		for b.Loop() {
			if _, err := v.Verify(badBig, big, testNow); err == nil {
				b.Fatal("accepted")
			}
		}
	})
}
