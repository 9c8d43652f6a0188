package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testclock"
)

// principalsFixture is what a service has: a JWKS client for auth's keys,
// and Redis holding auth's revocations and published principals.
type principalsFixture struct {
	key    signingKey
	rdb    *redistest.Server
	client *redis.Client // the service's own connection, with a round-trip counter
	trips  *tripCounter
	clock  *testclock.Clock
	p      *RedisPrincipals
	v      *Verifier
}

// tripCounter counts round trips to Redis (a command or a whole pipeline)
// and the commands they carried, leaving out the ones go-redis sends to set
// up a new connection.
type tripCounter struct{ trips, cmds atomic.Int32 }

func (h *tripCounter) count(cmds []redis.Cmder) {
	n := 0
	for _, c := range cmds {
		if name := c.Name(); name != "hello" && name != "client" {
			n++
		}
	}
	if n > 0 {
		h.trips.Add(1)
		h.cmds.Add(int32(n))
	}
}

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.count(cmds)
		return next(ctx, cmds)
	}
}

func (h *tripCounter) reset() { h.trips.Store(0); h.cmds.Store(0) }

// everyone is what auth publishes in these tests.
var everyone = PrincipalSet{
	Users:   map[string]Role{"u-alice": RoleUser, "u-root": RoleAdmin},
	Clients: []string{"mission-control", "workspace-operator"},
}

func newPrincipalsFixture(t *testing.T, opts RedisPrincipalsOptions) *principalsFixture {
	t.Helper()
	f := &principalsFixture{key: newKey(t, "k1"), rdb: redistest.Start(t), trips: &tripCounter{}, clock: testclock.New(time.Now())}
	f.client = redis.NewClient(&redis.Options{Addr: f.rdb.Addr})
	t.Cleanup(func() { f.client.Close() })
	if err := f.client.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	f.client.AddHook(f.trips)
	if opts.Now == nil {
		opts.Now = f.clock.Now
	}
	f.p = NewRedisPrincipals(f.client, opts)
	f.v = NewVerifier(NewJWKS(newJWKSServer(t, f.key).URL, JWKSOptions{}), VerifierOptions{
		Issuer: testIssuer, Audience: testAudience,
		Revocations: RedisRevocations{Client: f.client},
		Principals:  f.p,
	})
	return f
}

// publish stands in for the auth service.
func (f *principalsFixture) publish(t *testing.T, set PrincipalSet) {
	t.Helper()
	if err := PublishPrincipals(context.Background(), f.rdb.Client, set, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// token signs a token for sub with role, delegated to actor when set.
func (f *principalsFixture) token(t *testing.T, sub string, role Role, actor string) string {
	t.Helper()
	c := validClaims(time.Now())
	c.Subject, c.Role = sub, role
	if actor != "" {
		c.Actor = &Actor{Subject: actor}
	}
	return sign(t, f.key, c)
}

func TestPrincipalsDecideWhichTokensAreValid(t *testing.T) {
	f := newPrincipalsFixture(t, RedisPrincipalsOptions{})
	f.publish(t, everyone)
	emptyActor := validClaims(time.Now())
	emptyActor.Actor = &Actor{}

	tests := map[string]struct {
		token string
		want  error // nil: valid; else the reason it must be refused for
	}{
		"current user":                        {token: f.token(t, "u-alice", RoleUser, "")},
		"current admin":                       {token: f.token(t, "u-root", RoleAdmin, "")},
		"user who does not exist":             {token: f.token(t, "u-mallory", RoleUser, ""), want: ErrUserChanged},
		"user claiming admin":                 {token: f.token(t, "u-alice", RoleAdmin, ""), want: ErrUserChanged},
		"current client":                      {token: f.token(t, "service:mission-control", RoleService, "")},
		"client that does not exist":          {token: f.token(t, "service:library", RoleService, ""), want: ErrClientRemoved},
		"service token without service:":      {token: f.token(t, "mission-control", RoleService, ""), want: errAny},
		"service token carrying act":          {token: f.token(t, "service:mission-control", RoleService, "workspace-operator"), want: errAny},
		"delegated by a current client":       {token: f.token(t, "u-alice", RoleUser, "mission-control")},
		"delegated by an unknown client":      {token: f.token(t, "u-alice", RoleUser, "evil-client"), want: ErrClientRemoved},
		"delegated for an unknown user":       {token: f.token(t, "u-mallory", RoleUser, "mission-control"), want: ErrUserChanged},
		"delegated with a role the user lost": {token: f.token(t, "u-alice", RoleAdmin, "mission-control"), want: ErrUserChanged},
		"act without sub":                     {token: sign(t, f.key, emptyActor), want: errAny},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			claims, err := f.v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("a current principal's token was refused: %v", err)
				}
				if id := claims.identity(); claims.Actor != nil && id.Actor != claims.Actor.Subject {
					t.Errorf("identity %+v does not carry the actor", id)
				}
				return
			}
			var invalid *InvalidTokenError
			if !errors.As(err, &invalid) {
				t.Fatalf("Verify = %v, want *InvalidTokenError", err)
			}
			if tc.want != errAny && !errors.Is(err, tc.want) {
				t.Errorf("refused for %v, want %v", err, tc.want)
			}
		})
	}
}

// errAny marks a refusal whose reason is not one of the principal errors.
var errAny = errors.New("any reason")

func TestActOnServiceTokenRefusedEvenWithoutPrincipals(t *testing.T) {
	key := newKey(t, "k1")
	v := NewVerifier(NewJWKS(newJWKSServer(t, key).URL, JWKSOptions{}), VerifierOptions{Issuer: testIssuer, Audience: testAudience})
	c := validClaims(time.Now())
	c.Subject, c.Role, c.Actor = "service:workspace-operator", RoleService, &Actor{Subject: "mission-control"}
	var invalid *InvalidTokenError
	if _, err := v.Verify(context.Background(), sign(t, key, c)); !errors.As(err, &invalid) {
		t.Errorf("a service token with act was accepted: %v", err)
	}
}

// Losing access reaches a service within the cache bound: the injected
// clock stands for the time that passes after auth republishes.
func TestPrincipalChangesReachTheVerifierWithinTheCacheBound(t *testing.T) {
	tests := map[string]struct {
		token  func(f *principalsFixture) string
		change func(set *PrincipalSet)
	}{
		"removed user": {
			token:  func(f *principalsFixture) string { return f.token(t, "u-alice", RoleUser, "") },
			change: func(s *PrincipalSet) { delete(s.Users, "u-alice") },
		},
		"demoted admin": {
			token:  func(f *principalsFixture) string { return f.token(t, "u-root", RoleAdmin, "") },
			change: func(s *PrincipalSet) { s.Users["u-root"] = RoleUser },
		},
		"removed client": {
			token:  func(f *principalsFixture) string { return f.token(t, "service:workspace-operator", RoleService, "") },
			change: func(s *PrincipalSet) { s.Clients = []string{"mission-control"} },
		},
		"user of a delegated token removed": {
			token:  func(f *principalsFixture) string { return f.token(t, "u-alice", RoleUser, "mission-control") },
			change: func(s *PrincipalSet) { delete(s.Users, "u-alice") },
		},
		"actor of a delegated token removed": {
			token:  func(f *principalsFixture) string { return f.token(t, "u-alice", RoleUser, "mission-control") },
			change: func(s *PrincipalSet) { s.Clients = []string{"workspace-operator"} },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newPrincipalsFixture(t, RedisPrincipalsOptions{})
			f.publish(t, everyone)
			tok := tc.token(f)
			ctx := context.Background()
			if _, err := f.v.Verify(ctx, tok); err != nil {
				t.Fatalf("before the change: %v", err)
			}
			changed := PrincipalSet{Users: map[string]Role{}, Clients: everyone.Clients}
			for id, r := range everyone.Users {
				changed.Users[id] = r
			}
			tc.change(&changed)
			f.publish(t, changed)

			f.clock.Advance(MaxPrincipalCacheAge - time.Second)
			if _, err := f.v.Verify(ctx, tok); err != nil {
				t.Fatalf("within the cache bound the cached principal must be used (no lookup), got %v", err)
			}
			f.clock.Advance(time.Second)
			var invalid *InvalidTokenError
			_, err := f.v.Verify(ctx, tok)
			if !errors.As(err, &invalid) {
				t.Fatalf("%s after the cache bound: Verify = %v, want refused", name, err)
			}
		})
	}
}

func TestMissingPrincipalsFailClosed(t *testing.T) {
	gin.SetMode(gin.TestMode)
	f := newPrincipalsFixture(t, RedisPrincipalsOptions{})
	tok := f.token(t, "u-alice", RoleUser, "")
	engine := gin.New()
	engine.GET("/user", NewAuthenticator(f.v, false, nil).Require(), func(c *gin.Context) { c.Status(204) })
	get := func() (int, string) {
		req := httptest.NewRequest("GET", "/user", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		engine.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}

	// Never published: not one token is accepted, and it is not the
	// caller's fault (503, not 401).
	_, err := f.v.Verify(context.Background(), tok)
	var invalid *InvalidTokenError
	if err == nil || errors.As(err, &invalid) || !errors.Is(err, ErrNoPrincipals) {
		t.Fatalf("Verify with no principals = %v, want ErrNoPrincipals as a dependency error", err)
	}
	if code, body := get(); code != 503 {
		t.Errorf("middleware with no principals: %d %s, want 503", code, body)
	}

	f.publish(t, everyone)
	if code, body := get(); code != 204 {
		t.Fatalf("after publication: %d %s", code, body)
	}

	// Lost later (a flushed Redis): closed again once the cache ages out.
	f.rdb.Client.Del(context.Background(), PrincipalsKey)
	f.clock.Advance(MaxPrincipalCacheAge)
	if code, body := get(); code != 503 {
		t.Errorf("middleware after the hash was deleted: %d %s, want 503", code, body)
	}

	// Redis down: closed too.
	f.publish(t, everyone)
	f.rdb.Stop()
	f.clock.Advance(MaxPrincipalCacheAge)
	if code, body := get(); code != 503 {
		t.Errorf("middleware with Redis down: %d %s, want 503", code, body)
	}
}

func TestMiddlewareTellsWhyAPrincipalIsRefused(t *testing.T) {
	gin.SetMode(gin.TestMode)
	f := newPrincipalsFixture(t, RedisPrincipalsOptions{})
	f.publish(t, everyone)
	engine := gin.New()
	engine.GET("/user", NewAuthenticator(f.v, false, nil).Require(), func(c *gin.Context) { c.Status(204) })
	req := httptest.NewRequest("GET", "/user", nil)
	req.Header.Set("Authorization", "Bearer "+f.token(t, "u-alice", RoleAdmin, ""))
	w := httptest.NewRecorder()
	engine.ServeHTTP(w, req)
	var e struct{ Error, Code string }
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != 401 || e.Code != "unauthorized" || e.Error != ErrUserChanged.Error() {
		t.Errorf("a demoted admin's token: %d %s, want 401 %q", w.Code, w.Body.String(), ErrUserChanged)
	}
}

func TestRevocationAndPrincipalsInOneRoundTrip(t *testing.T) {
	f := newPrincipalsFixture(t, RedisPrincipalsOptions{})
	f.publish(t, everyone)
	ctx := context.Background()
	verify := func(tok string) {
		t.Helper()
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	delegated := f.token(t, "u-alice", RoleUser, "mission-control")

	f.trips.reset()
	verify(delegated)
	if trips, cmds := f.trips.trips.Load(), f.trips.cmds.Load(); trips != 1 || cmds != 2 {
		t.Errorf("first verification: %d round trips carrying %d commands, want 1 carrying EXISTS and HMGET", trips, cmds)
	}
	f.trips.reset()
	verify(delegated)
	if trips, cmds := f.trips.trips.Load(), f.trips.cmds.Load(); trips != 1 || cmds != 1 {
		t.Errorf("cached principals: %d round trips carrying %d commands, want 1 (the revocation EXISTS)", trips, cmds)
	}

	// A revoked token is refused even while its principals are cached.
	f.rdb.Client.Set(ctx, RevokedKey("jti-1"), "1", time.Hour)
	var invalid *InvalidTokenError
	if _, err := f.v.Verify(ctx, delegated); !errors.As(err, &invalid) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a revoked token with cached principals: %v", err)
	}
}

func TestPrincipalCacheIsBounded(t *testing.T) {
	f := newPrincipalsFixture(t, RedisPrincipalsOptions{MaxEntries: 3})
	set := PrincipalSet{Users: map[string]Role{}}
	for i := range 10 {
		set.Users[fmt.Sprintf("u-%d", i)] = RoleUser
	}
	f.publish(t, set)
	ctx := context.Background()
	for i := range 10 {
		vals, err := f.p.Lookup(ctx, UserField(fmt.Sprintf("u-%d", i)))
		if err != nil || vals[0] != "user" {
			t.Fatalf("u-%d: %v %v", i, vals, err)
		}
		if n := f.p.cached(); n > 3 {
			t.Fatalf("the cache holds %d principals, bound 3", n)
		}
	}
	if got := NewRedisPrincipals(f.client, RedisPrincipalsOptions{MaxAge: time.Hour}).opts.MaxAge; got != MaxPrincipalCacheAge {
		t.Errorf("MaxAge of an hour became %v, want it lowered to %v", got, MaxPrincipalCacheAge)
	}
}

func TestPublishPrincipalsReplacesTheHashAtOnce(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t)
	if err := PublishPrincipals(ctx, rdb.Client, everyone, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"user:u-alice": "user", "user:u-root": "admin",
		"client:mission-control": "service", "client:workspace-operator": "service",
		"_published": "1700000000",
	}
	if got := rdb.Client.HGetAll(ctx, PrincipalsKey).Val(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hash = %v, want %v", got, want)
	}
	if err := PublishPrincipals(ctx, rdb.Client, PrincipalSet{Users: map[string]Role{"u-root": RoleAdmin}}, time.Unix(1700000015, 0)); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"user:u-root": "admin", "_published": "1700000015"}
	if got := rdb.Client.HGetAll(ctx, PrincipalsKey).Val(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after republishing, hash = %v, want only %v (nothing left of the old set)", got, want)
	}
	if keys := rdb.Client.Keys(ctx, PrincipalsKey+"*").Val(); len(keys) != 1 {
		t.Errorf("keys = %v, want only %s (no temporary key left)", keys, PrincipalsKey)
	}
	if err := PublishPrincipals(ctx, rdb.Client, PrincipalSet{Users: map[string]Role{"svc": RoleService}}, time.Now()); err == nil {
		t.Error("a user with role service was published")
	}
}
