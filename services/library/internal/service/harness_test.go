package service_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/client-go/rest"

	"sortie.dev/api"
	"sortie.dev/services/kit/apitest"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/library/internal/config"
	"sortie.dev/services/library/internal/service"
)

// testKey is the signing key of a test: the KeySet the service verifies
// against, as the auth service's JWKS would publish it.
type testKey struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newTestKey(t testing.TB) testKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{pub, priv}
}

func (k testKey) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if kid != "test" {
		return nil, authn.ErrUnknownKey
	}
	return k.pub, nil
}

func (k testKey) token(t testing.TB, username string, role authn.Role) string {
	t.Helper()
	return k.delegated(t, username, role, "")
}

// delegated is a token auth gives a service (actor) acting for the user:
// the user's sub, usr and role, with an act claim; no actor: the user's
// own token.
func (k testKey) delegated(t testing.TB, username string, role authn.Role, actor string) string {
	t.Helper()
	now := time.Now()
	claims := authn.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "id-" + username, Issuer: "sortie-auth", Audience: jwt.ClaimStrings{"sortie"},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: "jti-" + username + "-" + actor},
		Username: username, Role: role,
	}
	if actor != "" {
		claims.Actor = &authn.Actor{Subject: actor}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = "test"
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// library is a real library service on a loopback port with its own data
// folder; alice and bob are users, root an admin and op (operator) a
// service.
type library struct {
	t       testing.TB
	url     string
	dataDir string
	env     map[string]string
	opts    []service.Option
	svc     *service.Service
	http    *http.Client // validates every response against api/openapi.yaml
	raw     *http.Client // for requests the spec cannot route (a/b names)
	key     testKey
	alice   string
	bob     string
	root    string
	op      string
	stop    func()
}

// startLibrary starts the service with env (SORTIE_* variables) on a new
// data folder. "$DIR" in a value is the test's temporary folder.
func startLibrary(t testing.TB, env map[string]string, opts ...service.Option) *library {
	t.Helper()
	dir := t.TempDir()
	base := map[string]string{
		"SORTIE_LIBRARY_DATA_DIR": filepath.Join(dir, "data"),
		"SORTIE_AUTH_JWKS_URL":    "http://auth.invalid/api/auth/jwks",
		"SORTIE_LOG_LEVEL":        "debug",
	}
	for k, v := range env {
		if v == "" {
			delete(base, k)
			continue
		}
		base[k] = strings.ReplaceAll(v, "$DIR", dir)
	}
	key := newTestKey(t)
	l := &library{t: t, dataDir: base["SORTIE_LIBRARY_DATA_DIR"], env: base, key: key,
		opts:  append([]service.Option{service.WithKeySet(key), service.WithKubeConfig(nil), service.WithRetryMin(50 * time.Millisecond)}, opts...),
		alice: key.token(t, "alice", authn.RoleUser), bob: key.token(t, "bob", authn.RoleUser), root: key.token(t, "root", authn.RoleAdmin), op: key.token(t, "operator", authn.RoleService),
	}
	l.start()
	return l
}

// withKube publishes revisions through cfg.
func withKube(cfg *rest.Config) service.Option { return service.WithKubeConfig(cfg) }

var spec = sync.OnceValue(func() []byte { return api.OpenAPI })

func (l *library) start() {
	t := l.t
	t.Helper()
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := l.env[k]; return v, ok })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := logging.New(io.Discard, "library", slog.LevelDebug)
	if testing.Verbose() && os.Getenv("LIBRARY_TEST_LOGS") != "" {
		log = logging.New(os.Stderr, "library", slog.LevelDebug)
	}
	svc, err := service.New(context.Background(), cfg, log, l.opts...)
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
	l.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(l.stop)
	l.svc = svc
	l.url = "http://" + ln.Addr().String()
	l.http = openapitest.Load(t, spec()).Client(t, &http.Client{Timeout: time.Minute})
	l.raw = &http.Client{Timeout: time.Minute}
}

// restart stops the service and starts it again on the same data folder.
func (l *library) restart() {
	l.t.Helper()
	l.stop()
	l.start()
}

// repoDir is the library's work tree.
func (l *library) repoDir() string { return filepath.Join(l.dataDir, "repo") }

type response = apitest.Response

// do sends a request as token through the validating client. body may be
// nil, a string (sent as is) or a value (sent as JSON).
func (l *library) do(token, method, path string, body any) response {
	l.t.Helper()
	return l.send(l.http, token, method, path, body)
}

func (l *library) send(client *http.Client, token, method, path string, body any) response {
	l.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, l.url+path, rd)
	if err != nil {
		l.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	return apitest.Read(l.t, res)
}

// must sends a request as alice and fails the test unless the status is want.
func (l *library) must(want int, method, path string, body any) response {
	l.t.Helper()
	return l.mustAs(l.alice, want, method, path, body)
}

// mustAs is must as token.
func (l *library) mustAs(token string, want int, method, path string, body any) response {
	l.t.Helper()
	r := l.do(token, method, path, body)
	if r.Status != want {
		l.t.Fatalf("%s %s: got %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

func (l *library) status() map[string]any {
	l.t.Helper()
	return l.must(200, "GET", "/api/library/status", nil).Object(l.t)
}

// git runs the real git binary in dir (tests only: the service never
// needs it) and returns its trimmed output.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir(),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRemote creates an empty bare repository to serve as a remote.
func newRemote(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "remote.git")
	cmd := exec.Command("git", "init", "--bare", "--initial-branch=main", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	return dir
}

func content(s string) map[string]string { return map[string]string{"content": s} }
