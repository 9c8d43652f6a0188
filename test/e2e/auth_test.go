package e2e

import (
	"regexp"
	"strings"
	"testing"

	"sortie.dev/api"
	"sortie.dev/services/kit/openapitest"
)

// public are the routes a client calls before it has a token.
var public = map[string]bool{
	"POST /api/auth/login": true, "GET /api/auth/jwks": true, "GET /api/auth/status": true,
	"POST /api/auth/token": true, "GET /api/health": true,
}

type authStatus struct {
	AuthRequired bool   `json:"auth_required"`
	AuthMode     string `json:"auth_mode"`
}

// Multi-user mode (the main platform): each user logs in with a name.
func TestLogin(t *testing.T) {
	u := newUser(t)
	for name, body := range map[string]map[string]string{
		"a wrong password": {"username": "alice", "password": "not it"},
		"an unknown user":  {"username": "mallory", "password": sortie.users["alice"]},
		"no username":      {"password": sortie.users["alice"]},
	} {
		if a := u.do("POST", "/api/auth/login", body); a.status != 401 && a.status != 400 {
			t.Errorf("%s: %d %s", name, a.status, a.body)
		}
	}
	var st authStatus
	u.do("GET", "/api/auth/status", nil).decode(t, &st)
	if !st.AuthRequired || st.AuthMode != "multi_user" {
		t.Errorf("auth status %+v, want multi_user", st)
	}
	var health authStatus
	u.do("GET", "/api/health", nil).decode(t, &health)
	if health != st {
		t.Errorf("/api/health says %+v, auth says %+v", health, st)
	}
	var alice struct {
		Username string `json:"username"`
		Role     string `json:"role"`
	}
	loggedInAs(t, "alice").do("GET", "/api/auth/verify", nil).decode(t, &alice)
	if alice.Username != "alice" || alice.Role != "user" {
		t.Errorf("alice: %+v", alice)
	}
	admin := loggedIn(t)
	var who struct {
		Username string `json:"username"`
		Role     string `json:"role"`
	}
	admin.do("GET", "/api/auth/verify", nil).decode(t, &who)
	if who.Role != "admin" {
		t.Errorf("verify: %+v", who)
	}
	if a := admin.do("POST", "/api/auth/logout", nil); a.status != 204 {
		t.Fatalf("logout: %d", a.status)
	}
	if a := admin.do("GET", "/api/workspaces", nil); a.status != 401 {
		t.Errorf("a revoked token on another service: %d, want 401", a.status)
	}
}

// Every route in the spec that is not public refuses a request without a
// token, whichever service serves it.
func TestEveryRouteNeedsAToken(t *testing.T) {
	u := newUser(t)
	param := regexp.MustCompile(`\{[^}]+\}`)
	routes := openapitest.Load(t, api.OpenAPI).Routes()
	if len(routes) < 30 {
		t.Fatalf("only %d routes in the spec", len(routes))
	}
	for _, r := range routes {
		if public[r] {
			continue
		}
		method, path, _ := strings.Cut(r, " ")
		concrete := param.ReplaceAllString(path, "x")
		var body any
		if method == "POST" || method == "PUT" {
			body = map[string]any{}
		}
		if a := u.do(method, concrete, body); a.status != 401 || a.code() == "" {
			t.Errorf("%s without a token: %d %s, want a 401 JSON error", r, a.status, a.body)
		}
	}
}
