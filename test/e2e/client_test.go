package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"sortie.dev/api"
	"sortie.dev/services/kit/openapitest"
)

// user is someone using the platform through the gateway; every answer is
// validated against api/openapi.yaml.
type user struct {
	t     *testing.T
	name  string // who logged in ("" before login)
	http  *http.Client
	token string
	base  string // the front door: the gateway, or nginx in front of it
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d is not the JSON expected: %v: %s", a.status, err, clip(a.body))
	}
}

// code is the "code" of an error answer.
func (a answer) code() string {
	var e struct{ Code string }
	_ = json.Unmarshal(a.body, &e)
	return e.Code
}

func newUser(t *testing.T) *user {
	t.Helper()
	return &user{t: t, base: sortie.url, http: openapitest.Load(t, api.OpenAPI).Client(t, &http.Client{Timeout: 11 * time.Minute})}
}

// loggedIn is the admin, logged in.
func loggedIn(t *testing.T) *user {
	t.Helper()
	return loginAt(t, sortie, sortie.url, "admin")
}

// loggedInAs is another user of the main platform.
func loggedInAs(t *testing.T, name string) *user {
	t.Helper()
	return loginAt(t, sortie, sortie.url, name)
}

// loggedInVia logs the admin in through another front door (nginx).
func loggedInVia(t *testing.T, base string) *user {
	t.Helper()
	return loginAt(t, sortie, base, "admin")
}

// loginAt logs in at a platform: with the username and its password in
// multi-user mode, with the password alone in single-password mode.
func loginAt(t *testing.T, p *platform, base, name string) *user {
	t.Helper()
	u := newUser(t)
	u.base = base
	body := map[string]string{"password": p.password}
	if p.users != nil {
		body = map[string]string{"username": name, "password": p.users[name]}
	}
	var tok struct{ Token string }
	a := u.do("POST", "/api/auth/login", body)
	if a.status != 200 {
		t.Fatalf("login: %d %s", a.status, a.body)
	}
	a.decode(t, &tok)
	u.token, u.name = tok.Token, name
	return u
}

func (u *user) do(method, path string, body any) answer {
	u.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, u.base+path, r)
	if err != nil {
		u.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	resp, err := u.http.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// clip keeps a failure message readable when an answer is megabytes long.
func clip(b []byte) string {
	const max = 600
	if len(b) <= max {
		return string(b)
	}
	return fmt.Sprintf("%s…(%d bytes more)…%s", b[:max/2], len(b)-max, b[len(b)-max/2:])
}
