package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"sortie.dev/api"
	"sortie.dev/services/auth/internal/config"
	"sortie.dev/services/auth/internal/keyring"
	"sortie.dev/services/auth/internal/service"
	"sortie.dev/services/auth/internal/users"
	"sortie.dev/services/kit/apitest"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testclock"
)

// authServer is a real auth service on a loopback port, with its own
// redis-server and keys folder.
type authServer struct {
	t       testing.TB
	url     string
	svc     *service.Service
	redis   *redistest.Server
	keysDir string
	clock   *testclock.Clock
	http    *http.Client // validates every response against api/openapi.yaml
	logs    *bytes.Buffer
	logMu   *sync.Mutex
	stop    func()
}

const (
	alicePassword  = "alice-password-1"
	bobPassword    = "bob-password-22"
	carolPassword  = "carol-password-3"
	adminPassword  = "single-admin-pw"
	clientSecret   = "mission-control-secret-0123456789"
	operatorSecret = "workspace-operator-secret-0123456"
)

var spec = sync.OnceValue(func() []byte { return api.OpenAPI })

// writeUsers writes a multi-user file of the named users among alice
// (admin, id u-alice), bob and carol (users). "bob:admin" gives bob that
// role; "bob:disabled" disables him.
func writeUsers(t testing.TB, path string, include ...string) {
	t.Helper()
	all := map[string]users.User{
		"alice": {ID: "u-alice", Username: "alice", Role: "admin"},
		"bob":   {Username: "bob"},
		"carol": {Username: "carol"},
	}
	pw := map[string]string{"alice": alicePassword, "bob": bobPassword, "carol": carolPassword}
	var list []users.User
	for _, entry := range include {
		name, change, _ := strings.Cut(entry, ":")
		u, ok := all[name]
		if !ok {
			t.Fatalf("writeUsers: no user %q", name)
		}
		switch change {
		case "":
		case "disabled":
			u.Disabled = true
		default:
			u.Role = authn.Role(change)
		}
		// bcrypt's minimum cost keeps the race-detector build fast; the
		// single-password tests exercise the production cost.
		h, err := users.HashPassword(pw[name], bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		u.PasswordHash = h
		list = append(list, u)
	}
	b, _ := json.Marshal(list)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startAuth starts the service with env (SORTIE_* variables) on top of a
// fresh Redis and keys folder.
func startAuth(t testing.TB, env map[string]string) *authServer {
	t.Helper()
	rdb := redistest.Start(t)
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "keys")
	if _, _, err := keyring.WriteNew(keysDir, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Files the tests point the service at; each test rewrites them as needed.
	writeUsers(t, filepath.Join(dir, "users.json"), "alice", "bob")
	writeClients(t, filepath.Join(dir, "clients.json"), "mission-control", "workspace-operator")
	base := map[string]string{
		"SORTIE_REDIS_URL":     rdb.URL,
		"SORTIE_AUTH_KEYS_DIR": keysDir,
		"SORTIE_LOG_LEVEL":     "debug",
	}
	for k, v := range env {
		if v == "" {
			delete(base, k)
			continue
		}
		base[k] = strings.ReplaceAll(v, "$DIR", dir)
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := base[k]; return v, ok })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	clk := testclock.New(time.Now())
	logs := &bytes.Buffer{}
	logMu := &sync.Mutex{}
	log := logging.New(writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) }), "auth", slog.LevelDebug)
	svc, err := service.New(context.Background(), cfg, log, service.WithClock(clk.Now))
	if err != nil {
		t.Fatalf("service.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	s := openapitest.Load(t, spec())
	return &authServer{
		t: t, url: "http://" + ln.Addr().String(), svc: svc, redis: rdb, keysDir: keysDir,
		clock: clk, http: s.Client(t, &http.Client{Timeout: 10 * time.Second}), logs: logs, logMu: logMu, stop: stop,
	}
}

// writeClients writes a clients file of the named clients among
// mission-control and workspace-operator.
func writeClients(t testing.TB, path string, include ...string) {
	t.Helper()
	secrets := map[string]string{"mission-control": clientSecret, "workspace-operator": operatorSecret}
	m := map[string]string{}
	for _, id := range include {
		m[id] = secrets[id]
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// file is the path of one of the files startAuth wrote (users.json,
// clients.json), for a test to rewrite.
func (a *authServer) file(name string) string { return filepath.Join(filepath.Dir(a.keysDir), name) }

// reload makes the service re-read its files and publish, as its reload
// loop does every SORTIE_AUTH_RELOAD_EVERY.
func (a *authServer) reload() {
	a.t.Helper()
	if err := a.svc.Reload(); err != nil {
		a.t.Fatalf("reload: %v", err)
	}
}

// serviceVerifier verifies tokens as every other service does: through
// auth's JWKS, with revocations and the published principals in the shared
// Redis, on a clock of its own for the principals cache.
func (a *authServer) serviceVerifier() (*authn.Verifier, *testclock.Clock) {
	clk := testclock.New(time.Now())
	return authn.NewVerifier(authn.NewJWKS(a.url+"/api/auth/jwks", authn.JWKSOptions{}), authn.VerifierOptions{
		Issuer: "sortie-auth", Audience: "sortie",
		Revocations: authn.RedisRevocations{Client: a.redis.Client},
		Principals:  authn.NewRedisPrincipals(a.redis.Client, authn.RedisPrincipalsOptions{Now: clk.Now}),
	}), clk
}

// logText is what the service has logged so far.
func (a *authServer) logText() string {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	return a.logs.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type response = apitest.Response

func (a *authServer) do(method, path, token, contentType string, body io.Reader) response {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return apitest.Read(a.t, resp)
}

func (a *authServer) postJSON(path string, v any) response {
	a.t.Helper()
	var body io.Reader
	switch v := v.(type) {
	case string:
		body = strings.NewReader(v)
	default:
		b, _ := json.Marshal(v)
		body = bytes.NewReader(b)
	}
	return a.do("POST", path, "", "application/json", body)
}

type loginResponse struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
	Exp       int64  `json:"exp"`
	User      struct {
		ID, Username, Role string
	} `json:"user"`
}

// login logs in and fails the test unless it succeeds.
func (a *authServer) login(username, password string) loginResponse {
	a.t.Helper()
	body := map[string]string{"password": password}
	if username != "" {
		body["username"] = username
	}
	r := a.postJSON("/api/auth/login", body)
	if r.Status != 200 {
		a.t.Fatalf("login %q: %d %s", username, r.Status, r.Body)
	}
	var lr loginResponse
	r.Decode(a.t, &lr)
	return lr
}

func (a *authServer) verify(token string) response {
	a.t.Helper()
	return a.do("GET", "/api/auth/verify", token, "", nil)
}
