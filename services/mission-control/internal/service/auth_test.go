package service

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"sortie.dev/services/kit/authn"
)

// issuer is a stand-in auth service: it publishes one signing key and
// hands out service tokens, and the test signs user tokens with the key.
type issuer struct {
	url  string
	priv ed25519.PrivateKey
}

func newIssuer(t testing.TB) *issuer {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	is := &issuer{priv: priv}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(authn.JWKSDocument{Keys: []authn.JWK{authn.PublicKeyJWK("k1", pub)}})
	})
	mux.HandleFunc("GET /api/auth/status", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"auth_required":true,"auth_mode":"multi_user"}`))
	})
	mux.HandleFunc("POST /api/auth/token", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(authn.TokenResponse{AccessToken: is.sign(t, "mission-control", authn.RoleService), TokenType: "Bearer", ExpiresIn: 300})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

func (is *issuer) sign(t testing.TB, sub string, role authn.Role) string {
	now := time.Now()
	c := &authn.Claims{Username: sub, Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, Issuer: "sortie-auth", Audience: jwt.ClaimStrings{"sortie"}, ID: "jti-" + sub + now.String(),
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(is.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authEnv is the config of a service with authentication on.
func (is *issuer) authEnv(t testing.TB) map[string]string {
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	return map[string]string{"SORTIE_AUTH_DEV_MODE": "false", "SORTIE_AUTH_JWKS_URL": is.url + "/api/auth/jwks",
		"SORTIE_AUTH_URL": is.url, "SORTIE_SERVICE_CLIENT_SECRET_FILE": secret, "SORTIE_AUTH_MODE": "multi_user"}
}
