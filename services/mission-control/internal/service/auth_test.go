package service

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redistest"
)

// testUsers are the users the stand-in auth knows, and the principals a
// mission-control with authentication on finds published (start).
var testUsers = map[string]authn.Role{"alice": authn.RoleUser, "bob": authn.RoleUser, "carol": authn.RoleUser, "root": authn.RoleAdmin}

// publishPrincipals stands in for auth publishing its users and clients.
func publishPrincipals(t testing.TB, rs *redistest.Server, users map[string]authn.Role) {
	t.Helper()
	if err := authn.PublishPrincipals(context.Background(), rs.Client, authn.PrincipalSet{Users: users, Clients: []string{"mission-control"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// issuer is a stand-in auth service: it publishes one signing key and
// hands out service tokens and, as docs/tenancy.md says, delegated tokens
// (a "subject": the user's sub and current role, act = the client); the
// test signs user tokens with the key.
type issuer struct {
	url  string
	priv ed25519.PrivateKey

	mu        sync.Mutex
	roles     map[string]authn.Role // the current users
	delegated map[string]int        // delegated tokens issued, by user
}

func newIssuer(t testing.TB) *issuer {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	is := &issuer{priv: priv, delegated: map[string]int{}, roles: maps.Clone(testUsers)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(authn.JWKSDocument{Keys: []authn.JWK{authn.PublicKeyJWK("k1", pub)}})
	})
	mux.HandleFunc("GET /api/auth/status", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"auth_required":true,"auth_mode":"multi_user"}`))
	})
	mux.HandleFunc("POST /api/auth/token", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ClientID string `json:"client_id"`
			Subject  string `json:"subject"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if req.Subject == "" {
			json.NewEncoder(w).Encode(authn.TokenResponse{AccessToken: is.sign(t, "service:"+req.ClientID, authn.RoleService), TokenType: "Bearer", ExpiresIn: 300})
			return
		}
		is.mu.Lock()
		role, ok := is.roles[req.Subject]
		if ok {
			is.delegated[req.Subject]++
		}
		is.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"no such user","code":"unknown_subject"}`))
			return
		}
		json.NewEncoder(w).Encode(authn.TokenResponse{AccessToken: is.signFor(t, req.Subject, role, req.ClientID), TokenType: "Bearer", ExpiresIn: 300})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

func (is *issuer) sign(t testing.TB, sub string, role authn.Role) string {
	return is.signFor(t, sub, role, "")
}

// signFor signs a token of sub; with actor set, a delegated one (act).
func (is *issuer) signFor(t testing.TB, sub string, role authn.Role, actor string) string {
	now := time.Now()
	c := &authn.Claims{Username: sub, Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, Issuer: "sortie-auth", Audience: jwt.ClaimStrings{"sortie"}, ID: "jti-" + sub + now.String(),
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
	if actor != "" {
		c.Actor = &authn.Actor{Subject: actor}
	}
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

// delegations reports how many delegated tokens user got.
func (is *issuer) delegations(user string) int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.delegated[user]
}

// verifier checks tokens the issuer signed, as a callee does.
func (is *issuer) verifier() *authn.Verifier {
	return authn.NewVerifier(authn.NewJWKS(is.url+"/api/auth/jwks", authn.JWKSOptions{}),
		authn.VerifierOptions{Issuer: "sortie-auth", Audience: "sortie"})
}
