// Package providers knows the AI providers the agent CLIs use and where
// their credentials come from: the service's configuration, or a
// credential an administrator stored through the API (an API key, or
// OAuth 2 tokens obtained with the authorization code flow and PKCE).
//
// Stored credentials are encrypted with AES-256-GCM before they reach
// Redis; OAuth access tokens are refreshed before a run when they expire.
package providers

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Provider is one entry of GET /api/providers.
type Provider struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Billing     string   `json:"billing"`
	Description string   `json:"description"`
	EnvVar      string   `json:"env_var"`
	Backends    []string `json:"backends"`
	Configured  bool     `json:"configured"`
	// Source is where the credential comes from: config, api, or none.
	Source string  `json:"source"`
	Models []Model `json:"models"`
	// AuthMethods are the ways to set a credential: api_key, oauth.
	AuthMethods []string `json:"auth_methods"`
	// AuthType is the kind of the stored credential (api_key, oauth).
	AuthType string `json:"auth_type,omitempty"`
	// ExpiresAt is when a stored OAuth access token expires; it is
	// refreshed before a run after that.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Error says why a stored credential cannot be used.
	Error string `json:"error,omitempty"`
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
	// used, or belongs to another provider.
	ErrBadState = errors.New("unknown or expired OAuth state: start the sign-in again")
	// ErrTokenEndpoint wraps a token endpoint that cannot be reached.
	ErrTokenEndpoint = errTokenEndpoint
)

// Redis keys.
const (
	credsKey       = "mc:providers:creds"
	pendingPrefix  = "mc:providers:oauth:"
	refreshPrefix  = "mc:providers:refresh:"
	legacyKeysHash = "mc:providers:keys"
)

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
	// refreshing serializes this process's refreshes; a Redis lock
	// serializes the replicas'.
	refreshing sync.Mutex
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

func (s *Store) put(ctx context.Context, id string, c *credential) error {
	if s.sealer == nil {
		return ErrNoKey
	}
	c.UpdatedAt = s.now().UTC()
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("store credential: %w", err)
	}
	v, err := s.sealer.seal(b, credAAD(id))
	if err != nil {
		return err
	}
	if err := s.rdb.HSet(ctx, credsKey, id, v).Err(); err != nil {
		return fmt.Errorf("store credential: %w", err)
	}
	return nil
}

// stored reads and decrypts every stored credential; a value that does
// not decrypt is reported in bad.
func (s *Store) stored(ctx context.Context) (good map[string]*credential, bad map[string]error, err error) {
	raw, err := s.rdb.HGetAll(ctx, credsKey).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("read credentials: %w", err)
	}
	good, bad = map[string]*credential{}, map[string]error{}
	for id, v := range raw {
		c, err := s.decode(id, v)
		if err != nil {
			bad[id] = err
			continue
		}
		good[id] = c
	}
	return good, bad, nil
}

func (s *Store) decode(id, v string) (*credential, error) {
	if s.sealer == nil {
		return nil, ErrNoKey
	}
	b, err := s.sealer.open(v, credAAD(id))
	if err != nil {
		return nil, err
	}
	var c credential
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, errUnreadable
	}
	return &c, nil
}

func (s *Store) get(ctx context.Context, id string) (*credential, error) {
	v, err := s.rdb.HGet(ctx, credsKey, id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credential: %w", err)
	}
	return s.decode(id, v)
}

// Secrets returns every credential by env var, stored ones winning over
// configured ones. Expired OAuth tokens are refreshed first; a credential
// that cannot be used (refresh refused, undecryptable) is left out, so a
// configured one applies. It is called before every run.
func (s *Store) Secrets(ctx context.Context) map[string]string {
	out := maps.Clone(s.configured)
	stored, bad, err := s.stored(ctx)
	if err != nil {
		s.log.Warn("cannot read stored provider credentials", "error", err.Error())
		return out
	}
	for id, err := range bad {
		s.log.Warn("ignoring a stored provider credential", "provider", id, "error", err.Error())
	}
	for id, c := range stored {
		k, ok := find(id)
		if !ok {
			continue
		}
		if c.expired(s.now()) {
			fresh, err := s.refresh(ctx, id)
			if err != nil {
				s.log.Warn("cannot refresh the provider's OAuth token", "provider", id, "error", err.Error())
				continue
			}
			c = fresh
		}
		if v := c.secret(); v != "" {
			out[k.env] = v
		}
	}
	return out
}

// List returns the catalogue with what is configured; all includes the
// providers without credentials.
func (s *Store) List(ctx context.Context, all bool) ([]Provider, error) {
	stored, bad, err := s.stored(ctx)
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	out := []Provider{}
	for _, k := range catalogue {
		p := Provider{ID: k.id, Name: k.name, Billing: "pay-per-token", Description: "API key in " + k.env,
			EnvVar: k.env, Backends: k.backends, Source: "none", Models: k.models, AuthMethods: []string{"api_key"}}
		if s.oauth[k.id].Enabled() {
			p.AuthMethods = append(p.AuthMethods, "oauth")
			p.Description += ", or OAuth sign-in"
		}
		switch c, e := stored[k.id], bad[k.id]; {
		case c != nil:
			p.Configured, p.Source, p.AuthType = true, "api", c.Type
			if c.Type == "oauth" {
				p.Billing = "subscription"
				if !c.ExpiresAt.IsZero() {
					t := c.ExpiresAt
					p.ExpiresAt = &t
				}
			}
		case e != nil:
			p.Source, p.Error = "api", e.Error()
			p.Configured = s.configured[k.env] != ""
		case s.configured[k.env] != "":
			p.Configured, p.Source = true, "config"
		}
		if p.Configured || p.Error != "" || all {
			out = append(out, p)
		}
	}
	return out, nil
}

// SetKey stores an API key for provider id.
func (s *Store) SetKey(ctx context.Context, id, apiKey string) error {
	if _, ok := find(id); !ok {
		return ErrUnknown
	}
	return s.put(ctx, id, &credential{Type: "api_key", APIKey: apiKey})
}

// DeleteKey removes a stored credential; configured keys stay.
func (s *Store) DeleteKey(ctx context.Context, id string) error {
	if _, ok := find(id); !ok {
		return ErrUnknown
	}
	if err := s.rdb.HDel(ctx, credsKey, id).Err(); err != nil {
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
// under its state for PendingTTL.
type pending struct {
	Provider string `json:"provider"`
	Verifier string `json:"verifier"`
}

func pendingAAD(state string) string { return "sortie/mission-control/oauth-pending/" + state }

// StartOAuth begins an authorization code sign-in with PKCE for provider
// id and returns the URL the user opens.
func (s *Store) StartOAuth(ctx context.Context, id string) (*OAuthStart, error) {
	cl, err := s.client(id)
	if err != nil {
		return nil, err
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
	b, err := json.Marshal(pending{Provider: id, Verifier: verifier})
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

// FinishOAuth exchanges the code of a started sign-in for tokens and
// stores them. input is the code, "code#state" or the redirect URL; state
// may be empty when input carries it. A state is used once.
func (s *Store) FinishOAuth(ctx context.Context, id, input, state string) (*time.Time, error) {
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
	if err := json.Unmarshal(b, &p); err != nil || p.Provider != id {
		return nil, ErrBadState
	}
	tr, err := cl.exchange(ctx, s.hc, code, state, p.Verifier)
	if err != nil {
		return nil, err
	}
	c := &credential{Type: "oauth", AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, ExpiresAt: expiry(s.now(), tr.ExpiresIn)}
	if err := s.put(ctx, id, c); err != nil {
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

// refresh renews provider id's OAuth tokens with its refresh token unless
// they are still fresh, and returns the credential. Replicas take a Redis
// lock first so a rotating refresh token is used once.
func (s *Store) refresh(ctx context.Context, id string) (*credential, error) {
	cl, err := s.client(id)
	if err != nil {
		return nil, err
	}
	s.refreshing.Lock()
	defer s.refreshing.Unlock()
	token, err := randomToken(16)
	if err != nil {
		return nil, err
	}
	lock := refreshPrefix + id
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
	c, err := s.get(ctx, id)
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
	if err := s.put(ctx, id, c); err != nil {
		return nil, err
	}
	s.log.Info("refreshed the provider's OAuth token", "provider", id, "expires_at", c.ExpiresAt)
	return c, nil
}

// Migrate encrypts API keys an earlier version stored in plain text and
// deletes the plain-text hash. Without a key it leaves them alone (and
// they are not used).
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
		if err := s.SetKey(ctx, id, v); err != nil {
			return fmt.Errorf("migrate credentials: %w", err)
		}
	}
	if err := s.rdb.Del(ctx, legacyKeysHash).Err(); err != nil {
		return fmt.Errorf("migrate credentials: %w", err)
	}
	return nil
}
