package auth_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/batchgate/batchgate/internal/auth"
)

// A gateway in key mode: callers present tokens from a file; the handlers
// find the caller's name in the context.
func Example() {
	dir, err := os.MkdirTemp("", "auth-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	tokens := filepath.Join(dir, "tokens")
	err = os.WriteFile(tokens, []byte(`# name   token
billing   tok-billing-7d1c9e0a5b3f
reporting tok-reporting-42aa19c0e8
`), 0o600)
	if err != nil {
		panic(err)
	}

	a, err := auth.New(auth.Options{Mode: auth.ModeKey, TokensFile: tokens})
	if err != nil {
		panic(err)
	}
	// A gRPC server checks every call but health checks and reflection;
	// on SIGHUP the gateway would call a.Reload().
	srv := grpc.NewServer(grpc.UnaryInterceptor(a.UnaryInterceptor()), grpc.StreamInterceptor(a.StreamInterceptor()))
	defer srv.Stop()

	// The REST front, or a test, can check a header value directly.
	for _, authorization := range []string{"Bearer tok-billing-7d1c9e0a5b3f", "Bearer tok-guessed-0000000000", ""} {
		ctx, err := a.Authenticate(context.Background(), authorization)
		if err != nil {
			st := status.Convert(err)
			fmt.Println(st.Code(), st.Message())
			continue
		}
		caller, _ := auth.FromContext(ctx)
		fmt.Println("caller:", caller.Name)
	}
	// Output:
	// caller: billing
	// Unauthenticated invalid bearer token
	// Unauthenticated missing bearer token
}

// In passthrough mode the caller's own key goes upstream, and the hub is
// keyed by a hash of it.
func ExampleAuthenticator_Authenticate_passthrough() {
	a, err := auth.New(auth.Options{Mode: auth.ModePassthrough})
	if err != nil {
		panic(err)
	}
	ctx, err := a.Authenticate(context.Background(), "Bearer sk-callers-own-key")
	if err != nil {
		panic(err)
	}
	caller, _ := auth.FromContext(ctx)
	// The hash is random per process; it is what watch.Key.Credential
	// gets. ctx also carries the key for upstream.Client (WithAPIKey).
	fmt.Println(strings.HasPrefix(caller.Name, "passthrough:"), len(caller.CredentialHash))
	// Output: true 64
}

func ExampleParseTokens() {
	toks, err := auth.ParseTokens(strings.NewReader("ci   tok-ci-0123456789abcdef\r\n"))
	if err != nil {
		panic(err)
	}
	fmt.Println(toks.Len())
	name, ok := toks.Lookup("tok-ci-0123456789abcdef")
	fmt.Printf("%q %v\n", name, ok)
	name, ok = toks.Lookup("tok-ci-0123456789ABCDEF")
	fmt.Printf("%q %v\n", name, ok)

	_, err = auth.ParseTokens(strings.NewReader("ci tok-ci-0123456789abcdef\nci tok-ci-fedcba9876543210\n"))
	fmt.Println(err)
	// Output:
	// 1
	// "ci" true
	// "" false
	// auth: tokens: line 2: duplicate name (first on line 1)
}
