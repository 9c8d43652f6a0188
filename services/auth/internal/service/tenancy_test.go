package service_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"sortie.dev/services/auth/internal/keyring"
	"sortie.dev/services/kit/authn"
)

// multiUser is the platform of these tests: alice (admin, id u-alice), bob
// and carol (users), the clients mission-control (may delegate, the
// default) and workspace-operator (may not).
func multiUser(t *testing.T) *authServer {
	t.Helper()
	return startAuth(t, map[string]string{
		"SORTIE_AUTH_USERS_FILE":        "$DIR/users.json",
		"SORTIE_AUTH_CLIENTS_FILE":      "$DIR/clients.json",
		"SORTIE_AUTH_SERVICE_TOKEN_TTL": "2m",
	})
}

// tokenFor asks auth, as client, for a token on subject's behalf.
func (a *authServer) tokenFor(client, secret, subject string) response {
	a.t.Helper()
	return a.postJSON("/api/auth/token", map[string]string{
		"grant_type": "client_credentials", "client_id": client, "client_secret": secret, "subject": subject,
	})
}

// accessToken is the token of a 200 answer from /api/auth/token.
func accessToken(t *testing.T, r response) string {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("token request: %d %s", r.Status, r.Body)
	}
	var tr authn.TokenResponse
	r.Decode(t, &tr)
	return tr.AccessToken
}

type verifyAnswer struct {
	Valid    bool   `json:"valid"`
	ID       string `json:"id"`
	Username string `json:"username"`
	Role     string `json:"role"`
	Actor    string `json:"actor"`
}

func TestDelegatedToken(t *testing.T) {
	t.Parallel()
	a := multiUser(t)
	ctx := context.Background()
	src := authn.NewServiceTokenSource(a.url+"/api/auth/token", "mission-control", clientSecret, a.http)
	tok, err := src.TokenFor(ctx, "u-alice")
	if err != nil {
		t.Fatalf("TokenFor: %v", err)
	}

	// Other services see alice, carried by mission-control.
	v, _ := a.serviceVerifier()
	claims, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("a service refused a delegated token: %v", err)
	}
	if claims.Subject != "u-alice" || claims.Username != "alice" || claims.Role != authn.RoleAdmin || claims.Actor == nil || claims.Actor.Subject != "mission-control" {
		t.Errorf("claims = %+v (actor %+v), want alice's sub, usr and role with act mission-control", claims, claims.Actor)
	}
	if left := time.Until(claims.ExpiresAt.Time); left > 2*time.Minute || left < time.Minute {
		t.Errorf("a delegated token lives %v, want the service-token TTL (2m)", left)
	}
	var va verifyAnswer
	a.verify(tok).Decode(t, &va)
	if !va.Valid || va.ID != "u-alice" || va.Role != "admin" || va.Actor != "mission-control" {
		t.Errorf("verify = %+v, want alice with actor mission-control", va)
	}
	// A user's own token has no actor.
	var own verifyAnswer
	a.verify(a.login("bob", bobPassword).Token).Decode(t, &own)
	if own.Actor != "" {
		t.Errorf("a login token's verify reports actor %q", own.Actor)
	}

	// The subject may come as a form field too.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"mission-control"}, "client_secret": {clientSecret}, "subject": {"bob"}}
	r := a.do("POST", "/api/auth/token", "", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if c, err := v.Verify(ctx, accessToken(t, r)); err != nil || c.Subject != "bob" || c.Actor == nil {
		t.Errorf("delegated by form: %+v, %v", c, err)
	}

	// Every delegated issue is audited, without the token.
	logs := a.logText()
	if !strings.Contains(logs, `"msg":"audit: delegated token issued"`) || !strings.Contains(logs, `"client_id":"mission-control","subject":"u-alice"`) {
		t.Errorf("the delegated issue was not audited with its client and subject:\n%s", logs)
	}
	if strings.Contains(logs, tok) || strings.Contains(logs, strings.Split(tok, ".")[2]) {
		t.Error("a delegated token reached the log")
	}
}

// Each refusal issues nothing, and answers only after the client proved
// who it is, so nobody learns which users exist without a client secret
// and a right to delegate.
func TestDelegationRefused(t *testing.T) {
	t.Parallel()
	a := multiUser(t)
	writeUsers(t, a.file("users.json"), "alice", "bob", "carol:disabled")
	a.reload()

	tests := map[string]struct {
		client, secret, subject string
		wantStatus              int
		wantCode                string
	}{
		"client not allowed to delegate":          {"workspace-operator", operatorSecret, "bob", 403, "delegation_not_allowed"},
		"client not allowed, for an unknown user": {"workspace-operator", operatorSecret, "mallory", 403, "delegation_not_allowed"},
		"unknown user":                {"mission-control", clientSecret, "mallory", 400, "unknown_subject"},
		"disabled user":               {"mission-control", clientSecret, "carol", 400, "unknown_subject"},
		"a username, not the user id": {"mission-control", clientSecret, "alice", 400, "unknown_subject"},
		"wrong secret":                {"mission-control", "wrong-secret-0123456789abcd", "bob", 401, "invalid_client"},
		"unknown client":              {"library", clientSecret, "bob", 401, "invalid_client"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := a.tokenFor(tc.client, tc.secret, tc.subject)
			if r.Status != tc.wantStatus || r.Code(t) != tc.wantCode {
				t.Errorf("%d %s, want %d %s", r.Status, r.Body, tc.wantStatus, tc.wantCode)
			}
			if strings.Contains(string(r.Body), "access_token") {
				t.Errorf("a refusal carried a token: %s", r.Body)
			}
		})
	}
	if logs := a.logText(); strings.Contains(logs, "audit: delegated token issued") {
		t.Errorf("a refused request issued a token:\n%s", logs)
	}
	for _, want := range []string{`"client_id":"workspace-operator","subject":"bob","reason":"delegation_not_allowed"`, `"client_id":"mission-control","subject":"carol","reason":"unknown_subject"`} {
		if !strings.Contains(a.logText(), want) {
			t.Errorf("refusal not audited: want %s in the log", want)
		}
	}

	// A user removed from the file: refused from the next reload on.
	bobs := accessToken(t, a.tokenFor("mission-control", clientSecret, "bob"))
	writeUsers(t, a.file("users.json"), "alice")
	a.reload()
	if r := a.tokenFor("mission-control", clientSecret, "bob"); r.Status != 400 || r.Code(t) != "unknown_subject" {
		t.Errorf("delegation for a removed user: %d %s", r.Status, r.Body)
	}
	if r := a.verify(bobs); r.Status != 401 {
		t.Errorf("a delegated token for a removed user: %d, want 401", r.Status)
	}

	// Allowing nobody to delegate turns delegation off.
	none := startAuth(t, map[string]string{
		"SORTIE_AUTH_USERS_FILE": "$DIR/users.json", "SORTIE_AUTH_CLIENTS_FILE": "$DIR/clients.json",
		"SORTIE_AUTH_DELEGATING_CLIENTS": " , ",
	})
	if r := none.tokenFor("mission-control", clientSecret, "bob"); r.Status != 403 || r.Code(t) != "delegation_not_allowed" {
		t.Errorf("with no delegating clients: %d %s, want 403", r.Status, r.Body)
	}
	if r := none.tokenFor("mission-control", clientSecret, ""); r.Status != 200 {
		t.Errorf("a client's own token with no delegating clients: %d %s", r.Status, r.Body)
	}
}

func TestDelegatedTokenCarriesTheCurrentRole(t *testing.T) {
	t.Parallel()
	a := multiUser(t)
	ctx := context.Background()
	v, clk := a.serviceVerifier()
	roleOf := func(tok string) string {
		t.Helper()
		c, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		return string(c.Role)
	}
	asUser := accessToken(t, a.tokenFor("mission-control", clientSecret, "bob"))
	if got := roleOf(asUser); got != "user" {
		t.Fatalf("bob's delegated token has role %s", got)
	}

	writeUsers(t, a.file("users.json"), "alice", "bob:admin")
	a.reload()
	clk.Advance(authn.MaxPrincipalCacheAge)
	if got := roleOf(accessToken(t, a.tokenFor("mission-control", clientSecret, "bob"))); got != "admin" {
		t.Errorf("after promotion, a new delegated token has role %s, want admin", got)
	}
	// The token minted with the old role stops working.
	if r := a.verify(asUser); r.Status != 401 {
		t.Errorf("a delegated token with bob's old role at auth: %d, want 401", r.Status)
	}
	if _, err := v.Verify(ctx, asUser); err == nil {
		t.Error("a delegated token with bob's old role was accepted by a service")
	}
}

// Removing, disabling or demoting a user, or removing a client, ends its
// tokens at auth at once and at every other service within the principals
// cache bound (the service's clock stands for that time passing).
func TestLosingAccessReachesEveryService(t *testing.T) {
	t.Parallel()
	type tokens struct{ alice, bob, bobDelegated, operator string }
	tests := map[string]struct {
		users, clients []string // the files after the change
		refused        func(tokens) string
		kept           func(tokens) string
	}{
		"removed user": {
			users: []string{"alice"}, refused: func(k tokens) string { return k.bob }, kept: func(k tokens) string { return k.alice },
		},
		"disabled user": {
			users: []string{"alice", "bob:disabled"}, refused: func(k tokens) string { return k.bob }, kept: func(k tokens) string { return k.alice },
		},
		"demoted admin": {
			users: []string{"alice:user", "bob"}, refused: func(k tokens) string { return k.alice }, kept: func(k tokens) string { return k.bob },
		},
		"disabled user's delegated token": {
			users: []string{"alice", "bob:disabled"}, refused: func(k tokens) string { return k.bobDelegated }, kept: func(k tokens) string { return k.alice },
		},
		"removed client's service token": {
			clients: []string{"mission-control"}, refused: func(k tokens) string { return k.operator }, kept: func(k tokens) string { return k.bobDelegated },
		},
		"delegated token of a removed client": {
			clients: []string{"workspace-operator"}, refused: func(k tokens) string { return k.bobDelegated }, kept: func(k tokens) string { return k.operator },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := multiUser(t)
			ctx := context.Background()
			k := tokens{
				alice:        a.login("alice", alicePassword).Token,
				bob:          a.login("bob", bobPassword).Token,
				bobDelegated: accessToken(t, a.tokenFor("mission-control", clientSecret, "bob")),
				operator:     accessToken(t, a.tokenFor("workspace-operator", operatorSecret, "")),
			}
			v, clk := a.serviceVerifier()
			for _, tok := range []string{tc.refused(k), tc.kept(k)} {
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Fatalf("before the change: %v", err)
				}
			}
			if tc.users != nil {
				writeUsers(t, a.file("users.json"), tc.users...)
			}
			if tc.clients != nil {
				writeClients(t, a.file("clients.json"), tc.clients...)
			}
			a.reload()

			if r := a.verify(tc.refused(k)); r.Status != 401 || r.Code(t) != "unauthorized" {
				t.Errorf("auth's /verify right after the reload: %d %s, want 401", r.Status, r.Body)
			}
			clk.Advance(authn.MaxPrincipalCacheAge)
			var invalid *authn.InvalidTokenError
			if _, err := v.Verify(ctx, tc.refused(k)); !errors.As(err, &invalid) {
				t.Errorf("a service %v after the reload: Verify = %v, want refused", authn.MaxPrincipalCacheAge, err)
			} else if msg := invalid.PublicMessage(); msg == "invalid or expired token" {
				t.Errorf("the refusal does not say the principal changed: %v", invalid)
			}
			if _, err := v.Verify(ctx, tc.kept(k)); err != nil {
				t.Errorf("an unaffected token was refused: %v", err)
			}
			if r := a.verify(tc.kept(k)); r.Status != 200 {
				t.Errorf("an unaffected token at auth: %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestPrincipalsPublished(t *testing.T) {
	t.Parallel()
	a := multiUser(t)
	ctx := context.Background()
	hash := func() map[string]string {
		t.Helper()
		return a.redis.Client.HGetAll(ctx, authn.PrincipalsKey).Val()
	}
	want := func(got map[string]string, fields map[string]string) {
		t.Helper()
		published, err := strconv.ParseInt(got[authn.PublishedField], 10, 64)
		if err != nil || published != a.clock.Now().Unix() {
			t.Errorf("_published = %q, want %d", got[authn.PublishedField], a.clock.Now().Unix())
		}
		delete(got, authn.PublishedField)
		if len(got) != len(fields) {
			t.Errorf("hash = %v, want %v", got, fields)
		}
		for f, v := range fields {
			if got[f] != v {
				t.Errorf("%s = %q, want %q (hash %v)", f, got[f], v, got)
			}
		}
	}
	// At start.
	want(hash(), map[string]string{
		"user:u-alice": "admin", "user:bob": "user",
		"client:mission-control": "service", "client:workspace-operator": "service",
	})

	// On every reload, replaced whole: a disabled or removed principal
	// leaves no field behind, and no temporary key is left.
	writeUsers(t, a.file("users.json"), "alice:user", "carol", "bob:disabled")
	writeClients(t, a.file("clients.json"), "mission-control")
	a.clock.Advance(15 * time.Second)
	a.reload()
	want(hash(), map[string]string{"user:u-alice": "user", "user:carol": "user", "client:mission-control": "service"})
	if keys := a.redis.Client.Keys(ctx, authn.PrincipalsKey+"*").Val(); len(keys) != 1 {
		t.Errorf("keys = %v, want only %s", keys, authn.PrincipalsKey)
	}

	// A reload whose files fail keeps, and publishes again, what it had.
	writeClients(t, a.file("clients.json"))
	if err := a.svc.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if err := writeBroken(a.file("users.json")); err != nil {
		t.Fatal(err)
	}
	a.redis.Client.Del(ctx, authn.PrincipalsKey)
	if err := a.svc.Reload(); err == nil {
		t.Error("a broken users file was accepted")
	}
	want(hash(), map[string]string{"user:u-alice": "user", "user:carol": "user"})
}

func TestMissingPrincipalsFailClosed(t *testing.T) {
	t.Parallel()
	a := multiUser(t)
	tok := a.login("bob", bobPassword).Token
	ctx := context.Background()
	v, clk := a.serviceVerifier()
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}

	// Redis lost the hash (flushed, or a new Redis): nobody is let in.
	a.redis.Client.Del(ctx, authn.PrincipalsKey)
	if r := a.verify(tok); r.Status != 503 || r.Code(t) != "unavailable" {
		t.Errorf("auth's /verify with no principals: %d %s, want 503", r.Status, r.Body)
	}
	clk.Advance(authn.MaxPrincipalCacheAge)
	var invalid *authn.InvalidTokenError
	if _, err := v.Verify(ctx, tok); !errors.Is(err, authn.ErrNoPrincipals) || errors.As(err, &invalid) {
		t.Errorf("a service with no principals: %v, want ErrNoPrincipals (503), not a 401", err)
	}

	// The next reload publishes again.
	a.reload()
	if r := a.verify(tok); r.Status != 200 {
		t.Errorf("after the next reload: %d %s", r.Status, r.Body)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("a service after the next reload: %v", err)
	}
}

// Tokens no client can get from auth, signed with auth's own key as if
// the key had leaked into a token's claims: the act claim cannot make a
// service token a user's, nor a made-up client an actor.
func TestForgedActClaims(t *testing.T) {
	t.Parallel()
	a := multiUser(t)
	keys, err := keyring.LoadDir(a.keysDir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	forge := func(sub string, role authn.Role, actor string) string {
		c := &authn.Claims{
			RegisteredClaims: jwt.RegisteredClaims{
				Subject: sub, Issuer: "sortie-auth", Audience: jwt.ClaimStrings{"sortie"},
				IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)), ID: "forged-" + sub + actor,
			},
			Username: sub, Role: role,
		}
		if actor != "" {
			c.Actor = &authn.Actor{Subject: actor}
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = keys[0].ID
		s, err := tok.SignedString(keys[0].Private)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if r := a.verify(forge("bob", authn.RoleUser, "mission-control")); r.Status != 200 {
		t.Fatalf("the forging helper is broken: %d %s", r.Status, r.Body)
	}
	v, _ := a.serviceVerifier()
	tests := map[string]string{
		"act on a service token":         forge("service:workspace-operator", authn.RoleService, "mission-control"),
		"act naming an unknown client":   forge("bob", authn.RoleUser, "ghost"),
		"act with a role the user lacks": forge("bob", authn.RoleAdmin, "mission-control"),
		"service token of no client":     forge("service:ghost", authn.RoleService, ""),
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			if r := a.verify(tok); r.Status != 401 {
				t.Errorf("auth's /verify: %d %s, want 401", r.Status, r.Body)
			}
			var invalid *authn.InvalidTokenError
			if _, err := v.Verify(context.Background(), tok); !errors.As(err, &invalid) {
				t.Errorf("a service: %v, want refused", err)
			}
		})
	}
}

func TestDisabledUserCannotLogIn(t *testing.T) {
	t.Parallel()
	a := multiUser(t)
	writeUsers(t, a.file("users.json"), "alice", "bob:disabled")
	a.reload()
	disabled := a.postJSON("/api/auth/login", map[string]string{"username": "bob", "password": bobPassword})
	wrong := a.postJSON("/api/auth/login", map[string]string{"username": "alice", "password": bobPassword})
	if disabled.Status != 401 || string(disabled.Body) != string(wrong.Body) {
		t.Errorf("a disabled user with the right password: %d %s; want what a wrong password gets: %d %s",
			disabled.Status, disabled.Body, wrong.Status, wrong.Body)
	}
}

func writeBroken(path string) error { return os.WriteFile(path, []byte("{not json"), 0o600) }
