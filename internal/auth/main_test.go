package auth

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/batchgate/batchgate/internal/testutil"
)

// TestMain fails the package when a test leaves a goroutine behind (gRPC
// servers, client connections, HTTP transports).
func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m)
}

// Tokens used throughout. Each is recognisable, so that a test can look
// for it in error strings and logs.
const (
	aliceToken = "tok-alice-SECRET-0123456789abcdef"
	bobToken   = "tok-bob-SECRET-fedcba9876543210"
	carolToken = "tok-carol-SECRET-aaaabbbbccccdddd"
)

// goodTokensFile lists alice and bob.
const goodTokensFile = "# gateway tokens\n" +
	"alice " + aliceToken + "\n" +
	"\n" +
	"bob\t" + bobToken + "\n"

// writeFile writes content to a new file in a per-test directory and
// returns its path.
func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	rewrite(t, path, content)
	return path
}

// rewrite replaces the file at path with content, atomically (a rename),
// as an operator's deployment tool would.
func rewrite(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// newAuth returns an Authenticator for mode; in key mode its tokens file
// holds content.
func newAuth(t testing.TB, mode Mode, content string, opts ...func(*Options)) *Authenticator {
	t.Helper()
	o := Options{Mode: mode}
	if mode == ModeKey {
		o.TokensFile = writeFile(t, content)
	}
	for _, f := range opts {
		f(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatalf("New(%s): %v", mode, err)
	}
	return a
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = testutil.SyncBuffer
