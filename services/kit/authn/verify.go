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
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// Verifier checks tokens: signature (EdDSA only, key by kid), exp (required),
// iat, iss, aud, a known role, and revocation.
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
	)
	return &Verifier{keys: keys, opts: opts, parser: parser}
}

// Verify returns the claims of a valid token, or an *InvalidTokenError (or,
// when a dependency fails, another error that is not the caller's fault).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
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
	if v.opts.Revocations != nil {
		revoked, err := v.opts.Revocations.IsRevoked(ctx, claims.ID)
		if err != nil {
			return nil, fmt.Errorf("check revocation: %w", err)
		}
		if revoked {
			return nil, &InvalidTokenError{Reason: errors.New("token was revoked")}
		}
	}
	return claims, nil
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
