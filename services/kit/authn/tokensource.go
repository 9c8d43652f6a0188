package authn

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ServiceTokenSource obtains short-lived service tokens from the auth
// service with client credentials and reuses each until most of its life
// has passed. TokenFor obtains tokens on a user's behalf (delegated tokens:
// the user's sub and role, with act naming this client), for clients that
// auth lets delegate.
type ServiceTokenSource struct {
	url, clientID, secret string
	client                *http.Client
	now                   func() time.Time

	mu    sync.Mutex
	own   cachedToken            // the client's own token
	users map[string]cachedToken // delegated tokens by user id
}

type cachedToken struct {
	token   string
	renewAt time.Time
}

// maxUserTokens bounds the delegated tokens kept: past it, expired ones are
// dropped first, then all (they are re-fetched on use).
const maxUserTokens = 4096

// NewServiceTokenSource returns a source for the token endpoint at url
// (…/api/auth/token).
func NewServiceTokenSource(url, clientID, secret string, client *http.Client) *ServiceTokenSource {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &ServiceTokenSource{url: url, clientID: clientID, secret: secret, client: client, now: time.Now,
		users: map[string]cachedToken{}}
}

// TokenResponse is the body of POST /api/auth/token.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	ExpiresAt   string `json:"expires_at"`
	Exp         int64  `json:"exp"`
}

// Token returns a valid service token, fetching a new one when needed.
func (s *ServiceTokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own.token != "" && s.now().Before(s.own.renewAt) {
		return s.own.token, nil
	}
	t, err := s.fetch(ctx, "")
	if err != nil {
		return "", err
	}
	s.own = t
	return t.token, nil
}

// TokenFor returns a valid token for acting on behalf of the user userID:
// its holder is treated as that user (with the user's current role) by
// every service, and auth refuses it for a user who no longer exists.
func (s *ServiceTokenSource) TokenFor(ctx context.Context, userID string) (string, error) {
	if userID == "" {
		return "", fmt.Errorf("a delegated token needs a user id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.users[userID]; ok && s.now().Before(t.renewAt) {
		return t.token, nil
	}
	t, err := s.fetch(ctx, userID)
	if err != nil {
		return "", err
	}
	if len(s.users) >= maxUserTokens {
		for u, old := range s.users {
			if !s.now().Before(old.renewAt) {
				delete(s.users, u)
			}
		}
		if len(s.users) >= maxUserTokens {
			clear(s.users)
		}
	}
	s.users[userID] = t
	return t.token, nil
}

// Forget drops the cached delegated token of userID, so the next TokenFor
// asks auth again. A callee that refuses a delegated token (401) may have
// seen the user's role change since it was issued: the new token carries
// the current role.
func (s *ServiceTokenSource) Forget(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, userID)
}

// fetch asks auth for a token: the client's own, or (subject set) one on
// behalf of that user. The caller holds s.mu.
func (s *ServiceTokenSource) fetch(ctx context.Context, subject string) (cachedToken, error) {
	what := "service token"
	req := map[string]string{"grant_type": "client_credentials", "client_id": s.clientID, "client_secret": s.secret}
	if subject != "" {
		what = "token for user " + subject
		req["subject"] = subject
	}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return cachedToken{}, fmt.Errorf("%s request: %w", what, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(hreq)
	if err != nil {
		return cachedToken{}, fmt.Errorf("get %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return cachedToken{}, &TokenError{Status: resp.StatusCode, Message: fmt.Sprintf("get %s: auth answered %s: %s", what, resp.Status, bytes.TrimSpace(msg))}
	}
	var tr TokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tr); err != nil {
		return cachedToken{}, fmt.Errorf("decode %s: %w", what, err)
	}
	if tr.AccessToken == "" || tr.ExpiresIn <= 0 {
		return cachedToken{}, fmt.Errorf("auth returned an empty %s", what)
	}
	// Renew at 80% of the lifetime so a token never expires in flight.
	return cachedToken{token: tr.AccessToken, renewAt: s.now().Add(time.Duration(tr.ExpiresIn) * time.Second * 8 / 10)}, nil
}

// TokenError is auth refusing a token request; Status tells a refused
// user (4xx: no such user, delegation not allowed) from an outage.
type TokenError struct {
	Status  int
	Message string
}

func (e *TokenError) Error() string { return e.Message }
