// Package providers knows the AI providers the agent CLIs use and where
// their credentials come from: a user's own credential stored through the
// API, a shared (organisation) one an administrator stored, or the
// service's configuration. A stored credential is an API key or OAuth 2
// tokens obtained with the authorization code flow and PKCE.
//
// Stored credentials are encrypted with AES-256-GCM before they reach
// Redis, bound to their provider and owner; OAuth access tokens are
// refreshed before a run when they expire.
package providers

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Provider is one entry of GET /api/providers, as the caller sees it.
type Provider struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Billing     string   `json:"billing"`
	Description string   `json:"description"`
	EnvVar      string   `json:"env_var"`
	Backends    []string `json:"backends"`
	// Configured is true when the caller's runs have a credential for it.
	Configured bool `json:"configured"`
	// Source is where that credential comes from: api (stored through the
	// API; Scope says whose), config, or none.
	Source string `json:"source"`
	// Scope is, for source api, whose stored credential applies: user (the
	// caller's own) or shared (the organisation's, set by an admin).
	Scope  string  `json:"scope,omitempty"`
	Models []Model `json:"models"`
	// AuthMethods are the ways to set a credential: api_key, oauth.
	AuthMethods []string `json:"auth_methods"`
	// AuthType is the kind of the stored credential that applies (api_key,
	// oauth).
	AuthType string `json:"auth_type,omitempty"`
	// ExpiresAt is when that stored OAuth access token expires; it is
	// refreshed before a run after that.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Error says why a stored credential (the caller's own, else the
	// shared one) cannot be used.
	Error string `json:"error,omitempty"`
	// Own and Shared describe the caller's own stored credential and the
	// shared one, when there is one; never a secret.
	Own    *Stored `json:"own,omitempty"`
	Shared *Stored `json:"shared,omitempty"`
}

// Stored describes a stored credential without its secret.
type Stored struct {
	AuthType  string     `json:"auth_type,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// Model is a model a provider offers.
type Model struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type known struct {
	id, name, env string
	backends      []string
	models        []Model
}

var catalogue = []known{
	{"anthropic", "Anthropic", "ANTHROPIC_API_KEY", []string{"claudecode", "opencode"},
		[]Model{{"claude-sonnet-4-5", "Claude Sonnet 4.5"}, {"claude-opus-4-1", "Claude Opus 4.1"}}},
	{"openai", "OpenAI", "OPENAI_API_KEY", []string{"codex", "opencode"},
		[]Model{{"gpt-5-codex", "GPT-5 Codex"}, {"gpt-5", "GPT-5"}}},
	{"amp", "Amp", "AMP_API_KEY", []string{"amp"}, []Model{}},
}

// Errors of the API operations; the HTTP layer maps them to statuses.
var (
	// ErrUnknown is returned for a provider id that is not in the catalogue.
	ErrUnknown = errors.New("unknown provider")
	// ErrNoKey is returned when a credential would have to be stored but
	// no credentials key is configured.
	ErrNoKey = errors.New("no credentials key is configured (SORTIE_MC_CREDENTIALS_KEY_FILE), so credentials cannot be stored")
	// ErrNoOAuth is returned for OAuth on a provider that has no OAuth
	// client configured.
	ErrNoOAuth = errors.New("this provider takes an API key only")
	// ErrBadState is returned for an OAuth state that is unknown, expired,
	// used, or belongs to another provider, user or scope.
	ErrBadState = errors.New("unknown or expired OAuth state: start the sign-in again")
	// ErrTokenEndpoint wraps a token endpoint that cannot be reached.
	ErrTokenEndpoint = errTokenEndpoint
)

// Redis keys. The shared credentials keep the keys of the versions that
// had only those, so an install's stored credentials keep working.
const (
	credsKey       = "mc:providers:creds" // shared: provider → sealed
	pendingPrefix  = "mc:providers:oauth:"
	refreshPrefix  = "mc:providers:refresh:"
	legacyKeysHash = "mc:providers:keys"
)

// userCredsKey is a user's own credentials: provider → sealed.
func userCredsKey(user string) string { return "mc:u:{" + user + "}:providers" }

// Scope is whose credentials an operation acts on: one user's own, or the
// shared (organisation) ones. The zero Scope is no one's and refused, so a
// missing user id never falls through to the shared credentials.
type Scope struct {
	user   string
	shared bool
}

// UserScope is the own credentials of user.
func UserScope(user string) Scope { return Scope{user: user} }

// SharedScope is the shared credentials every user's runs fall back to.
func SharedScope() Scope { return Scope{shared: true} }

// ErrNoScope is an operation on the credentials of no one.
var ErrNoScope = errors.New("credential operation without a user")

func (sc Scope) check() error {
	if !sc.shared && sc.user == "" {
		return ErrNoScope
	}
	return nil
}

// Name is "shared" or "user".
func (sc Scope) Name() string {
	if sc.shared {
		return "shared"
	}
	return "user"
}

func (sc Scope) hash() string {
	if sc.shared {
		return credsKey
	}
	return userCredsKey(sc.user)
}

// aad binds a sealed credential to its provider and owner: a value copied
// to another provider's field, or into another user's hash, does not
// decrypt. Shared credentials keep the earlier versions' binding.
func (sc Scope) aad(id string) string {
	if sc.shared {
		return credAAD(id)
	}
	return credAAD(id) + "/user/" + sc.user
}

func (sc Scope) lockKey(id string) string {
	if sc.shared {
		return refreshPrefix + id
	}
	return "mc:u:{" + sc.user + "}:providers:refresh:" + id
}

// PendingTTL is how long a started OAuth sign-in waits for its code.
const PendingTTL = 10 * time.Minute

// refreshSkew refreshes a token that expires within it, so it does not
// expire during the CLI's start.
const refreshSkew = time.Minute

// Options configure a Store.
type Options struct {
	// Configured maps an environment variable (ANTHROPIC_API_KEY, ...) to
	// the credential from the service's configuration.
	Configured map[string]string
	// Key is the 32-byte credentials key. Without one, credentials cannot
	// be stored unless EphemeralKey is set.
	Key []byte
	// EphemeralKey makes a random key for this process when Key is empty
	// (development: stored credentials do not survive a restart).
	EphemeralKey bool
	// OAuth maps a provider id to its OAuth client; a provider without an
	// enabled client takes API keys only.
	OAuth map[string]OAuthClient
	// HTTPClient calls token endpoints (default: 15 s timeout).
	HTTPClient *http.Client
	Log        *slog.Logger
	Now        func() time.Time
}

// Store holds credentials set through the API over the configured ones.
type Store struct {
	rdb        *redis.Client
	configured map[string]string
	sealer     *sealer
	oauth      map[string]OAuthClient
	hc         *http.Client
	log        *slog.Logger
	now        func() time.Time
	// refreshing serializes this process's refreshes of one credential
	// (by lock key); a Redis lock serializes the replicas'.
	refreshing sync.Map
}

// NewStore returns a Store.
func NewStore(rdb *redis.Client, o Options) (*Store, error) {
	s := &Store{rdb: rdb, configured: o.Configured, oauth: o.OAuth, hc: o.HTTPClient, log: o.Log, now: o.Now}
	if s.configured == nil {
		s.configured = map[string]string{}
	}
	if s.hc == nil {
		s.hc = &http.Client{Timeout: 15 * time.Second}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	key := o.Key
	if len(key) == 0 && o.EphemeralKey {
		key = make([]byte, KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("credentials key: %w", err)
		}
		s.log.Warn("no SORTIE_MC_CREDENTIALS_KEY_FILE: provider credentials stored through the API are encrypted with a random key and are lost when this process stops (development mode)")
	}
	if len(key) > 0 {
		sl, err := newSealer(key)
		if err != nil {
			return nil, err
		}
		s.sealer = sl
	}
	return s, nil
}

// CanStore reports whether credentials can be stored (a key is set).
func (s *Store) CanStore() bool { return s.sealer != nil }

func find(id string) (known, bool) {
	for _, k := range catalogue {
		if k.id == id {
			return k, true
		}
	}
	return known{}, false
}

// credential is a stored credential, encrypted as a whole.
type credential struct {
	Type         string    `json:"type"` // api_key or oauth
	APIKey       string    `json:"api_key,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// secret is the value passed to the CLIs.
func (c *credential) secret() string {
	if c.Type == "oauth" {
		return c.AccessToken
	}
	return c.APIKey
}

func (c *credential) expired(now time.Time) bool {
	return c.Type == "oauth" && !c.ExpiresAt.IsZero() && !now.Add(refreshSkew).Before(c.ExpiresAt)
}

func credAAD(id string) string { return "sortie/mission-control/provider/" + id }

func (s *Store) put(ctx context.Context, sc Scope, id string, c *credential) error {
	if err := sc.check(); err != nil {
		return err
	}
	if s.sealer == nil {
		return ErrNoKey
	}
	c.UpdatedAt = s.now().UTC()
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("store credential: %w", err)
	}
	v, err := s.sealer.seal(b, sc.aad(id))
	if err != nil {
		return err
	}
	if err := s.rdb.HSet(ctx, sc.hash(), id, v).Err(); err != nil {
		return fmt.Errorf("store credential: %w", err)
	}
	return nil
}

// stored reads and decrypts every stored credential of a scope; a value
// that does not decrypt is reported in bad.
func (s *Store) stored(ctx context.Context, sc Scope) (good map[string]*credential, bad map[string]error, err error) {
	if err := sc.check(); err != nil {
		return nil, nil, err
	}
	raw, err := s.rdb.HGetAll(ctx, sc.hash()).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("read credentials: %w", err)
	}
	good, bad = map[string]*credential{}, map[string]error{}
	for id, v := range raw {
		c, err := s.decode(sc, id, v)
		if err != nil {
			bad[id] = err
			continue
		}
		good[id] = c
	}
	return good, bad, nil
}

func (s *Store) decode(sc Scope, id, v string) (*credential, error) {
	if s.sealer == nil {
		return nil, ErrNoKey
	}
	b, err := s.sealer.open(v, sc.aad(id))
	if err != nil {
		return nil, err
	}
	var c credential
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, errUnreadable
	}
	return &c, nil
}

// get reads one stored credential; nil when there is none.
func (s *Store) get(ctx context.Context, sc Scope, id string) (*credential, error) {
	if err := sc.check(); err != nil {
		return nil, err
	}
	v, err := s.rdb.HGet(ctx, sc.hash(), id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credential: %w", err)
	}
	return s.decode(sc, id, v)
}

// usable returns the secret of a scope's stored credential for provider
// id, refreshing an expired OAuth token first; "" when there is none or it
// cannot be used (undecryptable, refresh refused), which is logged.
func (s *Store) usable(ctx context.Context, sc Scope, id string) string {
	c, err := s.get(ctx, sc, id)
	if err != nil {
		s.log.Warn("ignoring a stored provider credential", "provider", id, "scope", sc.Name(), "error", err.Error())
		return ""
	}
	if c == nil {
		return ""
	}
	if c.expired(s.now()) {
		fresh, err := s.refresh(ctx, sc, id)
		if err != nil {
			s.log.Warn("cannot refresh the provider's OAuth token", "provider", id, "scope", sc.Name(), "error", err.Error())
			return ""
		}
		c = fresh
	}
	return c.secret()
}

// Credential returns the secret (API key or OAuth access token) a run of
// user uses for provider id: the user's own stored credential, else the
// shared one, else the configured one; "" when there is none. Expired
// OAuth tokens are refreshed first; a credential that cannot be used
// (refresh refused, undecryptable) is skipped, so the next one applies.
// It is called before every run, for the one provider the run needs.
func (s *Store) Credential(ctx context.Context, user, id string) string {
	k, ok := find(id)
	if !ok || user == "" {
		return ""
	}
	if v := s.usable(ctx, UserScope(user), id); v != "" {
		return v
	}
	if v := s.usable(ctx, SharedScope(), id); v != "" {
		return v
	}
	return s.configured[k.env]
}

func describe(c *credential, err error) *Stored {
	switch {
	case err != nil:
		return &Stored{Error: err.Error()}
	case c == nil:
		return nil
	}
	d := &Stored{AuthType: c.Type}
	if !c.UpdatedAt.IsZero() {
		t := c.UpdatedAt
		d.UpdatedAt = &t
	}
	if c.Type == "oauth" && !c.ExpiresAt.IsZero() {
		t := c.ExpiresAt
		d.ExpiresAt = &t
	}
	return d
}

// List returns the catalogue as user sees it: which credential their runs
// use, their own and the shared one; all includes the providers without
// any credential.
func (s *Store) List(ctx context.Context, user string, all bool) ([]Provider, error) {
	own, ownBad, err := s.stored(ctx, UserScope(user))
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	shared, sharedBad, err := s.stored(ctx, SharedScope())
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	out := []Provider{}
	for _, k := range catalogue {
		p := Provider{ID: k.id, Name: k.name, Billing: "pay-per-token", Description: "API key in " + k.env,
			EnvVar: k.env, Backends: k.backends, Source: "none", Models: k.models, AuthMethods: []string{"api_key"},
			Own: describe(own[k.id], ownBad[k.id]), Shared: describe(shared[k.id], sharedBad[k.id])}
		if s.oauth[k.id].Enabled() {
			p.AuthMethods = append(p.AuthMethods, "oauth")
			p.Description += ", or OAuth sign-in"
		}
		switch {
		case own[k.id] != nil:
			p.Configured, p.Source, p.Scope = true, "api", "user"
			p.applies(own[k.id])
		case shared[k.id] != nil:
			p.Configured, p.Source, p.Scope = true, "api", "shared"
			p.applies(shared[k.id])
		case s.configured[k.env] != "":
			p.Configured, p.Source = true, "config"
		}
		if e := cmp.Or(ownBad[k.id], sharedBad[k.id]); e != nil {
			p.Error = e.Error()
			if !p.Configured {
				p.Source = "api"
			}
		}
		if p.Configured || p.Error != "" || all {
			out = append(out, p)
		}
	}
	return out, nil
}

// applies records the stored credential c as the one that applies.
func (p *Provider) applies(c *credential) {
	p.AuthType = c.Type
	if c.Type == "oauth" {
		p.Billing = "subscription"
		if !c.ExpiresAt.IsZero() {
			t := c.ExpiresAt
			p.ExpiresAt = &t
		}
	}
}

// SetKey stores an API key for provider id in scope sc.
func (s *Store) SetKey(ctx context.Context, sc Scope, id, apiKey string) error {
	if _, ok := find(id); !ok {
		return ErrUnknown
	}
	return s.put(ctx, sc, id, &credential{Type: "api_key", APIKey: apiKey})
}

// DeleteKey removes a stored credential of scope sc; the other scope's and
// configured keys stay.
func (s *Store) DeleteKey(ctx context.Context, sc Scope, id string) error {
	if _, ok := find(id); !ok {
		return ErrUnknown
	}
	if err := sc.check(); err != nil {
		return err
	}
	if err := s.rdb.HDel(ctx, sc.hash(), id).Err(); err != nil {
		return fmt.Errorf("delete credential: %w", err)
	}
	return nil
}

// OAuthStart is a started sign-in.
type OAuthStart struct {
	URL       string
	State     string
	ExpiresIn time.Duration
}

// pending is a started sign-in waiting for its code, stored encrypted
// under its state for PendingTTL: only the user who started it can finish
// it, into the scope it was started for.
type pending struct {
	Provider string `json:"provider"`
	Verifier string `json:"verifier"`
	User     string `json:"user"`
	Shared   bool   `json:"shared,omitempty"`
}

func pendingAAD(state string) string { return "sortie/mission-control/oauth-pending/" + state }

// StartOAuth begins an authorization code sign-in with PKCE for provider
// id, started by user, whose tokens go into scope sc, and returns the URL
// the user opens.
func (s *Store) StartOAuth(ctx context.Context, user string, sc Scope, id string) (*OAuthStart, error) {
	cl, err := s.client(id)
	if err != nil {
		return nil, err
	}
	if err := sc.check(); err != nil {
		return nil, err
	}
	if user == "" {
		return nil, ErrNoScope
	}
	if s.sealer == nil {
		return nil, ErrNoKey
	}
	state, err := randomToken(32)
	if err != nil {
		return nil, err
	}
	verifier, err := randomToken(48) // 64 characters, RFC 7636 §4.1
	if err != nil {
		return nil, err
	}
	u, err := cl.authorizeURL(state, verifier)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(pending{Provider: id, Verifier: verifier, User: user, Shared: sc.shared})
	if err != nil {
		return nil, fmt.Errorf("start sign-in: %w", err)
	}
	v, err := s.sealer.seal(b, pendingAAD(state))
	if err != nil {
		return nil, err
	}
	if err := s.rdb.Set(ctx, pendingPrefix+state, v, PendingTTL).Err(); err != nil {
		return nil, fmt.Errorf("start sign-in: %w", err)
	}
	return &OAuthStart{URL: u, State: state, ExpiresIn: PendingTTL}, nil
}

func (s *Store) client(id string) (OAuthClient, error) {
	if _, ok := find(id); !ok {
		return OAuthClient{}, ErrUnknown
	}
	cl, ok := s.oauth[id]
	if !ok || !cl.Enabled() {
		return OAuthClient{}, ErrNoOAuth
	}
	return cl, nil
}

// FinishOAuth exchanges the code of a sign-in user started for scope sc
// for tokens and stores them there. input is the code, "code#state" or the
// redirect URL; state may be empty when input carries it. A state is used
// once, and is refused for another provider, user or scope.
func (s *Store) FinishOAuth(ctx context.Context, user string, sc Scope, id, input, state string) (*time.Time, error) {
	cl, err := s.client(id)
	if err != nil {
		return nil, err
	}
	if s.sealer == nil {
		return nil, ErrNoKey
	}
	code, embedded := splitCode(input)
	if state == "" {
		state = embedded
	}
	if code == "" || state == "" {
		return nil, ErrBadState
	}
	v, err := s.rdb.GetDel(ctx, pendingPrefix+state).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrBadState
	}
	if err != nil {
		return nil, fmt.Errorf("finish sign-in: %w", err)
	}
	b, err := s.sealer.open(v, pendingAAD(state))
	if err != nil {
		return nil, ErrBadState
	}
	var p pending
	if err := json.Unmarshal(b, &p); err != nil || p.Provider != id || p.User == "" || p.User != user || p.Shared != sc.shared {
		return nil, ErrBadState
	}
	tr, err := cl.exchange(ctx, s.hc, code, state, p.Verifier)
	if err != nil {
		return nil, err
	}
	c := &credential{Type: "oauth", AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, ExpiresAt: expiry(s.now(), tr.ExpiresIn)}
	if err := s.put(ctx, sc, id, c); err != nil {
		return nil, err
	}
	if c.ExpiresAt.IsZero() {
		return nil, nil
	}
	return &c.ExpiresAt, nil
}

// releaseScript deletes a lock only if it still holds the owner's token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// refresh renews the OAuth tokens of provider id in scope sc with its
// refresh token unless they are still fresh, and returns the credential.
// Replicas take a Redis lock first so a rotating refresh token is used once.
func (s *Store) refresh(ctx context.Context, sc Scope, id string) (*credential, error) {
	cl, err := s.client(id)
	if err != nil {
		return nil, err
	}
	lock := sc.lockKey(id)
	mu, _ := s.refreshing.LoadOrStore(lock, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	token, err := randomToken(16)
	if err != nil {
		return nil, err
	}
	deadline := s.now().Add(15 * time.Second)
	for {
		ok, err := s.rdb.SetNX(ctx, lock, token, 30*time.Second).Result()
		if err != nil {
			return nil, fmt.Errorf("refresh lock: %w", err)
		}
		if ok {
			break
		}
		if s.now().After(deadline) {
			return nil, errors.New("another replica holds the refresh lock")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer releaseScript.Run(context.WithoutCancel(ctx), s.rdb, []string{lock}, token)

	// Another replica may have refreshed while this one waited.
	c, err := s.get(ctx, sc, id)
	if err != nil {
		return nil, err
	}
	if c == nil || c.Type != "oauth" {
		return nil, fmt.Errorf("no OAuth credential is stored for %s", id)
	}
	if !c.expired(s.now()) {
		return c, nil
	}
	if c.RefreshToken == "" {
		return nil, errors.New("the access token expired and there is no refresh token: sign in again")
	}
	tr, err := cl.refresh(ctx, s.hc, c.RefreshToken)
	if err != nil {
		return nil, err
	}
	c.AccessToken, c.ExpiresAt = tr.AccessToken, expiry(s.now(), tr.ExpiresIn)
	if tr.RefreshToken != "" { // rotated
		c.RefreshToken = tr.RefreshToken
	}
	if err := s.put(ctx, sc, id, c); err != nil {
		return nil, err
	}
	s.log.Info("refreshed the provider's OAuth token", "provider", id, "scope", sc.Name(), "expires_at", c.ExpiresAt)
	return c, nil
}

// Migrate encrypts API keys an earlier version stored in plain text, as
// shared credentials (what every stored credential was then), and deletes
// the plain-text hash. Without a key it leaves them alone (and they are
// not used). Credentials the versions before per-user credentials sealed
// are the shared ones as they are: nothing to move.
func (s *Store) Migrate(ctx context.Context) error {
	old, err := s.rdb.HGetAll(ctx, legacyKeysHash).Result()
	if err != nil {
		return fmt.Errorf("migrate credentials: %w", err)
	}
	if len(old) == 0 || s.sealer == nil {
		return nil
	}
	for id, v := range old {
		if _, ok := find(id); !ok || v == "" {
			continue
		}
		if exists, err := s.rdb.HExists(ctx, credsKey, id).Result(); err != nil || exists {
			continue
		}
		if err := s.SetKey(ctx, SharedScope(), id, v); err != nil {
			return fmt.Errorf("migrate credentials: %w", err)
		}
	}
	if err := s.rdb.Del(ctx, legacyKeysHash).Err(); err != nil {
		return fmt.Errorf("migrate credentials: %w", err)
	}
	return nil
}
