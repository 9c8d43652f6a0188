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
// has passed.
type ServiceTokenSource struct {
	url, clientID, secret string
	client                *http.Client
	now                   func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// NewServiceTokenSource returns a source for the token endpoint at url
// (…/api/auth/token).
func NewServiceTokenSource(url, clientID, secret string, client *http.Client) *ServiceTokenSource {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &ServiceTokenSource{url: url, clientID: clientID, secret: secret, client: client, now: time.Now}
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
	if s.token != "" && s.now().Before(s.renewAt) {
		return s.token, nil
	}
	body, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": s.clientID, "client_secret": s.secret})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("service token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get service token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("get service token: auth answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var tr TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return "", fmt.Errorf("decode service token: %w", err)
	}
	if tr.AccessToken == "" || tr.ExpiresIn <= 0 {
		return "", fmt.Errorf("auth returned an empty service token")
	}
	s.token = tr.AccessToken
	// Renew at 80% of the lifetime so a token never expires in flight.
	s.renewAt = s.now().Add(time.Duration(tr.ExpiresIn) * time.Second * 8 / 10)
	return s.token, nil
}
