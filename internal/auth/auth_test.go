package auth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/wire"
)

func TestParseMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"key", ModeKey, true},
		{"passthrough", ModePassthrough, true},
		{"none", ModeNone, true},
		{"", "", false},
		{"KEY", "", false},
		{" key", "", false},
		{"anonymous", "", false},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	empty := filepath.Join(dir, "empty")
	bad := filepath.Join(dir, "bad")
	for path, content := range map[string]string{good: goodTokensFile, empty: "# nobody yet\n", bad: "alice short\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"key", Options{Mode: ModeKey, TokensFile: good}, ""},
		{"passthrough", Options{Mode: ModePassthrough}, ""},
		{"none", Options{Mode: ModeNone}, ""},
		{"no mode", Options{}, "unknown mode"},
		{"bad mode", Options{Mode: "Key"}, "unknown mode"},
		{"key without file", Options{Mode: ModeKey}, "needs a tokens file"},
		{"key with missing file", Options{Mode: ModeKey, TokensFile: filepath.Join(dir, "nope")}, "no such file"},
		{"key with bad file", Options{Mode: ModeKey, TokensFile: bad}, "line 1"},
		{"key with no tokens", Options{Mode: ModeKey, TokensFile: empty}, "lists no tokens"},
		{"passthrough with a file", Options{Mode: ModePassthrough, TokensFile: good}, "only used in key mode"},
		{"none with a file", Options{Mode: ModeNone, TokensFile: good}, "only used in key mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := New(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Mode() != tt.opts.Mode {
				t.Errorf("Mode = %q, want %q", a.Mode(), tt.opts.Mode)
			}
		})
	}
}

// wantReason asserts that err is an Unauthenticated status with reason and
// the ErrorInfo that makes it a 401 with code "invalid_api_key" over REST.
func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated {
		t.Fatalf("err = %v, want an Unauthenticated status", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			md := info.GetMetadata()
			if info.GetReason() != reason || info.GetDomain() != apierr.Domain ||
				md[apierr.MetaHTTPStatus] != "401" || md[apierr.MetaType] != "invalid_request_error" || md[apierr.MetaCode] != apierr.CodeInvalidAPIKey {
				t.Errorf("ErrorInfo = %v, want reason %s, 401, invalid_request_error, invalid_api_key", info, reason)
			}
			return
		}
	}
	t.Errorf("no ErrorInfo in %v", st)
}

func TestAuthenticateKey(t *testing.T) {
	t.Parallel()
	a := newAuth(t, ModeKey, goodTokensFile)
	tests := []struct {
		name   string
		value  string
		want   string // caller name; "" for a rejection
		reason string
	}{
		{"alice", "Bearer " + aliceToken, "alice", ""},
		{"bob", "Bearer " + bobToken, "bob", ""},
		{"lower-case scheme", "bearer " + aliceToken, "alice", ""},
		{"upper-case scheme", "BEARER " + aliceToken, "alice", ""},
		{"blanks around", " \tBearer  \t " + aliceToken + " \t", "alice", ""},

		{"absent", "", "", ReasonMissingToken},
		{"blanks only", " \t ", "", ReasonMissingToken},
		{"scheme only", "Bearer", "", ReasonMissingToken},
		{"scheme and blanks", "Bearer   ", "", ReasonMissingToken},
		{"token without scheme", aliceToken, "", ReasonInvalidToken},
		{"basic scheme", "Basic " + aliceToken, "", ReasonInvalidToken},
		{"scheme glued to token", "Bearer" + aliceToken, "", ReasonInvalidToken},
		{"unknown token", "Bearer " + carolToken, "", ReasonInvalidToken},
		{"prefix of a token", "Bearer " + aliceToken[:len(aliceToken)-1], "", ReasonInvalidToken},
		{"token with suffix", "Bearer " + aliceToken + "0", "", ReasonInvalidToken},
		{"token in other case", "Bearer " + strings.ToUpper(aliceToken), "", ReasonInvalidToken},
		{"two tokens", "Bearer " + aliceToken + " " + bobToken, "", ReasonInvalidToken},
		{"token and newline", "Bearer " + aliceToken + "\n", "", ReasonInvalidToken},
		{"token with NUL", "Bearer " + aliceToken + "\x00", "", ReasonInvalidToken},
		{"non-ASCII token", "Bearer " + aliceToken + "é", "", ReasonInvalidToken},
		{"oversized", "Bearer " + strings.Repeat("a", MaxCredentialLen+1), "", ReasonInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, err := a.Authenticate(context.Background(), tt.value)
			if tt.want == "" {
				if ctx != nil {
					t.Errorf("rejection returned a context")
				}
				wantReason(t, err, tt.reason)
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if c, ok := FromContext(ctx); !ok || c != (Caller{Name: tt.want, Scopes: callinfo.DefaultScopes}) {
				t.Errorf("Caller = %+v, %v; want %q", c, ok, tt.want)
			}
		})
	}
}

func TestAuthenticatePassthrough(t *testing.T) {
	t.Parallel()
	a := newAuth(t, ModePassthrough, "")
	caller := func(t *testing.T, value string) Caller {
		t.Helper()
		ctx, err := a.Authenticate(context.Background(), value)
		if err != nil {
			t.Fatalf("Authenticate(%q): %v", value, err)
		}
		c, ok := FromContext(ctx)
		if !ok {
			t.Fatal("no Caller")
		}
		if len(c.CredentialHash) != 64 {
			t.Errorf("CredentialHash %q is not 64 hex digits", c.CredentialHash)
		}
		if _, err := hex.DecodeString(c.CredentialHash); err != nil {
			t.Errorf("CredentialHash %q: %v", c.CredentialHash, err)
		}
		if c.Name != "passthrough:"+c.CredentialHash[:8] {
			t.Errorf("Name = %q, want passthrough: and the hash's first 8 digits", c.Name)
		}
		return c
	}

	alice, alice2 := caller(t, "Bearer "+aliceToken), caller(t, "bearer   "+aliceToken+" ")
	bob := caller(t, "Bearer "+bobToken)
	if alice != alice2 {
		t.Errorf("one credential, two Callers: %+v and %+v", alice, alice2)
	}
	if alice.CredentialHash == bob.CredentialHash || alice.Name == bob.Name {
		t.Errorf("two credentials, one Caller: %+v", alice)
	}
	// Any well-formed credential is let in: only the upstream knows.
	caller(t, "Bearer x")
	caller(t, "Bearer "+strings.Repeat("k", MaxCredentialLen))

	for _, tt := range []struct{ value, reason string }{
		{"", ReasonMissingToken},
		{"Bearer ", ReasonMissingToken},
		{"Basic " + aliceToken, ReasonInvalidToken},
		{"Bearer " + aliceToken + " more", ReasonInvalidToken},
		{"Bearer " + aliceToken + "\x7f", ReasonInvalidToken},
		{"Bearer " + strings.Repeat("k", MaxCredentialLen+1), ReasonInvalidToken},
	} {
		_, err := a.Authenticate(context.Background(), tt.value)
		wantReason(t, err, tt.reason)
	}
}

// TestIsPassthroughName: passthrough names are told apart from the names
// of the other modes, so that their metric labels can be capped.
func TestIsPassthroughName(t *testing.T) {
	t.Parallel()
	pass, err := newAuth(t, ModePassthrough, "").Authenticate(context.Background(), "Bearer "+aliceToken)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := FromContext(pass)
	for _, tt := range []struct {
		name string
		want bool
	}{
		{p.Name, true},
		{"alice", false},
		{AnonymousName, false},
		{"", false},
	} {
		if got := IsPassthroughName(tt.name); got != tt.want {
			t.Errorf("IsPassthroughName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !IsPassthroughName(PassthroughOther) || PassthroughOther == p.Name || validName(PassthroughOther) {
		t.Errorf("PassthroughOther %q must be a passthrough label no caller has", PassthroughOther)
	}
}

func TestAuthenticateNone(t *testing.T) {
	t.Parallel()
	a := newAuth(t, ModeNone, "")
	for _, v := range []string{"", "Bearer " + aliceToken, "garbage\x00"} {
		ctx, err := a.Authenticate(context.Background(), v)
		if err != nil {
			t.Fatalf("Authenticate(%q): %v", v, err)
		}
		if c, ok := FromContext(ctx); !ok || c != (Caller{Name: AnonymousName, Scopes: callinfo.Unrestricted}) {
			t.Errorf("Caller = %+v, %v", c, ok)
		}
	}
}

func TestZeroAuthenticatorFailsClosed(t *testing.T) {
	t.Parallel()
	var a Authenticator
	if _, err := a.Authenticate(context.Background(), "Bearer "+aliceToken); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("err = %v, want Unauthenticated", err)
	}
}

func TestFromContextEmpty(t *testing.T) {
	t.Parallel()
	if c, ok := FromContext(context.Background()); ok || c != (Caller{}) {
		t.Errorf("FromContext(empty) = %+v, %v", c, ok)
	}
	ctx := NewContext(context.Background(), Caller{Name: "x", CredentialHash: "y"})
	if c, ok := FromContext(ctx); !ok || c != (Caller{Name: "x", CredentialHash: "y"}) {
		t.Errorf("FromContext = %+v, %v", c, ok)
	}
}

// TestRejectionIs401Envelope runs the errors through apierr.WriteHTTP, as
// the REST front does.
func TestRejectionIs401Envelope(t *testing.T) {
	t.Parallel()
	a := newAuth(t, ModeKey, goodTokensFile)
	for _, tt := range []struct{ value, message string }{
		{"", "missing bearer token"},
		{"Bearer " + carolToken, "invalid bearer token"},
	} {
		_, err := a.Authenticate(context.Background(), tt.value)
		rec := httptest.NewRecorder()
		apierr.WriteHTTP(rec, apierr.FromError(err))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%q: status %d, want 401", tt.value, rec.Code)
		}
		var env wire.ErrorEnvelope
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			t.Fatalf("body %q: %v", rec.Body, err)
		}
		if env.Error.Code == nil || *env.Error.Code != apierr.CodeInvalidAPIKey || env.Error.Message != tt.message {
			t.Errorf("%q: envelope %+v, want code invalid_api_key, message %q", tt.value, env.Error, tt.message)
		}
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "alice "+aliceToken+"\n")
	a, err := New(Options{Mode: ModeKey, TokensFile: path})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, accepted, rejected []string) {
		t.Helper()
		for _, tok := range accepted {
			if _, err := a.Authenticate(context.Background(), "Bearer "+tok); err != nil {
				t.Errorf("%s: token %.12s… rejected: %v", step, tok, err)
			}
		}
		for _, tok := range rejected {
			if _, err := a.Authenticate(context.Background(), "Bearer "+tok); err == nil {
				t.Errorf("%s: token %.12s… accepted", step, tok)
			}
		}
	}
	check("start", []string{aliceToken}, []string{carolToken})

	rewrite(t, path, "carol "+carolToken+"\n")
	if err := a.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	check("after reload", []string{carolToken}, []string{aliceToken})

	for _, bad := range []struct{ name, content string }{
		{"duplicate names", "carol " + carolToken + "\ncarol " + aliceToken + "\n"},
		{"no tokens", "# everyone revoked?\n"},
		{"short token", "alice short\n"},
	} {
		rewrite(t, path, bad.content)
		if err := a.Reload(); err == nil {
			t.Errorf("Reload of a file with %s succeeded", bad.name)
		}
		check("after a bad reload ("+bad.name+")", []string{carolToken}, []string{aliceToken})
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil {
		t.Error("Reload of a missing file succeeded")
	}
	check("after the file went away", []string{carolToken}, []string{aliceToken})
}

func TestReloadOutsideKeyMode(t *testing.T) {
	t.Parallel()
	for _, m := range []Mode{ModePassthrough, ModeNone} {
		if err := newAuth(t, m, "").Reload(); err != nil {
			t.Errorf("%s: Reload = %v, want nil", m, err)
		}
	}
}

// TestReloadConcurrent reloads while calls are checked (run with -race):
// alice is in every version of the file, so she is never rejected.
func TestReloadConcurrent(t *testing.T) {
	t.Parallel()
	versions := []string{
		"alice " + aliceToken + "\n",
		"alice " + aliceToken + "\nbob " + bobToken + "\n",
		"bob " + bobToken + "\nalice " + aliceToken + "\ncarol " + carolToken + "\n",
	}
	path := writeFile(t, versions[0])
	a, err := New(Options{Mode: ModeKey, TokensFile: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				got, err := a.Authenticate(context.Background(), "Bearer "+aliceToken)
				if err != nil {
					t.Errorf("alice rejected during reloads: %v", err)
					return
				}
				if c, _ := FromContext(got); c.Name != "alice" {
					t.Errorf("Caller = %+v", c)
					return
				}
			}
		})
	}
	for i := range 50 {
		rewrite(t, path, versions[i%len(versions)])
		if err := a.Reload(); err != nil {
			t.Errorf("Reload: %v", err)
		}
	}
	cancel()
	wg.Wait()
}

// FuzzAuthenticate checks Authenticate on arbitrary authorization values:
// it never panics; in key mode it admits a value exactly when the value is
// "Bearer" (any case) and a known token separated and surrounded by blanks,
// with that token's name; in passthrough mode a Caller always comes with
// the hash of the credential the value carries; rejections are always one
// of the fixed Unauthenticated errors, so they cannot quote the value.
func FuzzAuthenticate(f *testing.F) {
	key := newAuth(f, ModeKey, goodTokensFile)
	pass := newAuth(f, ModePassthrough, "")
	none := newAuth(f, ModeNone, "")
	known := map[string]string{aliceToken: "alice", bobToken: "bob"}
	fixed := map[string]bool{}
	for _, e := range []error{errMissing, errScheme, errInvalid} {
		fixed[status.Convert(e).Message()] = true
	}
	for _, s := range []string{
		"", "Bearer", "Bearer ", "Bearer " + aliceToken, "bearer\t" + bobToken + " ", "Basic " + aliceToken,
		"Bearer " + aliceToken + " x", "Bearer " + carolToken, "Bearer\x00" + aliceToken, "Bearer " + aliceToken + "\r",
		" Bearer  " + aliceToken, "BeArEr " + aliceToken[:20],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fields := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' })
		wellFormed := len(fields) == 2 && strings.EqualFold(fields[0], "bearer")

		checkRejection := func(mode Mode, err error) {
			t.Helper()
			if st, ok := status.FromError(err); !ok || st.Code() != codes.Unauthenticated || !fixed[st.Message()] {
				t.Fatalf("%s: %q: err = %v, want a fixed Unauthenticated error", mode, v, err)
			}
		}

		ctx, err := key.Authenticate(context.Background(), v)
		name, isKnown := "", false
		if wellFormed {
			name, isKnown = known[fields[1]]
		}
		switch {
		case isKnown && err != nil:
			t.Fatalf("key: %q rejected: %v", v, err)
		case isKnown:
			if c, ok := FromContext(ctx); !ok || c != (Caller{Name: name, Scopes: callinfo.DefaultScopes}) {
				t.Fatalf("key: %q: Caller = %+v, %v; want %q", v, c, ok, name)
			}
		case err == nil:
			c, _ := FromContext(ctx)
			t.Fatalf("key: %q admitted as %+v, but it is not a known token", v, c)
		default:
			checkRejection(ModeKey, err)
		}

		ctx, err = pass.Authenticate(context.Background(), v)
		if err != nil {
			checkRejection(ModePassthrough, err)
		} else {
			if !wellFormed {
				t.Fatalf("passthrough: %q admitted, but it is not Bearer and one credential", v)
			}
			c, ok := FromContext(ctx)
			if !ok || c.CredentialHash != credentialHash(fields[1]) || c.Name != "passthrough:"+c.CredentialHash[:8] {
				t.Fatalf("passthrough: %q: Caller = %+v, %v", v, c, ok)
			}
		}

		if ctx, err = none.Authenticate(context.Background(), v); err != nil {
			t.Fatalf("none: %q rejected: %v", v, err)
		}
		if c, _ := FromContext(ctx); c.Name != AnonymousName {
			t.Fatalf("none: Caller = %+v", c)
		}
	})
}
