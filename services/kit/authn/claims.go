// Package authn verifies the JWTs the auth service issues and puts the
// caller's identity on the request. Every service verifies tokens locally
// against the auth service's published keys (JWKS); only EdDSA is accepted.
//
// # Losing access everywhere
//
// A token stays signed for its whole life, so a removed, disabled or
// demoted user would keep their old rights at every service that only
// checks signatures. The auth service therefore publishes the current
// principals in Redis (PrincipalsKey, see docs/tenancy.md), and a service
// that has Redis turns the check on with one option beside Revocations:
//
//	authn.VerifierOptions{
//		Issuer: cfg.Issuer, Audience: cfg.Audience,
//		Revocations: authn.RedisRevocations{Client: rdb},
//		Principals:  authn.NewRedisPrincipals(rdb, authn.RedisPrincipalsOptions{}),
//	}
//
// Then a user token is valid only while "user:<sub>" holds the token's
// role, a service token only while "client:<id>" exists, and a delegated
// token (act) also needs its actor's client; each refusal is an
// *InvalidTokenError whose PublicMessage says why (401). Lookups are cached
// for at most MaxPrincipalCacheAge (15 s), and revocation and principals
// are asked in one Redis round trip. A missing hash (auth never published)
// is ErrNoPrincipals, which the middleware answers with 503: closed, never
// open. Tests of a service stand in for auth with PublishPrincipals.
package authn

import (
	"context"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what a token's holder may do.
type Role string

// Roles. Admins are users with more rights; services are the platform's own
// components calling each other.
const (
	RoleAdmin   Role = "admin"
	RoleUser    Role = "user"
	RoleService Role = "service"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleUser || r == RoleService }

// Claims are the claims of a Sortie token: sub (user id), usr (username),
// role, act when a service acts for the user, and the registered iat, exp,
// jti, iss and aud.
type Claims struct {
	jwt.RegisteredClaims
	Username string `json:"usr"`
	Role     Role   `json:"role"`
	Actor    *Actor `json:"act,omitempty"`
}

// Actor is RFC 8693's "act" claim: the service client that asked auth for
// a token on the subject's behalf (mission-control running a user's
// mission). The token's sub, usr and role are the user's, so a callee
// authorises the user; the actor says who carried the call.
type Actor struct {
	Subject string `json:"sub"`
}

// Identity is who is calling.
type Identity struct {
	UserID   string
	Username string
	Role     Role
	// TokenID is the token's jti, empty in dev mode.
	TokenID string
	// Actor is the service client acting for the user (a delegated token),
	// empty when the user calls.
	Actor string
}

// IsAdmin reports whether the caller is an administrator.
func (id Identity) IsAdmin() bool { return id.Role == RoleAdmin }

// DevIdentity is the caller when authentication is explicitly disabled.
var DevIdentity = Identity{UserID: "dev", Username: "dev", Role: RoleAdmin}

type identityKey struct{}

// WithIdentity returns a context carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the caller's identity set by the middleware.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

func (c *Claims) identity() Identity {
	id := Identity{UserID: c.Subject, Username: c.Username, Role: c.Role, TokenID: c.ID}
	if c.Actor != nil {
		id.Actor = c.Actor.Subject
	}
	return id
}

// roleAllowed: an empty list means the human roles (user, admin).
func roleAllowed(r Role, allowed []Role) bool {
	if len(allowed) == 0 {
		return r == RoleUser || r == RoleAdmin
	}
	return slices.Contains(allowed, r)
}

// RevokedKey is the Redis key that marks a token id as revoked until the
// token would have expired. The auth service writes it; services that have
// Redis check it.
func RevokedKey(jti string) string { return "sortie:auth:revoked:" + jti }
