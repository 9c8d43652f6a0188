package authn

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
)

// KeySet finds the public key for a key id. The JWKS client implements it
// for services; the auth service implements it with its own key ring.
type KeySet interface {
	PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// RevocationChecker reports whether a token id was revoked (logout).
type RevocationChecker interface {
	IsRevoked(ctx context.Context, jti string) (bool, error)
}

// MaxTokenBytes bounds the tokens Verify parses: auth's are well under
// 1 KiB, and a megabyte of base64 JSON from a header or query string is
// work for nothing.
const MaxTokenBytes = 8 << 10

// ErrUnknownKey is returned by a KeySet that has no key with the kid.
var ErrUnknownKey = errors.New("unknown signing key")

// InvalidTokenError says why a token was refused. The reason is for logs;
// clients only ever see "invalid or expired token".
type InvalidTokenError struct{ Reason error }

func (e *InvalidTokenError) Error() string { return "invalid token: " + e.Reason.Error() }
func (e *InvalidTokenError) Unwrap() error { return e.Reason }

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	Issuer   string // required iss
	Audience string // required aud
	// Leeway tolerates clock skew between services [30s].
	Leeway time.Duration
	// Revocations, when set, is asked about every token's jti.
	Revocations RevocationChecker
	// Principals, when set, is asked whether the token's principals still
	// exist as the token says (docs/tenancy.md): a user token's user with
	// the token's role, a service token's client, and a delegated token's
	// actor client too. Services turn it on with
	// NewRedisPrincipals(rdb, RedisPrincipalsOptions{}); with Revocations a
	// RedisRevocations on the same client, both are asked in one round trip.
	Principals PrincipalChecker
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// Verifier checks tokens: signature (EdDSA only, key by kid), exp (required),
// iat, iss, aud, a known role, the act claim's shape, revocation and, with
// Principals, that the token's principals are current.
type Verifier struct {
	keys   KeySet
	opts   VerifierOptions
	parser *jwt.Parser
}

// NewVerifier returns a Verifier using keys.
func NewVerifier(keys KeySet, opts VerifierOptions) *Verifier {
	if opts.Leeway == 0 {
		opts.Leeway = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(opts.Issuer),
		jwt.WithAudience(opts.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Now),
		// Canonical base64 only: a token has exactly one spelling, so a
		// verified token is byte for byte one that auth signed.
		jwt.WithStrictDecoding(),
	)
	return &Verifier{keys: keys, opts: opts, parser: parser}
}

// Verify returns the claims of a valid token, or an *InvalidTokenError (or,
// when a dependency fails, another error that is not the caller's fault).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > MaxTokenBytes {
		return nil, &InvalidTokenError{Reason: fmt.Errorf("token is longer than %d bytes", MaxTokenBytes)}
	}
	var keyErr error
	claims := &Claims{}
	_, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		key, err := v.keys.PublicKey(ctx, kid)
		if err != nil && !errors.Is(err, ErrUnknownKey) {
			keyErr = err
		}
		return key, err
	})
	if keyErr != nil {
		return nil, fmt.Errorf("look up signing key: %w", keyErr)
	}
	if err != nil {
		return nil, &InvalidTokenError{Reason: err}
	}
	if claims.Subject == "" {
		return nil, &InvalidTokenError{Reason: errors.New("token has no subject")}
	}
	if !claims.Role.Valid() {
		return nil, &InvalidTokenError{Reason: fmt.Errorf("token has unknown role %q", claims.Role)}
	}
	if claims.ID == "" {
		return nil, &InvalidTokenError{Reason: errors.New("token has no jti")}
	}
	if err := checkActor(claims); err != nil {
		return nil, &InvalidTokenError{Reason: err}
	}
	var fields []string
	if v.opts.Principals != nil {
		if fields, err = principalFields(claims); err != nil {
			return nil, &InvalidTokenError{Reason: err}
		}
	}
	if err := v.checkCurrent(ctx, claims, fields); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkCurrent asks about revocation and then the principals: in one
// pipeline when both live in the same Redis, else one after the other.
func (v *Verifier) checkCurrent(ctx context.Context, claims *Claims, fields []string) error {
	var (
		revoked bool
		values  []string
		lookErr error
	)
	if rp, ok := v.opts.Principals.(*RedisPrincipals); ok && sameRedis(v.opts.Revocations, rp.client) {
		var err error
		revoked, values, err = rp.lookup(ctx, claims.ID, fields)
		if err != nil && !errors.Is(err, ErrNoPrincipals) {
			return fmt.Errorf("check revocation and principals: %w", err)
		}
		lookErr = err
	} else {
		if v.opts.Revocations != nil {
			var err error
			if revoked, err = v.opts.Revocations.IsRevoked(ctx, claims.ID); err != nil {
				return fmt.Errorf("check revocation: %w", err)
			}
		}
		if v.opts.Principals != nil && !revoked {
			values, lookErr = v.opts.Principals.Lookup(ctx, fields...)
		}
	}
	if revoked {
		return &InvalidTokenError{Reason: errors.New("token was revoked")}
	}
	if v.opts.Principals == nil {
		return nil
	}
	if lookErr != nil {
		return fmt.Errorf("check principals: %w", lookErr)
	}
	if len(values) != len(fields) {
		return fmt.Errorf("check principals: %d answers for %d principals", len(values), len(fields))
	}
	if err := checkPrincipals(claims, fields, values); err != nil {
		return &InvalidTokenError{Reason: err}
	}
	return nil
}

// sameRedis reports whether rev is a RedisRevocations on client.
func sameRedis(rev RevocationChecker, client redis.UniversalClient) bool {
	switch r := rev.(type) {
	case RedisRevocations:
		return r.Client == client
	case *RedisRevocations:
		return r != nil && r.Client == client
	}
	return false
}

// PublicMessage is what a client is told about a refused token: why, when
// its user or client changed (so the user knows to log in again), else
// only "invalid or expired token".
func (e *InvalidTokenError) PublicMessage() string {
	for _, known := range []error{ErrUserChanged, ErrClientRemoved} {
		if errors.Is(e.Reason, known) {
			return known.Error()
		}
	}
	return "invalid or expired token"
}

// RedisRevocations checks revocations written by the auth service.
type RedisRevocations struct{ Client redis.UniversalClient }

// IsRevoked implements RevocationChecker.
func (r RedisRevocations) IsRevoked(ctx context.Context, jti string) (bool, error) {
	n, err := r.Client.Exists(ctx, RevokedKey(jti)).Result()
	if err != nil {
		return false, err
	}
	return n > 0, nil
}
