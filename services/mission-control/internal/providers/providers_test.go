package providers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/mission-control/internal/providers/oauthtest"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a Store (or several, as replicas) over one Redis and a
// stand-in OAuth server per OAuth provider.
type fixture struct {
	rs     *redistest.Server
	oauth  map[string]*oauthtest.Server
	opts   Options
	clock  *clock
	stores []*Store
}

func newFixture(t *testing.T, key []byte) *fixture {
	f := &fixture{rs: redistest.Start(t), clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		oauth: map[string]*oauthtest.Server{
			"anthropic": oauthtest.Start(t, "claude-client", "sk-ant-oat01-", 3600),
			"openai":    oauthtest.Start(t, "codex-client", "", 3600),
		}}
	clients := map[string]OAuthClient{}
	for id, srv := range f.oauth {
		cl := DefaultOAuthClients()[id]
		cl.AuthorizeURL, cl.TokenURL, cl.ClientID = srv.URL+"/authorize", srv.URL+"/token", srv.ClientID
		clients[id] = cl
	}
	f.opts = Options{Configured: map[string]string{"AMP_API_KEY": "amp-configured"}, Key: key, OAuth: clients,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.now}
	return f
}

// store returns a new replica's store.
func (f *fixture) store(t *testing.T) *Store {
	s, err := NewStore(f.rs.Client, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.stores = append(f.stores, s)
	return s
}

// dump returns every key, field and value in Redis, as text.
func dump(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		b.WriteString(k + "\n")
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			b.WriteString(rdb.Get(ctx, k).Val() + "\n")
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				b.WriteString(f + "=" + v + "\n")
			}
		default:
			t.Fatalf("unexpected %s key %s", typ, k)
		}
	}
	return b.String()
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"hex", strings.Repeat("ab", 32), true},
		{"hex with newline", strings.Repeat("0f", 32) + "\n", true},
		{"base64", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", true},
		{"raw base64url", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", true},
		{"short hex", strings.Repeat("ab", 16), false},
		{"passphrase", "correct horse battery staple", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.in)
			if (err == nil) != tc.ok || (tc.ok && len(k) != KeySize) {
				t.Errorf("ParseKey(%q) = %d bytes, %v", tc.in, len(k), err)
			}
		})
	}
}

// TestOAuthSignIn signs in to both providers (JSON and form token
// requests) with each way of sending the code back, and checks the
// authorize URL, the stored ciphertext and the injected secret.
func TestOAuthSignIn(t *testing.T) {
	tests := []struct {
		provider, wantType string
		send               func(u *url.URL) (code, state string)
	}{
		{"openai", "application/x-www-form-urlencoded", func(u *url.URL) (string, string) {
			return u.Query().Get("code"), u.Query().Get("state")
		}},
		{"openai", "application/x-www-form-urlencoded", func(u *url.URL) (string, string) { return u.String(), "" }},
		{"anthropic", "application/json", func(u *url.URL) (string, string) {
			return u.Query().Get("code") + "#" + u.Query().Get("state"), ""
		}},
	}
	for _, tc := range tests {
		t.Run(tc.provider, func(t *testing.T) {
			f := newFixture(t, testKey)
			s := f.store(t)
			ctx := context.Background()
			start, err := s.StartOAuth(ctx, "alice", UserScope("alice"), tc.provider)
			if err != nil {
				t.Fatal(err)
			}
			au, _ := url.Parse(start.URL)
			q := au.Query()
			cl := f.opts.OAuth[tc.provider]
			for k, want := range map[string]string{"response_type": "code", "client_id": cl.ClientID, "redirect_uri": cl.RedirectURI,
				"scope": cl.Scopes, "code_challenge_method": "S256", "state": start.State} {
				if q.Get(k) != want {
					t.Errorf("authorize URL %s = %q, want %q", k, q.Get(k), want)
				}
			}
			if len(q.Get("code_challenge")) != 43 || strings.Contains(start.URL, "verifier") {
				t.Errorf("code_challenge %q", q.Get("code_challenge"))
			}
			code, state := tc.send(oauthtest.SignIn(t, start.URL))
			exp, err := s.FinishOAuth(ctx, "alice", UserScope("alice"), tc.provider, code, state)
			if err != nil {
				t.Fatal(err)
			}
			if exp == nil || !exp.Equal(f.clock.now().Add(time.Hour)) {
				t.Errorf("expires at %v", exp)
			}
			if got := f.oauth[tc.provider].ContentTypes(); len(got) != 1 || got[0] != tc.wantType {
				t.Errorf("token requests %v, want one %s", got, tc.wantType)
			}
			token := s.Credential(ctx, "alice", tc.provider)
			if !strings.HasPrefix(token, f.oauth[tc.provider].TokenPrefix+"at-") {
				t.Fatalf("secret of %s = %q", tc.provider, token)
			}
			if got := s.Credential(ctx, "bob", tc.provider); got != "" {
				t.Errorf("bob's run gets alice's token %q", got)
			}
			if d := dump(t, f.rs.Client); strings.Contains(d, token) || strings.Contains(d, "rt-") || !strings.Contains(d, "v1:") {
				t.Errorf("plaintext token in Redis:\n%s", d)
			}
			list, _ := s.List(ctx, "alice", false)
			if p := byID(list, tc.provider); p == nil || p.Source != "api" || p.Scope != "user" || p.AuthType != "oauth" || p.ExpiresAt == nil ||
				p.Own == nil || p.Own.AuthType != "oauth" || p.Shared != nil {
				t.Errorf("listed %+v", p)
			}
			list, _ = s.List(ctx, "bob", false)
			if p := byID(list, tc.provider); p != nil {
				t.Errorf("bob sees alice's credential: %+v", p)
			}
			if _, err := s.FinishOAuth(ctx, "alice", UserScope("alice"), tc.provider, code, state); !errors.Is(err, ErrBadState) {
				t.Errorf("second use of the state: %v", err)
			}
		})
	}
}

func byID(list []Provider, id string) *Provider {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// signIn runs a whole sign-in of user into scope sc.
func signIn(t *testing.T, s *Store, user string, sc Scope, provider string) {
	t.Helper()
	ctx := context.Background()
	start, err := s.StartOAuth(ctx, user, sc, provider)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishOAuth(ctx, user, sc, provider, oauthtest.SignIn(t, start.URL).String(), ""); err != nil {
		t.Fatal(err)
	}
}

// TestRefreshBeforeRunWhenExpired: an expired token is refreshed (once,
// however many replicas ask at once), the rotated refresh token is kept,
// and a fresh token is not refreshed.
func TestRefreshBeforeRunWhenExpired(t *testing.T) {
	f := newFixture(t, testKey)
	a, b := f.store(t), f.store(t)
	ctx := context.Background()
	signIn(t, a, "alice", UserScope("alice"), "anthropic")
	first := a.Credential(ctx, "alice", "anthropic")
	srv := f.oauth["anthropic"]
	if srv.Refreshes() != 0 {
		t.Fatalf("refreshed a fresh token")
	}
	for round := 1; round <= 2; round++ {
		f.clock.add(2 * time.Hour)
		var wg sync.WaitGroup
		got := make([]string, 6)
		for i := range got {
			s := []*Store{a, b}[i%2]
			wg.Go(func() { got[i] = s.Credential(ctx, "alice", "anthropic") })
		}
		wg.Wait()
		if srv.Refreshes() != round {
			t.Fatalf("round %d: %d refreshes", round, srv.Refreshes())
		}
		for _, g := range got {
			if g == first || g != got[0] || !strings.HasPrefix(g, "sk-ant-oat01-") {
				t.Fatalf("round %d: secrets %v (first %s)", round, got, first)
			}
		}
		first = got[0]
	}
	if d := dump(t, f.rs.Client); strings.Contains(d, first) {
		t.Errorf("plaintext token in Redis")
	}
	// A refused refresh leaves the credential out (a configured one would
	// apply) instead of passing a dead token.
	srv.Revoke()
	f.clock.add(2 * time.Hour)
	if got := a.Credential(ctx, "alice", "anthropic"); got != "" {
		t.Errorf("revoked refresh token: secret %q passed", got)
	}
	// A token that expires within the skew is refreshed at once.
	o := f.oauth["openai"]
	o.SetExpiresIn(30)
	signIn(t, a, "admin", SharedScope(), "openai")
	if got := a.Credential(ctx, "carol", "openai"); got == "" || o.Refreshes() != 1 {
		t.Errorf("short-lived token: %d refreshes", o.Refreshes())
	}
}

func TestBadOAuthInput(t *testing.T) {
	f := newFixture(t, testKey)
	s := f.store(t)
	noKey := func() *Store {
		o := f.opts
		o.Key = nil
		st, err := NewStore(f.rs.Client, o)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}()
	ctx := context.Background()
	alice := UserScope("alice")
	startOpenAI, _ := s.StartOAuth(ctx, "alice", alice, "openai")
	startAnthropic, _ := s.StartOAuth(ctx, "alice", alice, "anthropic")
	startBob, _ := s.StartOAuth(ctx, "bob", UserScope("bob"), "openai")
	startShared, _ := s.StartOAuth(ctx, "alice", SharedScope(), "openai")
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"unknown provider", func() error { _, err := s.StartOAuth(ctx, "alice", alice, "nope"); return err }, ErrUnknown},
		{"oauth on amp", func() error { _, err := s.StartOAuth(ctx, "alice", alice, "amp"); return err }, ErrNoOAuth},
		{"unknown state", func() error { _, err := s.FinishOAuth(ctx, "alice", alice, "openai", "code-1", "forged"); return err }, ErrBadState},
		{"no state", func() error { _, err := s.FinishOAuth(ctx, "alice", alice, "openai", "code-1", ""); return err }, ErrBadState},
		{"state of another provider", func() error {
			_, err := s.FinishOAuth(ctx, "alice", alice, "openai", "code-1", startAnthropic.State)
			return err
		}, ErrBadState},
		{"state of another user", func() error {
			_, err := s.FinishOAuth(ctx, "alice", alice, "openai", "code-1", startBob.State)
			return err
		}, ErrBadState},
		{"state of another user, into their scope", func() error {
			_, err := s.FinishOAuth(ctx, "alice", UserScope("bob"), "openai", "code-1", startBob.State)
			return err
		}, ErrBadState},
		{"state of the shared scope", func() error {
			_, err := s.FinishOAuth(ctx, "alice", alice, "openai", "code-1", startShared.State)
			return err
		}, ErrBadState},
		{"no user", func() error { return s.SetKey(ctx, UserScope(""), "openai", "sk") }, ErrNoScope},
		{"no user: start", func() error { _, err := s.StartOAuth(ctx, "", SharedScope(), "openai"); return err }, ErrNoScope},
		{"no user: delete", func() error { return s.DeleteKey(ctx, Scope{}, "openai") }, ErrNoScope},
		{"no key: api key", func() error { return noKey.SetKey(ctx, alice, "openai", "sk") }, ErrNoKey},
		{"no key: oauth", func() error { _, err := noKey.StartOAuth(ctx, "alice", alice, "openai"); return err }, ErrNoKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("wrong code", func(t *testing.T) {
		_, err := s.FinishOAuth(ctx, "alice", alice, "openai", "not-a-code", startOpenAI.State)
		var oe *OAuthError
		if !errors.As(err, &oe) || oe.Code != "invalid_grant" {
			t.Errorf("got %v, want invalid_grant", err)
		}
	})
	t.Run("token endpoint down", func(t *testing.T) {
		st, _ := s.StartOAuth(ctx, "alice", alice, "openai")
		o := f.opts
		cl := o.OAuth["openai"]
		cl.TokenURL = "http://127.0.0.1:1/token"
		o.OAuth = map[string]OAuthClient{"openai": cl}
		down, _ := NewStore(f.rs.Client, o)
		if _, err := down.FinishOAuth(ctx, "alice", alice, "openai", "code", st.State); !errors.Is(err, ErrTokenEndpoint) {
			t.Errorf("got %v", err)
		}
	})
}

// TestKeysAtRest: an API key is stored encrypted; a store with another
// key cannot read it, says so, and falls back to the configured key; a
// plain-text key of an earlier version is migrated.
func TestKeysAtRest(t *testing.T) {
	f := newFixture(t, testKey)
	s := f.store(t)
	ctx := context.Background()
	if err := s.SetKey(ctx, SharedScope(), "amp", "amp-stored-secret"); err != nil {
		t.Fatal(err)
	}
	if got := s.Credential(ctx, "alice", "amp"); got != "amp-stored-secret" {
		t.Errorf("secret %q", got)
	}
	if d := dump(t, f.rs.Client); strings.Contains(d, "amp-stored-secret") {
		t.Errorf("plaintext key in Redis:\n%s", d)
	}
	// A ciphertext moved to another provider does not decrypt.
	v := f.rs.Client.HGet(ctx, credsKey, "amp").Val()
	f.rs.Client.HSet(ctx, credsKey, "openai", v)
	if got := s.Credential(ctx, "alice", "openai"); got != "" {
		t.Errorf("swapped ciphertext decrypted: %q", got)
	}
	f.rs.Client.HDel(ctx, credsKey, "openai")

	o := f.opts
	o.Key = []byte("another key, also 32 bytes long!")
	other, err := NewStore(f.rs.Client, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := other.Credential(ctx, "alice", "amp"); got != "amp-configured" {
		t.Errorf("with the wrong key: %q, want the configured key", got)
	}
	list, _ := other.List(ctx, "alice", false)
	if p := byID(list, "amp"); p == nil || p.Error == "" || !p.Configured || p.Source != "config" || p.Shared == nil || p.Shared.Error == "" {
		t.Errorf("listed %+v", p)
	}

	f.rs.Client.HSet(ctx, legacyKeysHash, "openai", "sk-legacy-plain")
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Credential(ctx, "default", "openai"); got != "sk-legacy-plain" {
		t.Errorf("migrated key %q", got)
	}
	if d := dump(t, f.rs.Client); strings.Contains(d, "sk-legacy-plain") {
		t.Errorf("plaintext key left in Redis:\n%s", d)
	}
}

// TestCredentialsPerUser: a run uses the owner's own credential, else the
// shared one, else the configured one; a user's sealed credential moved
// into another user's hash (or the shared one) does not decrypt; and a
// credential an earlier version stored (shared, sealed without a user)
// keeps working for every user, the single user of an upgraded install too.
func TestCredentialsPerUser(t *testing.T) {
	f := newFixture(t, testKey)
	s := f.store(t)
	ctx := context.Background()
	if err := s.SetKey(ctx, SharedScope(), "amp", "amp-shared-secret"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKey(ctx, UserScope("alice"), "amp", "amp-alice-secret"); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]string{"alice": "amp-alice-secret", "bob": "amp-shared-secret", "": ""} {
		if got := s.Credential(ctx, user, "amp"); got != want {
			t.Errorf("run of %q gets %q, want %q", user, got, want)
		}
	}
	if d := dump(t, f.rs.Client); strings.Contains(d, "amp-alice-secret") || strings.Contains(d, "amp-shared-secret") {
		t.Errorf("plaintext key in Redis:\n%s", d)
	}
	list, _ := s.List(ctx, "alice", false)
	if p := byID(list, "amp"); p == nil || p.Scope != "user" || p.Own == nil || p.Shared == nil || p.Own.AuthType != "api_key" || p.Own.UpdatedAt == nil {
		t.Errorf("alice's list: %+v", p)
	}
	list, _ = s.List(ctx, "bob", false)
	if p := byID(list, "amp"); p == nil || p.Scope != "shared" || p.Own != nil || p.Shared == nil {
		t.Errorf("bob's list: %+v", p)
	}

	// alice's ciphertext copied into bob's hash or the shared one.
	v := f.rs.Client.HGet(ctx, userCredsKey("alice"), "amp").Val()
	f.rs.Client.HSet(ctx, userCredsKey("bob"), "amp", v)
	if got := s.Credential(ctx, "bob", "amp"); got != "amp-shared-secret" {
		t.Errorf("alice's ciphertext in bob's hash: bob's run gets %q", got)
	}
	list, _ = s.List(ctx, "bob", false)
	if p := byID(list, "amp"); p == nil || p.Own == nil || p.Own.Error == "" || p.Scope != "shared" {
		t.Errorf("bob's list with a foreign ciphertext: %+v", p)
	}
	f.rs.Client.HSet(ctx, credsKey, "amp", v)
	if got := s.Credential(ctx, "bob", "amp"); got != "amp-configured" {
		t.Errorf("alice's ciphertext as the shared one: bob's run gets %q", got)
	}

	// Deleting one scope's credential leaves the other.
	f.rs.Client.HDel(ctx, userCredsKey("bob"), "amp")
	if err := s.SetKey(ctx, SharedScope(), "amp", "amp-shared-secret"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, UserScope("alice"), "amp"); err != nil {
		t.Fatal(err)
	}
	if got := s.Credential(ctx, "alice", "amp"); got != "amp-shared-secret" {
		t.Errorf("after deleting her own: %q", got)
	}
	if err := s.DeleteKey(ctx, SharedScope(), "amp"); err != nil {
		t.Fatal(err)
	}
	if got := s.Credential(ctx, "alice", "amp"); got != "amp-configured" {
		t.Errorf("after deleting the shared one: %q", got)
	}

	// An earlier version's stored credential: the shared hash, sealed
	// bound to the provider only.
	old, err := s.sealer.seal([]byte(`{"type":"api_key","api_key":"sk-before-tenancy"}`), "sortie/mission-control/provider/openai")
	if err != nil {
		t.Fatal(err)
	}
	f.rs.Client.HSet(ctx, "mc:providers:creds", "openai", old)
	for _, user := range []string{"default", "alice"} {
		if got := s.Credential(ctx, user, "openai"); got != "sk-before-tenancy" {
			t.Errorf("earlier version's key for %s: %q", user, got)
		}
	}
}
