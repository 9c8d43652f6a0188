package authn

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fixedKeys is a key set held in memory: the fuzz targets verify without
// a network, as the auth service does with its own key ring.
type fixedKeys map[string]ed25519.PublicKey

func (k fixedKeys) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if key, ok := k[kid]; ok {
		return key, nil
	}
	return nil, ErrUnknownKey
}

// fuzzSeed is a deterministic key, so the seed corpus means the same thing
// on every run.
func fuzzSeed(kid string, b byte) signingKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b
	}
	return signingKey{kid: kid, priv: ed25519.NewKeyFromSeed(seed)}
}

// FuzzVerify feeds arbitrary Authorization headers through bearer() and
// Verify. Nothing may panic, every refusal is an *InvalidTokenError, and
// the only tokens that verify are exactly those auth signed.
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	key := fuzzSeed("k1", 1)
	other := fuzzSeed("k2", 2)
	v := NewVerifier(fixedKeys{"k1": key.pub()}, VerifierOptions{
		Issuer: testIssuer, Audience: testAudience, Now: func() time.Time { return now },
	})
	signed := map[string]bool{}
	signWith := func(k signingKey, c *Claims, header map[string]any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = k.kid
		for hk, hv := range header {
			tok.Header[hk] = hv
		}
		s, err := tok.SignedString(k.priv)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	good := signWith(key, validClaims(now), nil)
	signed[good] = true
	admin := validClaims(now)
	admin.Role, admin.Actor = RoleAdmin, &Actor{Subject: "mission-control"}
	delegated := signWith(key, admin, nil)
	signed[delegated] = true

	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(good, ".")
	for _, seed := range []string{
		"Bearer " + good,
		"bearer  " + delegated + " ",
		"Bearer " + signWith(other, validClaims(now), nil),
		"Bearer " + signWith(key, validClaims(now), map[string]any{"kid": 7}),
		"Bearer " + b64([]byte(`{"alg":"none","kid":"k1"}`)) + "." + parts[1] + ".",
		"Bearer " + b64([]byte(`{"alg":"HS256","kid":"k1"}`)) + "." + parts[1] + "." + parts[2],
		"Bearer " + parts[0] + "." + b64([]byte(`{"sub":"x","role":"admin","exp":9999999999,"iss":"sortie-auth","aud":"sortie","jti":"j"}`)) + "." + parts[2],
		"Bearer " + parts[0] + "." + parts[1] + "." + parts[2] + "=",
		"Bearer " + parts[0] + "." + parts[1],
		"Bearer " + strings.Repeat("a.", 5000),
		"Basic dXNlcjpwYXNz",
		"Bearer",
		"Bearer ...",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := &http.Request{Header: http.Header{"Authorization": {header}}}
		raw, err := Bearer(r)
		if err != nil {
			return
		}
		if raw == "" || raw != strings.TrimSpace(raw) {
			t.Fatalf("bearer(%q) = %q", header, raw)
		}
		claims, err := v.Verify(context.Background(), raw)
		if err == nil {
			if !signed[raw] {
				t.Fatalf("a token auth never signed verified: %q (claims %+v)", raw, claims)
			}
			return
		}
		if _, ok := err.(*InvalidTokenError); !ok {
			t.Fatalf("Verify(%q) failed with %T %v, want *InvalidTokenError", raw, err, err)
		}
	})
}

// FuzzParseJWKS: whatever auth (or whoever answers at its address) sends,
// parsing never panics and yields only whole Ed25519 keys under non-empty
// kids.
func FuzzParseJWKS(f *testing.F) {
	k := fuzzSeed("k1", 1)
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + PublicKeyJWK("k1", k.pub()).X + `","kid":"k1","alg":"EdDSA","use":"sig"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"abc","e":"AQAB","kid":"r"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"s"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`{"keys":[null,{}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseJWKS(data)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for kid, key := range keys {
			if kid == "" || len(key) != ed25519.PublicKeySize {
				t.Fatalf("key %q of %d bytes", kid, len(key))
			}
		}
	})
}
