package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// Limits of a tokens file.
const (
	// MaxTokensFileSize caps a tokens file (1 MiB).
	MaxTokensFileSize = 1 << 20
	// MaxNameLen is the longest token name.
	MaxNameLen = 64
	// MinTokenLen and MaxTokenLen bound a token's length.
	MinTokenLen, MaxTokenLen = 16, 512
	// maxLineLen caps one line of a tokens file, comments included.
	maxLineLen = 1024
)

// Process-wide random HMAC keys, so that nothing derived from a token or a
// credential is useful outside this process: tokenKey for the digests
// Tokens keeps instead of the tokens, credentialKey for
// Caller.CredentialHash.
var tokenKey, credentialKey = randomKey(), randomKey()

func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (it crashes the program instead)
	return k
}

// digest is the fixed-length stand-in for a token that Tokens compares.
type digest [sha256.Size]byte

// macPool reuses keyed HMACs: New is the costly part of a digest (it hashes
// the key), Reset is cheap. Every call's digest is checked on every request.
type macPool struct {
	key  []byte
	pool sync.Pool
}

func newMACPool(key []byte) *macPool {
	p := &macPool{key: key}
	p.pool.New = func() any { return hmac.New(sha256.New, p.key) }
	return p
}

// sum returns the HMAC-SHA256 of s under the pool's key.
func (p *macPool) sum(s string) digest {
	m := p.pool.Get().(hash.Hash)
	m.Reset()
	_, _ = io.WriteString(m, s)
	var d digest
	m.Sum(d[:0])
	p.pool.Put(m)
	return d
}

var tokenMACs, credentialMACs = newMACPool(tokenKey), newMACPool(credentialKey)

func tokenDigest(token string) digest { return tokenMACs.sum(token) }

// Tokens is a parsed tokens file: the gateway tokens callers may present in
// key mode, each with the name it is known by in logs and metrics. It keeps
// keyed digests of the tokens, never the tokens themselves. A Tokens is
// immutable and safe for concurrent use; the nil *Tokens holds no tokens.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name   string
	digest digest
	scopes callinfo.Scopes
}

// ParseTokens reads a tokens file from r: one "name token [scopes]" line
// per caller, the fields separated by spaces or tabs, scopes as
// callinfo.ParseScopes reads them (read, write, all; comma-separated;
// callinfo.DefaultScopes when absent), with leading and trailing blanks, CRLF line
// endings and a UTF-8 byte order mark tolerated. Blank lines and lines
// whose first non-blank character is # are ignored.
//
// Names are 1 to MaxNameLen characters of A-Z a-z 0-9 . _ -; tokens are
// MinTokenLen to MaxTokenLen printable ASCII characters without spaces.
// Duplicate names and duplicate tokens are rejected, as are lines longer
// than 1 KiB and input larger than MaxTokensFileSize. Errors give the line
// number and never quote the line, since it may hold a token.
func ParseTokens(r io.Reader) (*Tokens, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxTokensFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("auth: reading tokens: %w", err)
	}
	t, err := parseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("auth: tokens: %w", err)
	}
	return t, nil
}

// LoadTokens reads and parses the tokens file at path; see ParseTokens.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: tokens file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxTokensFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("auth: tokens file: %w", err)
	}
	t, err := parseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("auth: tokens file %s: %w", path, err)
	}
	return t, nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// parseTokens does the work of ParseTokens on at most
// MaxTokensFileSize+1 bytes.
func parseTokens(data []byte) (*Tokens, error) {
	if len(data) > MaxTokensFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxTokensFileSize)
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	t := &Tokens{}
	names := map[string]int{}   // name -> line
	digests := map[digest]int{} // token digest -> line
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		if len(line) > maxLineLen {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n, maxLineLen)
		}
		line = strings.Trim(strings.TrimSuffix(line, "\r"), " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		for j := 0; j < len(line); j++ {
			if b := line[j]; !isBlank(b) && !isVisibleASCII(b) {
				return nil, fmt.Errorf("line %d: only printable ASCII characters, spaces and tabs are allowed", n)
			}
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(fields) != 2 && len(fields) != 3 {
			return nil, fmt.Errorf(`line %d: want "name token [scopes]", found %d fields`, n, len(fields))
		}
		name, token, scopes := fields[0], fields[1], callinfo.DefaultScopes
		if len(fields) == 3 {
			var err error
			if scopes, err = callinfo.ParseScopes(fields[2]); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		if !validName(name) {
			return nil, fmt.Errorf("line %d: a name must be 1 to %d characters of A-Z a-z 0-9 . _ -", n, MaxNameLen)
		}
		if len(token) < MinTokenLen || len(token) > MaxTokenLen {
			return nil, fmt.Errorf("line %d: a token must be %d to %d characters long", n, MinTokenLen, MaxTokenLen)
		}
		if first, dup := names[name]; dup {
			return nil, fmt.Errorf("line %d: duplicate name (first on line %d)", n, first)
		}
		d := tokenDigest(token)
		if first, dup := digests[d]; dup {
			return nil, fmt.Errorf("line %d: duplicate token (first on line %d)", n, first)
		}
		names[name], digests[d] = n, n
		t.entries = append(t.entries, tokenEntry{name: name, digest: d, scopes: scopes})
	}
	return t, nil
}

// Lookup returns the name of token, and whether it is one of t's tokens.
// It takes the same time whichever token matches, and whether one does: it
// compares the token's digest with every entry's in constant time, without
// stopping at a match.
func (t *Tokens) Lookup(token string) (name string, ok bool) {
	c, ok := t.LookupCaller(token)
	return c.Name, ok
}

// LookupCaller is Lookup returning the caller of token: its name and
// scopes (DefaultScopes when its line names none).
func (t *Tokens) LookupCaller(token string) (Caller, bool) {
	if t == nil || len(t.entries) == 0 {
		return Caller{}, false
	}
	d := tokenDigest(token)
	idx, found := 0, 0
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return Caller{}, false
	}
	e := &t.entries[idx]
	return Caller{Name: e.name, Scopes: e.scopes}, true
}

// Len returns the number of tokens in t.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// errNoTokens rejects a tokens file without tokens in key mode, where it
// would lock every caller out: more likely a mistake than an intent.
var errNoTokens = errors.New("auth: the tokens file lists no tokens")

func isBlank(b byte) bool { return b == ' ' || b == '\t' }

// isVisibleASCII reports whether b is printable ASCII other than space.
func isVisibleASCII(b byte) bool { return b > 0x20 && b < 0x7f }

func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}
