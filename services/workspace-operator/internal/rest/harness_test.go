package rest

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
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"sortie.dev/api"
	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apitest"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/kit/testwait"
)

// staticKey is the KeySet of a test: one signing key, as the auth
// service's JWKS would publish it.
type staticKey struct{ pub ed25519.PublicKey }

func (k staticKey) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if kid != "test" {
		return nil, authn.ErrUnknownKey
	}
	return k.pub, nil
}

type restEnv struct {
	t      testing.TB
	kube   *rest.Config
	url    string
	token  string
	priv   ed25519.PrivateKey // signs the test's tokens (tokenFor)
	http   *http.Client       // validates responses against api/openapi.yaml
	client client.Client
	ns     string
	routes func() []string
	srv    *server.Server
}

// startREST serves the workspace API from a real manager's cache, against
// cfg's cluster, in namespace ns. extra adds to the manager (a controller)
// and the handler (a library).
func startREST(t testing.TB, cfg *rest.Config, ns string, extra func(ctrl.Manager, *Handler)) *restEnv {
	t.Helper()
	s := testScheme
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: s, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		// As in the operator (cmd/workspace-operator), the cache holds the
		// one namespace: what another test left in its own namespace is
		// neither served nor reconciled here.
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	log := logging.New(io.Discard, "workspace-operator", slog.LevelDebug)
	srv, err := server.New(server.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	verifier := authn.NewVerifier(staticKey{pub}, authn.VerifierOptions{Issuer: "sortie-auth", Audience: "sortie"})
	h := &Handler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: ns,
		DefaultDistro: v1alpha1.DistroUbuntuNoble, AgentPort: 7070, Log: log}
	if err := IndexWorkspaces(context.Background(), mgr.GetFieldIndexer()); err != nil {
		t.Fatal(err)
	}
	h.Register(srv.Engine, authn.NewAuthenticator(verifier, false, log).Require(authn.RoleUser, authn.RoleAdmin, authn.RoleService))
	if extra != nil {
		extra(mgr, h)
	}
	// As in the operator: one default host workspace in single-user mode.
	if !h.MultiUser {
		if err := mgr.Add(EnsureDefault{Client: mgr.GetClient(), Namespace: ns, Log: log}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mgrDone, srvDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(mgrDone); _ = mgr.Start(ctx) }()
	go func() { defer close(srvDone); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-mgrDone; <-srvDone })
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}

	cl, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	e := &restEnv{t: t, kube: cfg, url: "http://" + ln.Addr().String(), priv: priv,
		http:   openapitest.Load(t, api.OpenAPI).Client(t, &http.Client{Timeout: testwait.Scaled(2 * time.Minute)}),
		client: cl, ns: ns, srv: srv}
	// By default the test acts as single-user mode's one user, an admin.
	e.token = e.tokenFor(singleUser)
	return e
}

// Identities the tests act as (as).
var (
	// singleUser is the single-password mode's one user.
	singleUser = authn.Identity{UserID: "default", Username: "default", Role: authn.RoleAdmin}
	alice      = authn.Identity{UserID: "alice", Username: "alice", Role: authn.RoleUser}
	bob        = authn.Identity{UserID: "bob", Username: "bob", Role: authn.RoleUser}
	admin      = authn.Identity{UserID: "root", Username: "root", Role: authn.RoleAdmin}
	// service is a service's own token: no user.
	service = authn.Identity{UserID: "service:mission-control", Username: "mission-control", Role: authn.RoleService}
	// forAlice is mission-control holding a token alice delegated.
	forAlice = authn.Identity{UserID: "alice", Username: "alice", Role: authn.RoleUser, Actor: "mission-control"}
	forBob   = authn.Identity{UserID: "bob", Username: "bob", Role: authn.RoleUser, Actor: "mission-control"}
)

// tokenFor signs a token for id as the auth service would.
func (e *restEnv) tokenFor(id authn.Identity) string {
	e.t.Helper()
	now := time.Now()
	claims := authn.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: id.UserID, Issuer: "sortie-auth", Audience: jwt.ClaimStrings{"sortie"},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: rand.Text()},
		Username: id.Username, Role: id.Role,
	}
	if id.Actor != "" {
		claims.Actor = &authn.Actor{Subject: id.Actor}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = "test"
	signed, err := tok.SignedString(e.priv)
	if err != nil {
		e.t.Fatal(err)
	}
	return signed
}

// as is the same API called with id's token.
func (e *restEnv) as(id authn.Identity) *restEnv {
	c := *e
	c.token = e.tokenFor(id)
	return &c
}

type resp = apitest.Response

func (e *restEnv) do(method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	res, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return apitest.Read(e.t, res)
}

// ndjson reads a whole NDJSON response.
func (e *restEnv) ndjson(path string) []map[string]any {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	res, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		e.t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	var out []map[string]any
	dec := json.NewDecoder(res.Body)
	for {
		var ev map[string]any
		if err := dec.Decode(&ev); err != nil {
			if err != io.EOF {
				e.t.Fatalf("decode NDJSON: %v", err)
			}
			return out
		}
		out = append(out, ev)
	}
}
