package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"sortie.dev/services/auth/internal/keyring"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/kit/testwait"
)

func TestRoutesMatchSpec(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword})
	openapitest.Load(t, spec()).CheckRoutes(t, a.svc.Routes(), []string{"/api/auth"}, server.OperationalPaths...)
}

func TestSingleTenantLogin(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword})
	lr := a.login("", adminPassword)
	if lr.User.ID != "default" || lr.User.Username != "default" || lr.User.Role != "admin" {
		t.Errorf("user = %+v, want the default admin", lr.User)
	}
	expiresAt, err := time.Parse(time.RFC3339, lr.ExpiresAt)
	if err != nil {
		t.Fatalf("expires_at %q is not RFC 3339: %v", lr.ExpiresAt, err)
	}
	if expiresAt.Unix() != lr.Exp {
		t.Errorf("expires_at %s and exp %d disagree", lr.ExpiresAt, lr.Exp)
	}
	if d := time.Until(expiresAt); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("token lives %v, want the 30-day default", d)
	}
	// A username is ignored with a single password.
	a.login("whoever", adminPassword)

	r := a.postJSON("/api/auth/login", map[string]string{"password": "wrong-password"})
	if r.Status != 401 || r.Code(t) != "invalid_credentials" {
		t.Errorf("wrong password: %d %s", r.Status, r.Body)
	}
	if v := a.verify(lr.Token); v.Status != 200 {
		t.Errorf("verify: %d %s", v.Status, v.Body)
	}
	var st struct {
		AuthRequired bool   `json:"auth_required"`
		AuthMode     string `json:"auth_mode"`
	}
	a.do("GET", "/api/auth/status", "", "", nil).Decode(t, &st)
	if !st.AuthRequired || st.AuthMode != "single_tenant" {
		t.Errorf("status = %+v", st)
	}
	if strings.Contains(a.logs.String(), adminPassword) || strings.Contains(a.logs.String(), "wrong-password") {
		t.Error("a password reached the log")
	}
}

func TestMultiUserLogin(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_USERS_FILE": "$DIR/users.json"})
	alice := a.login("alice", alicePassword)
	if alice.User.ID != "u-alice" || alice.User.Role != "admin" {
		t.Errorf("alice = %+v", alice.User)
	}
	bob := a.login("BOB", bobPassword) // usernames match regardless of case
	if bob.User.ID != "bob" || bob.User.Role != "user" {
		t.Errorf("bob = %+v, want id defaulted to the username and role user", bob.User)
	}
	var v struct {
		Valid    bool   `json:"valid"`
		Username string `json:"username"`
		User     struct{ ID, Username, Role string }
	}
	a.verify(bob.Token).Decode(t, &v)
	if !v.Valid || v.Username != "bob" || v.User.Role != "user" {
		t.Errorf("verify bob = %+v", v)
	}

	wrong := a.postJSON("/api/auth/login", map[string]string{"username": "alice", "password": bobPassword})
	unknown := a.postJSON("/api/auth/login", map[string]string{"username": "mallory", "password": bobPassword})
	if wrong.Status != 401 || unknown.Status != 401 {
		t.Fatalf("wrong password %d, unknown user %d; want 401 for both", wrong.Status, unknown.Status)
	}
	if string(wrong.Body) != string(unknown.Body) {
		t.Errorf("a wrong password (%s) and an unknown user (%s) must look the same", wrong.Body, unknown.Body)
	}
	if r := a.postJSON("/api/auth/login", map[string]string{"password": alicePassword}); r.Status != 400 {
		t.Errorf("missing username: %d, want 400", r.Status)
	}
}

func TestRemovedUserLosesAccess(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_USERS_FILE": "$DIR/users.json"})
	usersFile := filepath.Join(filepath.Dir(a.keysDir), "users.json")
	bob := a.login("bob", bobPassword)
	alice := a.login("alice", alicePassword)
	writeUsers(t, usersFile, "alice")
	if err := a.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := a.verify(bob.Token); r.Status != 401 {
		t.Errorf("a removed user's token: %d, want 401", r.Status)
	}
	if r := a.verify(alice.Token); r.Status != 200 {
		t.Errorf("a remaining user's token: %d, want 200", r.Status)
	}
	// A broken users file keeps the previous users.
	os.WriteFile(usersFile, []byte("{not json"), 0o600)
	if err := a.svc.Reload(); err == nil {
		t.Error("Reload accepted a broken users file")
	}
	a.login("alice", alicePassword)
}

func TestThrottling(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{
		"SORTIE_AUTH_USERS_FILE":         "$DIR/users.json",
		"SORTIE_AUTH_LOGIN_MAX_FAILURES": "3",
		"SORTIE_AUTH_LOGIN_WINDOW":       "3s",
	})
	fail := func(user string) int {
		return a.postJSON("/api/auth/login", map[string]string{"username": user, "password": "not-the-password"}).Status
	}

	// A success forgets the user's failures.
	fail("alice")
	fail("alice")
	a.login("alice", alicePassword)
	for i := range 3 {
		if got := fail("alice"); got != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, got)
		}
	}
	r := a.postJSON("/api/auth/login", map[string]string{"username": "alice", "password": alicePassword})
	if r.Status != 429 || r.Code(t) != "rate_limited" {
		t.Fatalf("locked user with the right password: %d %s, want 429", r.Status, r.Body)
	}
	retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 3 {
		t.Errorf("Retry-After = %q, want 1-3 seconds", r.Header.Get("Retry-After"))
	}
	// Another user from the same address is not locked by alice's lock.
	a.login("bob", bobPassword)

	// The lock ends with the window.
	testwait.Eventually(t, time.Duration(retry)*time.Second+time.Second, "alice's lock to end with its window", func() (bool, string) {
		r := a.postJSON("/api/auth/login", map[string]string{"username": "alice", "password": alicePassword})
		return r.Status == 200, fmt.Sprint(r.Status)
	})
}

func TestThrottlingPerAddress(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{
		"SORTIE_AUTH_USERS_FILE":                "$DIR/users.json",
		"SORTIE_AUTH_LOGIN_MAX_FAILURES":        "3",
		"SORTIE_AUTH_LOGIN_MAX_FAILURES_PER_IP": "6",
	})
	// Failures spread over usernames add up for the address.
	for _, u := range []string{"x1", "x2", "x3", "x4", "x5", "x6"} {
		if r := a.postJSON("/api/auth/login", map[string]string{"username": u, "password": "guess"}); r.Status != 401 {
			t.Fatalf("failure for %s: %d", u, r.Status)
		}
	}
	if r := a.postJSON("/api/auth/login", map[string]string{"username": "bob", "password": bobPassword}); r.Status != 429 {
		t.Errorf("locked address: %d, want 429", r.Status)
	}
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword, "SORTIE_AUTH_TOKEN_TTL": "1h"})
	tok := a.login("", adminPassword).Token
	a.clock.Advance(59 * time.Minute)
	if r := a.verify(tok); r.Status != 200 {
		t.Fatalf("before expiry: %d", r.Status)
	}
	a.clock.Advance(2 * time.Minute) // past exp and the 30s leeway
	if r := a.verify(tok); r.Status != 401 {
		t.Errorf("after expiry: %d, want 401", r.Status)
	}
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

func (a *authServer) jwksKids() []string {
	var doc authn.JWKSDocument
	a.do("GET", "/api/auth/jwks", "", "", nil).Decode(a.t, &doc)
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword, "SORTIE_AUTH_TOKEN_TTL": "1h"})
	// Services verify through the published JWKS, as they will in production.
	verifier := authn.NewVerifier(authn.NewJWKS(a.url+"/api/auth/jwks", authn.JWKSOptions{MinRefetch: time.Nanosecond}),
		authn.VerifierOptions{Issuer: "sortie-auth", Audience: "sortie", Now: a.clock.Now})
	ctx := context.Background()

	old := a.login("", adminPassword).Token
	oldKid := kidOf(t, old)
	if kids := a.jwksKids(); len(kids) != 1 || kids[0] != oldKid {
		t.Fatalf("jwks = %v, want [%s]", kids, oldKid)
	}
	if _, err := verifier.Verify(ctx, old); err != nil {
		t.Fatalf("kit verifier refused a fresh token: %v", err)
	}

	if _, _, err := keyring.WriteNew(a.keysDir, a.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := a.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	fresh := a.login("", adminPassword).Token
	newKid := kidOf(t, fresh)
	if newKid == oldKid {
		t.Fatal("tokens are still signed with the old key after rotation")
	}
	if kids := a.jwksKids(); len(kids) != 2 || kids[0] != newKid {
		t.Errorf("jwks = %v, want the new key first and the old still published", kids)
	}
	for name, tok := range map[string]string{"old": old, "new": fresh} {
		if r := a.verify(tok); r.Status != 200 {
			t.Errorf("%s token after rotation: %d", name, r.Status)
		}
		if _, err := verifier.Verify(ctx, tok); err != nil {
			t.Errorf("kit verifier, %s token after rotation: %v", name, err)
		}
	}

	// Once every token of the old key has expired, the key is withdrawn.
	a.clock.Advance(time.Hour + time.Second)
	if kids := a.jwksKids(); len(kids) != 1 || kids[0] != newKid {
		t.Errorf("jwks after the old key's tokens expired = %v, want [%s]", kids, newKid)
	}
	if r := a.verify(a.login("", adminPassword).Token); r.Status != 200 {
		t.Errorf("a token signed after the withdrawal: %d", r.Status)
	}
}

func TestRejectedTokens(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword})
	good := a.login("", adminPassword).Token
	keys, err := keyring.LoadDir(a.keysDir)
	if err != nil {
		t.Fatal(err)
	}
	key := keys[0]
	now := time.Now()
	claims := func(f func(*authn.Claims)) *authn.Claims {
		c := &authn.Claims{
			RegisteredClaims: jwt.RegisteredClaims{
				Subject: "default", Issuer: "sortie-auth", Audience: jwt.ClaimStrings{"sortie"},
				IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: "forged-1",
			},
			Username: "default", Role: authn.RoleAdmin,
		}
		if f != nil {
			f(c)
		}
		return c
	}
	sign := func(kid string, priv ed25519.PrivateKey, c *authn.Claims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if r := a.verify(sign(key.ID, key.Private, claims(nil))); r.Status != 200 {
		t.Fatalf("the forging helper is broken: a correctly signed token got %d", r.Status)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	hs.Header["kid"] = key.ID
	hsTok, _ := hs.SignedString([]byte(key.Public()))
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)

	tests := map[string]string{
		"alg none":              b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+key.ID+`"}`)) + "." + parts[1] + ".",
		"HS256 with public key": hsTok,
		"tampered payload":      parts[0] + "." + b64([]byte(strings.Replace(string(payload), `"usr":"default"`, `"usr":"root"`, 1))) + "." + parts[2],
		"wrong audience":        sign(key.ID, key.Private, claims(func(c *authn.Claims) { c.Audience = jwt.ClaimStrings{"elsewhere"} })),
		"wrong issuer":          sign(key.ID, key.Private, claims(func(c *authn.Claims) { c.Issuer = "evil" })),
		"expired":               sign(key.ID, key.Private, claims(func(c *authn.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) })),
		"unknown kid":           sign(keyring.Thumbprint(stranger.Public().(ed25519.PublicKey)), stranger, claims(nil)),
		"right kid, wrong key":  sign(key.ID, stranger, claims(nil)),
		"unknown user":          sign(key.ID, key.Private, claims(func(c *authn.Claims) { c.Subject = "nobody" })),
		"malformed":             "abc.def",
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			r := a.verify(tok)
			if r.Status != 401 || r.Code(t) != "unauthorized" {
				t.Errorf("got %d %s, want 401 unauthorized", r.Status, r.Body)
			}
		})
	}
	if r := a.verify(""); r.Status != 401 {
		t.Errorf("no token: %d, want 401", r.Status)
	}
	if r := a.do("GET", "/api/auth/verify", "", "", nil); r.Status != 401 || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d, WWW-Authenticate %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
}

func TestLogoutRevokes(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword})
	tok := a.login("", adminPassword).Token
	other := a.login("", adminPassword).Token
	if r := a.do("POST", "/api/auth/logout", tok, "", nil); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if r := a.verify(tok); r.Status != 401 {
		t.Errorf("a logged-out token verified: %d", r.Status)
	}
	if r := a.verify(other); r.Status != 200 {
		t.Errorf("logout revoked another session's token: %d", r.Status)
	}
	// Other services that share Redis refuse it too.
	v := authn.NewVerifier(authn.NewJWKS(a.url+"/api/auth/jwks", authn.JWKSOptions{}),
		authn.VerifierOptions{Issuer: "sortie-auth", Audience: "sortie", Revocations: authn.RedisRevocations{Client: a.redis.Client}})
	var invalid *authn.InvalidTokenError
	if _, err := v.Verify(context.Background(), tok); !errors.As(err, &invalid) {
		t.Errorf("kit verifier accepted a revoked token: %v", err)
	}
	ttl := a.redis.Client.TTL(context.Background(), authn.RevokedKey(jwtID(t, tok))).Val()
	if ttl < 29*24*time.Hour {
		t.Errorf("revocation lives %v, want until the token expires", ttl)
	}
	if r := a.do("POST", "/api/auth/logout", "", "", nil); r.Status != 401 {
		t.Errorf("logout without a token: %d, want 401", r.Status)
	}
}

func jwtID(t *testing.T, token string) string {
	var c authn.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestServiceTokens(t *testing.T) {
	t.Parallel()
	const secret = clientSecret
	a := startAuth(t, map[string]string{
		"SORTIE_AUTH_PASSWORD":          adminPassword,
		"SORTIE_AUTH_CLIENTS_FILE":      "$DIR/clients.json",
		"SORTIE_AUTH_SERVICE_TOKEN_TTL": "2m",
	})
	clientsFile := filepath.Join(filepath.Dir(a.keysDir), "clients.json")
	ctx := context.Background()
	src := authn.NewServiceTokenSource(a.url+"/api/auth/token", "mission-control", secret, a.http)
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("service token: %v", err)
	}
	again, _ := src.Token(ctx)
	if again != tok {
		t.Error("the token source did not reuse a fresh token")
	}
	v := authn.NewVerifier(authn.NewJWKS(a.url+"/api/auth/jwks", authn.JWKSOptions{}), authn.VerifierOptions{Issuer: "sortie-auth", Audience: "sortie"})
	claims, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("kit verifier refused a service token: %v", err)
	}
	if claims.Role != authn.RoleService || claims.Subject != "service:mission-control" {
		t.Errorf("claims = %+v", claims)
	}
	if left := time.Until(claims.ExpiresAt.Time); left > 2*time.Minute || left < time.Minute {
		t.Errorf("service token lives %v, want 2m", left)
	}

	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"mission-control"}, "client_secret": {secret}}
	if r := a.do("POST", "/api/auth/token", "", "application/x-www-form-urlencoded", strings.NewReader(form.Encode())); r.Status != 200 {
		t.Errorf("form credentials: %d %s", r.Status, r.Body)
	}
	req, _ := http.NewRequest("POST", a.url+"/api/auth/token", strings.NewReader(`{}`))
	req.SetBasicAuth("mission-control", secret)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := a.http.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("basic credentials: %v %v", resp.StatusCode, err)
	}

	bad := map[string]struct {
		body       string
		wantStatus int
		wantCode   string
	}{
		"wrong secret":   {`{"client_id":"mission-control","client_secret":"wrong-secret-0123456789abcd"}`, 401, "invalid_client"},
		"unknown client": {`{"client_id":"library","client_secret":"` + secret + `"}`, 401, "invalid_client"},
		"other grant":    {`{"grant_type":"password","client_id":"mission-control","client_secret":"` + secret + `"}`, 400, "unsupported_grant_type"},
		"no credentials": {`{}`, 400, "bad_request"},
	}
	for name, tc := range bad {
		r := a.postJSON("/api/auth/token", tc.body)
		if r.Status != tc.wantStatus || r.Code(t) != tc.wantCode {
			t.Errorf("%s: %d %s, want %d %s", name, r.Status, r.Body, tc.wantStatus, tc.wantCode)
		}
	}

	// Removing the client ends its tokens at /verify.
	os.WriteFile(clientsFile, []byte(`{}`), 0o600)
	a.svc.Reload()
	if r := a.verify(tok); r.Status != 401 {
		t.Errorf("a removed client's token: %d, want 401", r.Status)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword})
	huge := `{"password":"` + strings.Repeat("x", 100<<10) + `"}`
	tests := map[string]struct {
		path, contentType, body string
		want                    int
	}{
		"malformed JSON":       {"/api/auth/login", "application/json", `{"password":`, 400},
		"not JSON at all":      {"/api/auth/login", "application/json", `password=x`, 400},
		"password not string":  {"/api/auth/login", "application/json", `{"password": 12345678}`, 400},
		"username not string":  {"/api/auth/login", "application/json", `{"username": ["a"], "password": "x"}`, 400},
		"array body":           {"/api/auth/login", "application/json", `["password"]`, 400},
		"null body":            {"/api/auth/login", "application/json", `null`, 400},
		"empty body":           {"/api/auth/login", "application/json", ``, 400},
		"missing password":     {"/api/auth/login", "application/json", `{}`, 400},
		"two values":           {"/api/auth/login", "application/json", `{"password":"a"}{"password":"b"}`, 400},
		"oversized":            {"/api/auth/login", "application/json", huge, 413},
		"form content type":    {"/api/auth/login", "text/plain", `{"password":"x"}`, 415},
		"token wrong types":    {"/api/auth/token", "application/json", `{"client_id": 1}`, 400},
		"token oversized":      {"/api/auth/token", "application/json", huge, 413},
		"token malformed form": {"/api/auth/token", "application/x-www-form-urlencoded", "%zz", 400},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := a.do("POST", tc.path, "", tc.contentType, strings.NewReader(tc.body))
			if r.Status != tc.want {
				t.Errorf("status = %d, want %d (%s)", r.Status, tc.want, r.Body)
			}
			r.Code(t)
		})
	}
	// Not in the spec, so asked with a plain client.
	resp, err := http.Get(a.url + "/api/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET login: %d, want 405", resp.StatusCode)
	}
}

func TestDevMode(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_AUTH_KEYS_DIR": ""})
	lr := a.login("anyone", "anything")
	if lr.User.ID != "dev" || lr.User.Role != "admin" {
		t.Errorf("dev login user = %+v", lr.User)
	}
	if r := a.verify(""); r.Status != 200 {
		t.Errorf("dev verify without a token: %d", r.Status)
	}
	var st struct {
		AuthRequired bool   `json:"auth_required"`
		AuthMode     string `json:"auth_mode"`
	}
	a.do("GET", "/api/auth/status", "", "", nil).Decode(t, &st)
	if st.AuthRequired || st.AuthMode != "disabled" {
		t.Errorf("status = %+v", st)
	}
	if !strings.Contains(a.logs.String(), "DEV MODE") {
		t.Error("dev mode was not logged loudly")
	}
}

func TestRedisDownFailsClosed(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword})
	tok := a.login("", adminPassword).Token
	a.redis.Stop()
	if r := a.postJSON("/api/auth/login", map[string]string{"password": adminPassword}); r.Status != 503 || r.Code(t) != "unavailable" {
		t.Errorf("login with Redis down: %d %s, want 503", r.Status, r.Body)
	}
	if r := a.verify(tok); r.Status != 503 {
		t.Errorf("verify with Redis down: %d, want 503 (revocations cannot be checked)", r.Status)
	}
	resp, err := http.Get(a.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("readyz with Redis down: %d, want 503", resp.StatusCode)
	}
}

// Redis at maxmemory (noeviction) refuses the writes a login and a logout
// need: both fail closed with 503 storage_full and Retry-After, the same
// answer every service gives; verifying only reads and goes on working.
func TestRedisFullFailsClosed(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword})
	tok := a.login("", adminPassword).Token
	ctx := context.Background()
	rdb := a.redis.Client
	big := strings.Repeat("x", 64<<10)
	for i := range 32 {
		if err := rdb.Set(ctx, fmt.Sprint("fill", i), big, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "1mb").Err(); err != nil {
		t.Fatal(err)
	}
	full := func(what string, r response) {
		t.Helper()
		if r.Status != 503 || r.Code(t) != "storage_full" || r.Header.Get("Retry-After") == "" {
			t.Errorf("%s with Redis full: %d %s (Retry-After %q), want 503 storage_full", what, r.Status, r.Body, r.Header.Get("Retry-After"))
		}
	}
	full("login", a.postJSON("/api/auth/login", map[string]string{"password": adminPassword}))
	if r := a.verify(tok); r.Status != 200 {
		t.Errorf("verify with Redis full: %d %s, want 200", r.Status, r.Body)
	}
	full("logout", a.do("POST", "/api/auth/logout", tok, "", nil))
}
