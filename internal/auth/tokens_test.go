package auth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchgate/batchgate/internal/callinfo"
)

func TestParseTokens(t *testing.T) {
	t.Parallel()
	tok16 := strings.Repeat("x", MinTokenLen)
	tok512 := strings.Repeat("y", MaxTokenLen)
	name64 := strings.Repeat("n", MaxNameLen)
	tests := []struct {
		name    string
		in      string
		want    map[string]string // token -> name; nil when an error is expected
		wantErr string            // substring of the error
	}{
		{"good file", goodTokensFile, map[string]string{aliceToken: "alice", bobToken: "bob"}, ""},
		{"empty", "", map[string]string{}, ""},
		{"only comments and blanks", "# a\n\n   # indented\n\t\n#\n", map[string]string{}, ""},
		{"no final newline", "alice " + aliceToken, map[string]string{aliceToken: "alice"}, ""},
		{"CRLF", "# c\r\nalice " + aliceToken + "\r\n\r\nbob " + bobToken + "\r\n", map[string]string{aliceToken: "alice", bobToken: "bob"}, ""},
		{"whitespace variants", "  alice \t  " + aliceToken + " \t\n\tbob\t\t" + bobToken + "\t\n", map[string]string{aliceToken: "alice", bobToken: "bob"}, ""},
		{"byte order mark", "\xef\xbb\xbfalice " + aliceToken + "\n", map[string]string{aliceToken: "alice"}, ""},
		{"name charset and limits", name64 + " " + tok512 + "\nA.b_c-9 " + tok16 + "\n", map[string]string{tok512: name64, tok16: "A.b_c-9"}, ""},
		{"token with punctuation", "svc " + `!"#$%&'()*+,-./:;<=>?@[\]^_{|}~` + "\n", map[string]string{`!"#$%&'()*+,-./:;<=>?@[\]^_{|}~`: "svc"}, ""},

		{"bad name character", "# x\nal!ce " + aliceToken + "\n", nil, "line 2: a name must be"},
		{"name too long", name64 + "n " + aliceToken + "\n", nil, "line 1: a name must be"},
		{"non-ASCII name", "alicé " + aliceToken + "\n", nil, "line 1: only printable ASCII"},
		{"short token", "alice " + tok16[1:] + "\n", nil, "line 1: a token must be 16 to 512"},
		{"long token", "alice " + tok512 + "y\n", nil, "line 1: a token must be 16 to 512"},
		{"token only", "alice " + aliceToken + "\n" + bobToken + "\n", nil, `line 2: want "name token [scopes]", found 1 fields`},
		{"inline comment", "alice " + aliceToken + " # the first\n", nil, "line 1: want \"name token [scopes]\", found 5 fields"},
		{"unknown scope", "alice " + aliceToken + " read,admin\n", nil, "line 1: unknown scope"},
		{"repeated scope", "alice " + aliceToken + " read,read\n", nil, "line 1: a scope is named twice"},
		{"empty scope", "alice " + aliceToken + " read,\n", nil, "line 1: unknown scope"},
		{"duplicate name", "alice " + aliceToken + "\nbob " + bobToken + "\nalice " + carolToken + "\n", nil, "line 3: duplicate name (first on line 1)"},
		{"duplicate token", "alice " + aliceToken + "\n\nbob " + aliceToken + "\n", nil, "line 3: duplicate token (first on line 1)"},
		{"too-long line", "alice " + aliceToken + "\n#" + strings.Repeat(" ", maxLineLen) + "\n", nil, "line 2: longer than 1024 bytes"},
		{"non-ASCII token", "alice " + aliceToken + "é\n", nil, "line 1: only printable ASCII"},
		{"NUL in token", "alice " + aliceToken + "\x00\n", nil, "line 1: only printable ASCII"},
		{"lone CR", "alice " + aliceToken + "\rbob " + bobToken + "\n", nil, "line 1: only printable ASCII"},
		{"vertical tab separator", "alice\v" + aliceToken + "\n", nil, "line 1: only printable ASCII"},
		{"file too large", strings.Repeat("#\n", MaxTokensFileSize/2) + "x", nil, "larger than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTokens(strings.NewReader(tt.in))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("want an error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
				}
				for _, secret := range []string{aliceToken, bobToken, carolToken, tok16[1:], tok512} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q quotes a token", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTokens: %v", err)
			}
			if got.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", got.Len(), len(tt.want))
			}
			for tok, name := range tt.want {
				if n, ok := got.Lookup(tok); !ok || n != name {
					t.Errorf("Lookup(token of %s) = %q, %v", name, n, ok)
				}
			}
		})
	}
}

func TestParseTokensReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	_, err := ParseTokens(errReader{boom})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap the read error", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestLoadTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	big := filepath.Join(dir, "big")
	bad := filepath.Join(dir, "bad")
	for path, content := range map[string]string{
		good: goodTokensFile,
		big:  strings.Repeat("# padding\n", MaxTokensFileSize/10) + "alice " + aliceToken + "\n",
		bad:  "alice " + aliceToken + " extra\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		path    string
		wantLen int
		wantErr string
	}{
		{"good", good, 2, ""},
		{"missing", filepath.Join(dir, "nope"), 0, "no such file"},
		{"directory", dir, 0, "tokens file"},
		{"too large", big, 0, "larger than"},
		{"bad line names the file", bad, 0, bad + ": line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := LoadTokens(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), aliceToken) {
					t.Errorf("error %q quotes a token", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.Len() != tt.wantLen {
				t.Errorf("Len = %d, want %d", tok.Len(), tt.wantLen)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	toks, err := ParseTokens(strings.NewReader(goodTokensFile + "carol " + carolToken + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		token string
		want  string // "" means not found
	}{
		{aliceToken, "alice"},
		{bobToken, "bob"},
		{carolToken, "carol"},
		{"", ""},
		{"alice", ""},
		{aliceToken[:len(aliceToken)-1], ""},
		{aliceToken[1:], ""},
		{aliceToken + "x", ""},
		{"x" + aliceToken, ""},
		{aliceToken + "\n", ""},
		{" " + aliceToken, ""},
		{strings.ToUpper(aliceToken), ""},
		{strings.Replace(aliceToken, "alice", "Alice", 1), ""},
		{aliceToken + bobToken, ""},
		{strings.Repeat("z", MaxCredentialLen), ""},
	}
	for _, tt := range tests {
		name, ok := toks.Lookup(tt.token)
		if ok != (tt.want != "") || name != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.token, name, ok, tt.want)
		}
	}
	var none *Tokens
	if name, ok := none.Lookup(aliceToken); ok || name != "" || none.Len() != 0 {
		t.Errorf("nil Tokens: Lookup = %q, %v; Len = %d", name, ok, none.Len())
	}
}

// FuzzParseTokens checks that ParseTokens never panics, that its errors
// quote no token-sized field of the input, and that on success every
// "name token" line it accepted looks up to its name.
func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{
		goodTokensFile,
		"",
		"# only a comment",
		"\xef\xbb\xbfalice " + aliceToken + "\r\n",
		"a " + strings.Repeat("t", MinTokenLen),
		"a " + aliceToken + "\na " + bobToken,
		"a " + aliceToken + "\nb " + aliceToken,
		"a\t\t" + aliceToken + " \t",
		"alice " + aliceToken + " x",
		"é " + aliceToken,
		"a " + aliceToken + "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		toks, err := ParseTokens(bytes.NewReader(data))
		if err != nil {
			for _, field := range strings.Fields(string(data)) {
				if len(field) >= MinTokenLen && strings.Contains(err.Error(), field) {
					t.Fatalf("error %q quotes input %q", err, field)
				}
			}
			return
		}
		n := 0
		for _, line := range strings.Split(string(bytes.TrimPrefix(data, utf8BOM)), "\n") {
			line = strings.Trim(strings.TrimSuffix(line, "\r"), " \t")
			if line == "" || line[0] == '#' {
				continue
			}
			fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
			if len(fields) != 2 {
				t.Fatalf("accepted line %q with %d fields", line, len(fields))
			}
			if name, ok := toks.Lookup(fields[1]); !ok || name != fields[0] {
				t.Fatalf("Lookup(token of line %q) = %q, %v", line, name, ok)
			}
			n++
		}
		if toks.Len() != n {
			t.Fatalf("Len = %d, want %d", toks.Len(), n)
		}
	})
}

// TestTokenScopes: a line's optional third field sets its scopes; without
// it a token gets read and write on its own batches.
func TestTokenScopes(t *testing.T) {
	t.Parallel()
	toks, err := ParseTokens(strings.NewReader("alice " + aliceToken + "\nbob " + bobToken + " read\ncarol " + carolToken + " all\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		token string
		want  Caller
	}{
		{aliceToken, Caller{Name: "alice", Scopes: callinfo.ScopeRead | callinfo.ScopeWrite}},
		{bobToken, Caller{Name: "bob", Scopes: callinfo.ScopeRead}},
		{carolToken, Caller{Name: "carol", Scopes: callinfo.ScopeRead | callinfo.ScopeWrite | callinfo.ScopeAll}},
	} {
		if c, ok := toks.LookupCaller(tt.token); !ok || c != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.want.Name, c, ok, tt.want)
		}
	}
}
