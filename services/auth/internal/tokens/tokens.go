// Package tokens issues the JWTs the auth service hands out.
package tokens

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"sortie.dev/services/kit/authn"
)

// Signer provides the key that signs new tokens.
type Signer interface {
	SigningKey() (kid string, key any)
}

// Issuer signs tokens for users and services.
type Issuer struct {
	Signer   Signer
	Issuer   string
	Audience string
	Now      func() time.Time
}

// Token is a signed token and when it expires.
type Token struct {
	Raw       string
	ID        string
	ExpiresAt time.Time
}

// Issue signs a token for subject with the given lifetime; actor, when not
// nil, is the service client acting for the subject (a delegated token).
func (i *Issuer) Issue(subject, username string, role authn.Role, actor *authn.Actor, ttl time.Duration) (Token, error) {
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	issued := now().Truncate(time.Second)
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("token id: %w", err)
	}
	claims := authn.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   subject,
			Issuer:    i.Issuer,
			Audience:  jwt.ClaimStrings{i.Audience},
			IssuedAt:  jwt.NewNumericDate(issued),
			ExpiresAt: jwt.NewNumericDate(issued.Add(ttl)),
			ID:        hex.EncodeToString(id[:]),
		},
		Username: username,
		Role:     role,
		Actor:    actor,
	}
	kid, key := i.Signer.SigningKey()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kid
	raw, err := tok.SignedString(key)
	if err != nil {
		return Token{}, fmt.Errorf("sign token: %w", err)
	}
	return Token{Raw: raw, ID: claims.ID, ExpiresAt: claims.ExpiresAt.Time}, nil
}
