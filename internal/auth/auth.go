// Package auth decides who may call the gateway and with whose upstream
// credential, in one of three modes:
//
//   - key: callers present a gateway token ("authorization: Bearer <token>"
//     in gRPC metadata or the HTTP header) listed in a tokens file; the
//     gateway calls the upstream with its own key. The file can be
//     reloaded while serving.
//   - passthrough: the caller's own Bearer credential is forwarded upstream
//     (through upstream.WithAPIKey), and the call is identified by a keyed
//     hash of it, Caller.CredentialHash, which is what shared pollers,
//     caches and coalesced calls must be keyed by.
//   - none: every call is let in as "anonymous".
//
// An Authenticator checks one call (Authenticate) and provides gRPC
// interceptors that do so for every call but health checks and reflection.
// It puts a Caller in the context, whose Name is safe for logs and metric
// labels. No token or credential ever appears in an error, a log line or a
// Caller.
//
// In passthrough mode the gateway cannot tell a real credential from an
// invented one (only the upstream can), so every distinct credential gets
// its own Caller.Name: anything keyed by it (metric labels, per-caller
// limiters) must bound how many names it keeps.
package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"

	"github.com/batchgate/batchgate/internal/apierr"
	"github.com/batchgate/batchgate/internal/callinfo"
	"github.com/batchgate/batchgate/internal/upstream"
)

// Mode is a credential mode: ModeKey, ModePassthrough or ModeNone.
type Mode string

// The credential modes.
const (
	// ModeKey admits callers with a gateway token from the tokens file and
	// calls the upstream with the gateway's own key.
	ModeKey Mode = "key"
	// ModePassthrough admits any caller with a Bearer credential and
	// forwards that credential upstream.
	ModePassthrough Mode = "passthrough"
	// ModeNone admits everyone as "anonymous".
	ModeNone Mode = "none"
)

// ParseMode returns the Mode named s: "key", "passthrough" or "none".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeKey, ModePassthrough, ModeNone:
		return m, nil
	}
	return "", fmt.Errorf("auth: unknown mode %q: want key, passthrough or none", s)
}

// Caller is who made a call, as the call's callinfo.Record carries it (the
// one place the caller is kept). Its Name is, in key mode, the token's name
// from the tokens file; in passthrough mode "passthrough:" and the first 8
// hex digits of CredentialHash; in mode none "anonymous". CredentialHash
// is, in passthrough mode, the hex HMAC-SHA256 of the caller's credential
// under a random per-process key, and "" in the other modes: it is what
// watch.Key.Credential must be set to.
type Caller = callinfo.Caller

// AnonymousName is Caller.Name in mode none.
const AnonymousName = "anonymous"

// passthroughPrefix starts Caller.Name in passthrough mode.
const passthroughPrefix = "passthrough:"

// PassthroughOther is the caller label for passthrough callers beyond a
// cap on labels: a name no Caller has (token names have no colon, and
// passthrough names end in hex digits).
const PassthroughOther = passthroughPrefix + "other"

// IsPassthroughName reports whether name is a Caller.Name of passthrough
// mode, one of the names anyone can invent by sending a new credential,
// as opposed to a token's name from the tokens file or AnonymousName.
func IsPassthroughName(name string) bool {
	return strings.HasPrefix(name, passthroughPrefix)
}

// NewContext returns ctx with c recorded in its callinfo.Record (a new
// record when ctx has none).
func NewContext(ctx context.Context, c Caller) context.Context {
	r := callinfo.FromContext(ctx)
	if r == nil {
		r = callinfo.New("")
		ctx = callinfo.NewContext(ctx, r)
	}
	r.SetCaller(c)
	return ctx
}

// FromContext returns the Caller recorded in ctx's callinfo.Record, and
// whether there is one. Calls the interceptors exempt (health checks,
// reflection) have none.
func FromContext(ctx context.Context) (Caller, bool) {
	return callinfo.FromContext(ctx).Caller()
}

// MaxCredentialLen caps the Bearer credential of one call, in both key and
// passthrough mode (4 KiB).
const MaxCredentialLen = 4 << 10

// ErrorInfo reasons of the Unauthenticated errors Authenticate returns.
const (
	// ReasonMissingToken: no authorization, or a Bearer scheme without a
	// token.
	ReasonMissingToken = "MISSING_BEARER_TOKEN"
	// ReasonInvalidToken: an authorization that is not "Bearer <token>"
	// with a well-formed token, or (in key mode) an unknown token.
	ReasonInvalidToken = "INVALID_BEARER_TOKEN"
)

// The errors Authenticate returns. They carry an ErrorInfo with the
// gateway's domain, HTTP status 401 and code "invalid_api_key", which
// apierr.WriteHTTP turns into a 401 with the upstream-style envelope.
var (
	errMissing = unauthenticated("missing bearer token", ReasonMissingToken)
	errScheme  = unauthenticated(`invalid bearer token: authorization must be "Bearer <token>"`, ReasonInvalidToken)
	errInvalid = unauthenticated("invalid bearer token", ReasonInvalidToken)
	errNoAuth  = unauthenticated("the gateway's authenticator is not configured", ReasonInvalidToken)
)

func unauthenticated(msg, reason string) error {
	return apierr.Error{Code: codes.Unauthenticated, HTTPStatus: http.StatusUnauthorized, Type: "invalid_request_error",
		ErrCode: apierr.CodeInvalidAPIKey, Reason: reason, Message: msg}.Err()
}

// Options configures an Authenticator.
type Options struct {
	// Mode is the credential mode. Required.
	Mode Mode
	// TokensFile is the path of the tokens file (see ParseTokens). Required
	// in key mode, which needs at least one token; not allowed in the
	// other modes, where it would be ignored.
	TokensFile string
	// Logger receives a line when tokens are loaded and a debug line for
	// every rejected call (with the reason, never the token). Nil
	// discards.
	Logger *slog.Logger
}

// Authenticator checks calls according to its Mode. Create it with New. It
// is safe for concurrent use; Reload may run while calls are checked.
type Authenticator struct {
	mode   Mode
	path   string
	log    *slog.Logger
	tokens atomic.Pointer[Tokens]
	// reloadMu serialises Reload, so the file read last is the one kept.
	reloadMu sync.Mutex
}

// New returns an Authenticator for opts. In key mode it loads TokensFile
// and fails when the file cannot be read, does not parse or lists no
// tokens.
func New(opts Options) (*Authenticator, error) {
	mode, err := ParseMode(string(opts.Mode))
	if err != nil {
		return nil, err
	}
	a := &Authenticator{mode: mode, path: opts.TokensFile, log: opts.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case mode == ModeKey && opts.TokensFile == "":
		return nil, errors.New("auth: key mode needs a tokens file")
	case mode != ModeKey && opts.TokensFile != "":
		return nil, fmt.Errorf("auth: a tokens file is only used in key mode, not in mode %s", mode)
	case mode == ModeKey:
		t, err := loadNonEmpty(opts.TokensFile)
		if err != nil {
			return nil, err
		}
		a.tokens.Store(t)
		a.log.Info("auth: tokens loaded", slog.Int("tokens", t.Len()))
	}
	return a, nil
}

func loadNonEmpty(path string) (*Tokens, error) {
	t, err := LoadTokens(path)
	if err != nil {
		return nil, err
	}
	if t.Len() == 0 {
		return nil, errNoTokens
	}
	return t, nil
}

// Reload re-reads the tokens file in key mode; calls checked afterwards use
// the new tokens. When the file cannot be read, does not parse or lists no
// tokens, the old tokens stay in force and the error is returned for the
// caller to log. Outside key mode Reload does nothing and returns nil.
func (a *Authenticator) Reload() error {
	if a.mode != ModeKey {
		return nil
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	t, err := loadNonEmpty(a.path)
	if err != nil {
		return err
	}
	a.tokens.Store(t)
	a.log.Info("auth: tokens reloaded", slog.Int("tokens", t.Len()))
	return nil
}

// Mode returns the credential mode.
func (a *Authenticator) Mode() Mode { return a.mode }

// Authenticate checks one call's authorization value (the raw
// "authorization" metadata or HTTP header value, "" when absent) and
// returns the context to continue the call with:
//
//   - key mode: the value must be "Bearer <token>" (scheme in any case,
//     blanks around the token tolerated) with a token from the tokens
//     file; the context gets Caller{Name: the token's name, Scopes: its
//     line's scopes}.
//   - passthrough mode: the value must be "Bearer <credential>" with a
//     credential of at most MaxCredentialLen printable ASCII characters
//     without spaces; the context gets the Caller (Name, CredentialHash,
//     callinfo.Unrestricted scopes: the upstream decides) and, through upstream.WithAPIKey, the credential
//     for the upstream call.
//   - mode none: the context gets Caller{Name: "anonymous", Scopes:
//     callinfo.Unrestricted}, whatever the value.
//
// The Caller also goes into the call's callinfo.Record, when ctx has one.
//
// Otherwise the error is a gRPC status error with code Unauthenticated and
// an ErrorInfo that makes it a 401 with type "invalid_api_key" over REST.
// Its message never contains the value.
func (a *Authenticator) Authenticate(ctx context.Context, authorization string) (context.Context, error) {
	switch a.mode {
	case ModeNone:
		return admit(ctx, Caller{Name: AnonymousName, Scopes: callinfo.Unrestricted}), nil
	case ModeKey:
		token, err := bearer(authorization)
		if err != nil {
			return nil, a.reject(ctx, err)
		}
		c, ok := a.tokens.Load().LookupCaller(token)
		if !ok {
			return nil, a.reject(ctx, errInvalid)
		}
		return admit(ctx, c), nil
	case ModePassthrough:
		cred, err := bearer(authorization)
		if err != nil {
			return nil, a.reject(ctx, err)
		}
		h := credentialHash(cred)
		ctx = admit(ctx, Caller{Name: passthroughPrefix + h[:8], CredentialHash: h, Scopes: callinfo.Unrestricted})
		return upstream.WithAPIKey(ctx, cred), nil
	default: // the zero Authenticator: fail closed
		return nil, a.rejectUnconfigured(ctx)
	}
}

// admit records c in the call's callinfo.Record, which the logs, metrics,
// limits and the service read.
func admit(ctx context.Context, c Caller) context.Context {
	return NewContext(ctx, c)
}

func (a *Authenticator) reject(ctx context.Context, err error) error {
	if a.log.Enabled(ctx, slog.LevelDebug) {
		reason := "invalid"
		switch {
		case errors.Is(err, errMissing):
			reason = "missing"
		case errors.Is(err, errScheme):
			reason = "not bearer"
		}
		a.log.LogAttrs(ctx, slog.LevelDebug, "auth: call rejected",
			slog.String("mode", string(a.mode)), slog.String("reason", reason))
	}
	return err
}

func (a *Authenticator) rejectUnconfigured(ctx context.Context) error {
	if a.log != nil {
		a.log.LogAttrs(ctx, slog.LevelError, "auth: call rejected by an unconfigured authenticator")
	}
	return errNoAuth
}

// bearer returns the token of a "Bearer <token>" authorization value, or
// errMissing, errScheme or errInvalid.
func bearer(v string) (string, error) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return "", errMissing
	}
	scheme, rest := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		scheme, rest = v[:i], strings.TrimLeft(v[i:], " \t")
	}
	if !strings.EqualFold(scheme, "bearer") {
		return "", errScheme
	}
	if rest == "" {
		return "", errMissing
	}
	if len(rest) > MaxCredentialLen {
		return "", errInvalid
	}
	for i := 0; i < len(rest); i++ {
		if !isVisibleASCII(rest[i]) {
			return "", errInvalid
		}
	}
	return rest, nil
}

// credentialHash returns the hex HMAC-SHA256 of cred under credentialKey.
func credentialHash(cred string) string {
	d := credentialMACs.sum(cred)
	return hex.EncodeToString(d[:])
}
