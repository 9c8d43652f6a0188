package providers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// OAuthClient is how mission-control signs in to a provider with OAuth 2
// (authorization code with PKCE, RFC 6749 and RFC 7636): a public client,
// no secret, the code copied back by the user from the redirect page.
type OAuthClient struct {
	AuthorizeURL string
	TokenURL     string
	ClientID     string
	RedirectURI  string
	// Scopes are space separated, as sent.
	Scopes string
	// JSONToken sends token requests as a JSON object (with the state)
	// instead of the standard form encoding: Anthropic's endpoint wants it.
	JSONToken bool
	// Extra are additional authorize URL parameters (Anthropic: code=true,
	// which makes its redirect page show the code to copy).
	Extra map[string]string
}

// Enabled reports whether the client is configured enough to be used.
func (c OAuthClient) Enabled() bool {
	return c.AuthorizeURL != "" && c.TokenURL != "" && c.ClientID != ""
}

// DefaultOAuthClients are the public clients of the providers' own CLIs,
// which the reference uses: Claude Code's (claude.ai, console.anthropic.com)
// and Codex's (auth.openai.com, redirect to localhost:1455). Amp takes
// only API keys.
func DefaultOAuthClients() map[string]OAuthClient {
	return map[string]OAuthClient{
		"anthropic": {
			AuthorizeURL: "https://claude.ai/oauth/authorize",
			TokenURL:     "https://console.anthropic.com/v1/oauth/token",
			ClientID:     "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
			RedirectURI:  "https://console.anthropic.com/oauth/code/callback",
			Scopes:       "org:create_api_key user:profile user:inference",
			JSONToken:    true,
			Extra:        map[string]string{"code": "true"},
		},
		"openai": {
			AuthorizeURL: "https://auth.openai.com/oauth/authorize",
			TokenURL:     "https://auth.openai.com/oauth/token",
			ClientID:     "app_EMoamEEZ73f0CkXaXp7hrann",
			RedirectURI:  "http://localhost:1455/auth/callback",
			Scopes:       "openid profile email offline_access",
		},
	}
}

// randomToken returns n random bytes in unpadded base64url.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// challengeS256 is the PKCE code challenge of a verifier.
func challengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL builds the URL the user opens to sign in.
func (c OAuthClient) authorizeURL(state, verifier string) (string, error) {
	u, err := url.Parse(c.AuthorizeURL)
	if err != nil {
		return "", fmt.Errorf("authorize URL: %w", err)
	}
	q := u.Query()
	for k, v := range c.Extra {
		q.Set(k, v)
	}
	q.Set("response_type", "code")
	q.Set("client_id", c.ClientID)
	if c.RedirectURI != "" {
		q.Set("redirect_uri", c.RedirectURI)
	}
	if c.Scopes != "" {
		q.Set("scope", c.Scopes)
	}
	q.Set("code_challenge", challengeS256(verifier))
	q.Set("code_challenge_method", "S256")
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// tokenResponse is RFC 6749 §5.1 (success) and §5.2 (error).
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	RefreshToken     string `json:"refresh_token"`
	ExpiresIn        int64  `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// OAuthError is an error answer of a token endpoint (RFC 6749 §5.2), such
// as invalid_grant for a wrong, used or expired code.
type OAuthError struct {
	Code        string
	Description string
	Status      int
}

func (e *OAuthError) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("the provider refused the token request: %s (%s)", e.Code, e.Description)
	}
	return "the provider refused the token request: " + e.Code
}

// errTokenEndpoint is a token endpoint that cannot be reached or answers
// something that is not OAuth.
var errTokenEndpoint = errors.New("the provider's token endpoint did not answer properly")

// token posts a token request and returns the tokens.
func (c OAuthClient) token(ctx context.Context, hc *http.Client, params map[string]string) (*tokenResponse, error) {
	params["client_id"] = c.ClientID
	var (
		body  io.Reader
		ctype string
	)
	if c.JSONToken {
		b, err := json.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("token request: %w", err)
		}
		body, ctype = strings.NewReader(string(b)), "application/json"
	} else {
		form := url.Values{}
		for k, v := range params {
			form.Set(k, v)
		}
		body, ctype = strings.NewReader(form.Encode()), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, body)
	if err != nil {
		return nil, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTokenEndpoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTokenEndpoint, err)
	}
	var tr tokenResponse
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if jerr := json.Unmarshal(raw, &tr); jerr != nil {
		return nil, fmt.Errorf("%w: status %d, %s body", errTokenEndpoint, resp.StatusCode, mt)
	}
	if tr.Error != "" {
		return nil, &OAuthError{Code: tr.Error, Description: tr.ErrorDescription, Status: resp.StatusCode}
	}
	if resp.StatusCode/100 != 2 || tr.AccessToken == "" {
		return nil, fmt.Errorf("%w: status %d without an access token", errTokenEndpoint, resp.StatusCode)
	}
	if tt := strings.ToLower(tr.TokenType); tt != "" && tt != "bearer" {
		return nil, fmt.Errorf("%w: token type %q is not bearer", errTokenEndpoint, tr.TokenType)
	}
	return &tr, nil
}

// exchange trades an authorization code for tokens.
func (c OAuthClient) exchange(ctx context.Context, hc *http.Client, code, state, verifier string) (*tokenResponse, error) {
	p := map[string]string{"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
	if c.RedirectURI != "" {
		p["redirect_uri"] = c.RedirectURI
	}
	if c.JSONToken {
		p["state"] = state
	}
	return c.token(ctx, hc, p)
}

// refresh uses a refresh token (RFC 6749 §6).
func (c OAuthClient) refresh(ctx context.Context, hc *http.Client, refreshToken string) (*tokenResponse, error) {
	return c.token(ctx, hc, map[string]string{"grant_type": "refresh_token", "refresh_token": refreshToken})
}

// expiry is when tokens that expire in n seconds expire (zero: unknown).
func expiry(now time.Time, n int64) time.Time {
	if n <= 0 {
		return time.Time{}
	}
	return now.Add(time.Duration(n) * time.Second).UTC()
}

// splitCode accepts what a user copies back from the redirect page: the
// code, "code#state" (Anthropic's page), or the whole redirect URL.
func splitCode(input string) (code, state string) {
	s := strings.TrimSpace(input)
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		q := u.Query()
		if q.Get("code") != "" {
			return q.Get("code"), q.Get("state")
		}
	}
	code, state, _ = strings.Cut(s, "#")
	return code, state
}
