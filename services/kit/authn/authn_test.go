package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"sortie.dev/services/kit/redistest"
)

const (
	testIssuer   = "sortie-auth"
	testAudience = "sortie"
)

type signingKey struct {
	kid  string
	priv ed25519.PrivateKey
}

func newKey(t testing.TB, kid string) signingKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, priv: priv}
}

func (k signingKey) pub() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

func validClaims(now time.Time) *Claims {
	return &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "u-alice",
			Issuer:    testIssuer,
			Audience:  jwt.ClaimStrings{testAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			ID:        "jti-1",
		},
		Username: "alice",
		Role:     RoleUser,
	}
}

func sign(t testing.TB, k signingKey, c *Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksServer is a real HTTP server publishing a changeable key set. It
// can answer 503 (down) or hold every request back until let go (hold).
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []signingKey
	release  chan struct{} // while set, requests wait for it to close
	requests atomic.Int32  // requests that reached the handler
	answered atomic.Int32  // requests answered with the key set
	down     atomic.Bool
}

func newJWKSServer(t testing.TB, keys ...signingKey) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		release := s.release
		s.mu.Unlock()
		if release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		var doc JWKSDocument
		for _, k := range s.keys {
			doc.Keys = append(doc.Keys, PublicKeyJWK(k.kid, k.pub()))
		}
		s.mu.Unlock()
		s.answered.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(keys ...signingKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// hold makes requests wait; the returned func (also run when the test
// ends) lets them go.
func (s *jwksServer) hold(t testing.TB) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.release = ch
	var once sync.Once
	free := func() {
		once.Do(func() {
			s.mu.Lock()
			s.release = nil
			s.mu.Unlock()
			close(ch)
		})
	}
	t.Cleanup(free)
	return free
}

func TestVerifierRejects(t *testing.T) {
	now := time.Now()
	key := newKey(t, "k1")
	other := newKey(t, "k-other")
	jwks := newJWKSServer(t, key)
	v := NewVerifier(NewJWKS(jwks.URL, JWKSOptions{}), VerifierOptions{Issuer: testIssuer, Audience: testAudience})

	good := sign(t, key, validClaims(now))
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("a valid token was refused: %v", err)
	}

	mutate := func(f func(*Claims)) string {
		c := validClaims(now)
		f(c)
		return sign(t, key, c)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(good, ".")

	hs256WithPublicKey := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims(now))
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString([]byte(key.pub()))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	tampered := func() string {
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		payload = []byte(strings.Replace(string(payload), `"role":"user"`, `"role":"admin"`, 1))
		return parts[0] + "." + b64(payload) + "." + parts[2]
	}()
	noKid := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, validClaims(now))
		s, _ := tok.SignedString(key.priv)
		return s
	}()

	tests := map[string]string{
		"alg none":              b64([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`)) + "." + parts[1] + ".",
		"alg none, unsigned":    b64([]byte(`{"alg":"none","kid":"k1"}`)) + "." + parts[1],
		"HS256 with public key": hs256WithPublicKey,
		"tampered payload":      tampered,
		"wrong audience":        mutate(func(c *Claims) { c.Audience = jwt.ClaimStrings{"someone-else"} }),
		"wrong issuer":          mutate(func(c *Claims) { c.Issuer = "evil" }),
		"expired":               mutate(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) }),
		"no expiry":             mutate(func(c *Claims) { c.ExpiresAt = nil }),
		"issued in the future":  mutate(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) }),
		"unknown role":          mutate(func(c *Claims) { c.Role = "root" }),
		"no subject":            mutate(func(c *Claims) { c.Subject = "" }),
		"no jti":                mutate(func(c *Claims) { c.ID = "" }),
		"longer than 8 KiB":     mutate(func(c *Claims) { c.Username = strings.Repeat("a", MaxTokenBytes) }),
		"unknown kid":           sign(t, other, validClaims(now)),
		"known kid, other key":  sign(t, signingKey{kid: "k1", priv: other.priv}, validClaims(now)),
		"no kid":                noKid,
		"garbage":               "not.a.token",
		"empty":                 "",
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), raw)
			var invalid *InvalidTokenError
			if !errors.As(err, &invalid) {
				t.Errorf("Verify error = %v, want *InvalidTokenError", err)
			}
		})
	}
}

func TestVerifierRevocation(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t)
	key := newKey(t, "k1")
	jwks := newJWKSServer(t, key)
	v := NewVerifier(NewJWKS(jwks.URL, JWKSOptions{}), VerifierOptions{
		Issuer: testIssuer, Audience: testAudience,
		Revocations: RedisRevocations{Client: rdb.Client},
	})
	tok := sign(t, key, validClaims(time.Now()))
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	rdb.Client.Set(ctx, RevokedKey("jti-1"), "1", time.Hour)
	var invalid *InvalidTokenError
	if _, err := v.Verify(ctx, tok); !errors.As(err, &invalid) {
		t.Errorf("a revoked token was accepted: %v", err)
	}
}

func TestJWKSRotationAndCaching(t *testing.T) {
	ctx := context.Background()
	clock := time.Now()
	now := func() time.Time { return clock }
	old, next := newKey(t, "old"), newKey(t, "new")
	srv := newJWKSServer(t, old)
	j := NewJWKS(srv.URL, JWKSOptions{MinRefetch: 10 * time.Second, MaxAge: 5 * time.Minute, Now: now})

	if _, err := j.PublicKey(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := j.PublicKey(ctx, "old"); err != nil || srv.requests.Load() != 1 {
		t.Fatalf("a cached key was refetched (%d requests, %v)", srv.requests.Load(), err)
	}

	// Rotation: a token signed with a key published after our fetch.
	srv.publish(old, next)
	clock = clock.Add(11 * time.Second)
	if _, err := j.PublicKey(ctx, "new"); err != nil {
		t.Fatalf("a newly published key was not found by refetching: %v", err)
	}
	if srv.requests.Load() != 2 {
		t.Errorf("requests = %d, want 2", srv.requests.Load())
	}

	// Forged kids cannot make us hammer the auth service.
	clock = clock.Add(11 * time.Second)
	for range 50 {
		if _, err := j.PublicKey(ctx, "forged"); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("forged kid: %v", err)
		}
	}
	if srv.requests.Load() != 3 {
		t.Errorf("50 unknown kids caused %d fetches, want 1 (rate limited)", srv.requests.Load()-2)
	}

	// While auth is down, known keys keep working after the cache ages.
	srv.down.Store(true)
	clock = clock.Add(10 * time.Minute)
	if _, err := j.PublicKey(ctx, "new"); err != nil {
		t.Errorf("a known key failed while auth was down: %v", err)
	}
	if _, err := j.PublicKey(ctx, "never-seen"); err == nil || errors.Is(err, ErrUnknownKey) {
		t.Errorf("an unknown kid while auth is down must be a dependency error, got %v", err)
	}
}

func TestMiddleware(t *testing.T) {
	gin.SetMode(gin.TestMode)
	key := newKey(t, "k1")
	jwks := newJWKSServer(t, key)
	v := NewVerifier(NewJWKS(jwks.URL, JWKSOptions{}), VerifierOptions{Issuer: testIssuer, Audience: testAudience})
	a := NewAuthenticator(v, false, nil)
	engine := gin.New()
	who := func(c *gin.Context) {
		id, _ := FromContext(c.Request.Context())
		c.JSON(200, gin.H{"user": id.UserID, "role": id.Role})
	}
	engine.GET("/user", a.Require(), who)
	engine.GET("/admin", a.Require(RoleAdmin), who)
	engine.GET("/stream", a.RequireStream("token"), who)

	now := time.Now()
	userTok := sign(t, key, validClaims(now))
	adminClaims := validClaims(now)
	adminClaims.Role = RoleAdmin
	adminTok := sign(t, key, adminClaims)
	serviceClaims := validClaims(now)
	serviceClaims.Role = RoleService
	serviceTok := sign(t, key, serviceClaims)

	tests := map[string]struct {
		path, header string
		want         int
	}{
		"bearer":                {path: "/user", header: "Bearer " + userTok, want: 200},
		"lower-case scheme":     {path: "/user", header: "bearer " + userTok, want: 200},
		"no header":             {path: "/user", want: 401},
		"basic scheme":          {path: "/user", header: "Basic abc", want: 401},
		"bad token":             {path: "/user", header: "Bearer nope", want: 401},
		"admin on user route":   {path: "/user", header: "Bearer " + adminTok, want: 200},
		"service on user route": {path: "/user", header: "Bearer " + serviceTok, want: 403},
		"user on admin route":   {path: "/admin", header: "Bearer " + userTok, want: 403},
		"query token on stream": {path: "/stream?token=" + userTok, want: 200},
		"query token elsewhere": {path: "/user?token=" + userTok, want: 401},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			engine.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Errorf("status = %d, want %d (%s)", w.Code, tc.want, w.Body.String())
			}
			if w.Code >= 400 {
				var e struct{ Error, Code string }
				if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" || e.Code == "" {
					t.Errorf("error body = %s, want {error, code}", w.Body.String())
				}
			}
		})
	}

	dev := gin.New()
	dev.GET("/user", NewAuthenticator(nil, true, nil).Require(), who)
	w := httptest.NewRecorder()
	dev.ServeHTTP(w, httptest.NewRequest("GET", "/user", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"user":"dev"`) {
		t.Errorf("dev mode: %d %s", w.Code, w.Body.String())
	}
}

func BenchmarkVerify(b *testing.B) {
	key := newKey(b, "k1")
	jwks := newJWKSServer(b, key)
	v := NewVerifier(NewJWKS(jwks.URL, JWKSOptions{}), VerifierOptions{Issuer: testIssuer, Audience: testAudience})
	tok := sign(b, key, validClaims(time.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
