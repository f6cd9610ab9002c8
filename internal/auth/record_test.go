package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/batchgate/batchgate/internal/callinfo"
)

// TestAuthenticateFillsRecord: an admitted call's Caller goes into its
// callinfo.Record too, in every mode; a rejected one leaves the record
// without a caller.
func TestAuthenticateFillsRecord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		a     *Authenticator
		value string
		ok    bool
	}{
		{"key", newAuth(t, ModeKey, goodTokensFile), "Bearer " + aliceToken, true},
		{"key rejected", newAuth(t, ModeKey, goodTokensFile), "Bearer nope", false},
		{"passthrough", newAuth(t, ModePassthrough, ""), "Bearer sk-some-credential", true},
		{"passthrough rejected", newAuth(t, ModePassthrough, ""), "Basic x", false},
		{"none", newAuth(t, ModeNone, ""), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := callinfo.New("")
			ctx, err := tc.a.Authenticate(callinfo.NewContext(context.Background(), rec), tc.value)
			got, has := rec.Caller()
			if !tc.ok {
				if err == nil || has {
					t.Fatalf("err %v, record caller %v %v", err, got, has)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, _ := FromContext(ctx)
			if !has || got.Name != c.Name || got.CredentialHash != c.CredentialHash || got.Name == "" {
				t.Errorf("record caller %+v (%v), context Caller %+v", got, has, c)
			}
			if (tc.a.Mode() == ModePassthrough) != (got.CredentialHash != "") {
				t.Errorf("credential hash %q in mode %s", got.CredentialHash, tc.a.Mode())
			}
		})
	}
	// Without a record, Authenticate works as before.
	if _, err := newAuth(t, ModeNone, "").Authenticate(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
}

// TestInterceptorsFillRecord: the interceptors fill the record that
// callinfo's interceptors, further out, put in the context; exempt calls
// leave it without a caller.
func TestInterceptorsFillRecord(t *testing.T) {
	t.Parallel()
	a := newAuth(t, ModeKey, goodTokensFile)
	chain := func(method string, authz string) *callinfo.Record {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", authz))
		var rec *callinfo.Record
		_, _ = callinfo.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, req any) (any, error) {
			rec = callinfo.FromContext(ctx)
			return a.UnaryInterceptor()(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return nil, nil })
		})
		return rec
	}
	if n := chain("/batch.v1.BatchService/GetBatch", "Bearer "+aliceToken).CallerName(); n != "alice" {
		t.Errorf("caller %q, want alice", n)
	}
	if _, ok := chain("/grpc.health.v1.Health/Check", "").Caller(); ok {
		t.Error("exempt call has a caller")
	}
}
