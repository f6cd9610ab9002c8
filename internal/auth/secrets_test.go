package auth

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// secret is recognisable in any output. It is both a well-formed token and
// a well-formed name, so that inputs built from it get past the syntax
// checks to the later ones.
const secret = "LEAKME-0f1e2d3c4b5a69788796a5b4"

// TestNoSecretLeaks runs every failure path with secret in the input and
// looks for it (and for its halves, in case something truncates) in the
// error strings, the status messages and details, and a debug-level log.
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	withLogger := func(o *Options) { o.Logger = logger }

	key := newAuth(t, ModeKey, "svc "+secret+"x\n", withLogger) // secret itself is not known
	pass := newAuth(t, ModePassthrough, "", withLogger)
	none := newAuth(t, ModeNone, "", withLogger)

	var outputs []string
	record := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: want an error", what)
			return
		}
		outputs = append(outputs, err.Error())
		if st, ok := status.FromError(err); ok {
			outputs = append(outputs, st.Message(), st.String())
			for _, d := range st.Details() {
				outputs = append(outputs, fmt.Sprint(d))
			}
		}
	}

	// Authenticate, directly and through the interceptors.
	values := []string{
		secret,
		"Basic " + secret,
		"Bearer " + secret,
		"Bearer " + secret + " " + secret,
		"Bearer " + secret + "\x00",
		"Bearer " + secret + "é",
		"Bearer\t" + secret + "\n",
		"Bearer " + secret + strings.Repeat("z", MaxCredentialLen),
		"Bearer" + secret,
		"Token " + secret + " Bearer",
	}
	for _, v := range values {
		_, err := key.Authenticate(context.Background(), v)
		record("key "+v[:6], err)
	}
	for _, v := range values {
		if _, err := pass.Authenticate(context.Background(), v); err != nil {
			record("passthrough "+v[:6], err)
		} // else well-formed: admitted; the Caller is checked below
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+secret))
	_, err := key.UnaryInterceptor()(ctx, nil, unaryInfo, func(context.Context, any) (any, error) {
		t.Error("handler ran")
		return nil, nil
	})
	record("unary interceptor", err)

	// Admitted calls: the Caller holds no secret.
	for _, a := range []*Authenticator{pass, none} {
		ctx, err := a.Authenticate(context.Background(), "Bearer "+secret)
		if err != nil {
			t.Fatalf("%s: %v", a.Mode(), err)
		}
		c, _ := FromContext(ctx)
		outputs = append(outputs, c.Name, c.CredentialHash)
	}

	// Tokens files that fail to parse, directly and through New and
	// Reload (whose errors the gateway logs).
	files := []string{
		secret + "\n",
		"svc " + secret + " extra\n",
		secret + " tok-0123456789abcdef\n" + secret + " tok-fedcba9876543210\n",
		"svc " + secret + "é\n",
		"svc " + secret + "\x01\n",
		"a " + secret + "\nb " + secret + "\n",
		"a " + secret[:MinTokenLen-1] + "\n",
		"a " + strings.Repeat(secret, MaxTokenLen/len(secret)+1) + "\n",
		"# " + strings.Repeat(secret, maxLineLen/len(secret)+1) + "\n",
		"sv!c " + secret + "\n",
	}
	path := writeFile(t, "svc "+secret+"x\n")
	reloading, err := New(Options{Mode: ModeKey, TokensFile: path, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	for i, content := range files {
		_, err := ParseTokens(strings.NewReader(content))
		record("ParseTokens", err)
		_, err = New(Options{Mode: ModeKey, TokensFile: writeFile(t, content), Logger: logger})
		record("New", err)
		rewrite(t, path, content)
		if err := reloading.Reload(); err != nil {
			logger.Error("reload failed", "error", err) // as the gateway would
			outputs = append(outputs, err.Error())
		} else {
			t.Errorf("file %d: Reload succeeded", i)
		}
	}

	outputs = append(outputs, logs.String())
	if !strings.Contains(logs.String(), `"level":"DEBUG"`) {
		t.Errorf("no debug lines logged; the check is vacuous:\n%s", logs.String())
	}
	half := len(secret) / 2
	for _, out := range outputs {
		for _, s := range []string{secret, secret[:half], secret[half:]} {
			if strings.Contains(out, s) {
				t.Errorf("output holds the secret: %q", out)
			}
		}
	}
}

var unaryInfo = &grpc.UnaryServerInfo{FullMethod: "/batch.v1.BatchService/GetBatch"}
