// Package oauthtest is a scripted stand-in for a provider's OAuth 2
// server, speaking the real wire format: an authorization endpoint that
// checks the PKCE parameters and redirects with a code, and a token
// endpoint (form or JSON POST) for the authorization_code and
// refresh_token grants, rotating refresh tokens and answering RFC 6749
// errors.
package oauthtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// Server is a running stand-in.
type Server struct {
	URL      string
	ClientID string
	// TokenPrefix starts every access token (e.g. sk-ant-oat01-).
	TokenPrefix string

	mu        sync.Mutex
	expiresIn int64
	codes     map[string]grant
	refresh   map[string]bool
	issued    int
	refreshes int
	forms     []string
}

type grant struct{ challenge, redirect string }

// Start runs a stand-in for clientID; tokens expire in expiresIn seconds.
func Start(t testing.TB, clientID, tokenPrefix string, expiresIn int64) *Server {
	s := &Server{ClientID: clientID, TokenPrefix: tokenPrefix, expiresIn: expiresIn, codes: map[string]grant{}, refresh: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /token", s.token)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// SetExpiresIn changes the lifetime of the next tokens.
func (s *Server) SetExpiresIn(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiresIn = n
}

// Revoke invalidates every refresh token issued so far.
func (s *Server) Revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.refresh)
}

// Refreshes counts successful refresh_token grants.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// ContentTypes lists the media types of the token requests received.
func (s *Server) ContentTypes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.forms...)
}

// authorize plays the user signing in: it checks the request and
// redirects to redirect_uri with a code and the state.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("client_id") != s.ClientID:
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		http.Error(w, "PKCE S256 required", http.StatusBadRequest)
		return
	case q.Get("state") == "" || q.Get("redirect_uri") == "":
		http.Error(w, "state and redirect_uri required", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.issued++
	code := fmt.Sprintf("code-%d", s.issued)
	s.codes[code] = grant{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	s.mu.Unlock()
	u, _ := url.Parse(q.Get("redirect_uri"))
	rq := u.Query()
	rq.Set("code", code)
	rq.Set("state", q.Get("state"))
	u.RawQuery = rq.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	p := map[string]string{}
	switch mt {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			oauthError(w, 400, "invalid_request", "bad form")
			return
		}
		for k := range r.PostForm {
			p[k] = r.PostForm.Get(k)
		}
	case "application/json":
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			oauthError(w, 400, "invalid_request", "bad JSON")
			return
		}
	default:
		oauthError(w, 400, "invalid_request", "unsupported content type "+mt)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forms = append(s.forms, mt)
	if p["client_id"] != s.ClientID {
		oauthError(w, 401, "invalid_client", "unknown client")
		return
	}
	switch p["grant_type"] {
	case "authorization_code":
		g, ok := s.codes[p["code"]]
		delete(s.codes, p["code"]) // a code is used once
		sum := sha256.Sum256([]byte(p["code_verifier"]))
		switch {
		case !ok:
			oauthError(w, 400, "invalid_grant", "unknown or used code")
			return
		case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
			oauthError(w, 400, "invalid_grant", "code_verifier does not match the code_challenge")
			return
		case p["redirect_uri"] != g.redirect:
			oauthError(w, 400, "invalid_grant", "redirect_uri does not match")
			return
		}
	case "refresh_token":
		if !s.refresh[p["refresh_token"]] {
			oauthError(w, 400, "invalid_grant", "unknown or rotated refresh token")
			return
		}
		delete(s.refresh, p["refresh_token"])
		s.refreshes++
	default:
		oauthError(w, 400, "unsupported_grant_type", p["grant_type"])
		return
	}
	s.issued++
	rt := fmt.Sprintf("rt-%d", s.issued)
	s.refresh[rt] = true
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": fmt.Sprintf("%sat-%d", s.TokenPrefix, s.issued), "token_type": "Bearer",
		"expires_in": s.expiresIn, "refresh_token": rt, "scope": "user:inference",
	})
}

// SignIn follows authURL as a user would and returns the redirect URL
// carrying the code and the state.
func SignIn(t testing.TB, authURL string) *url.URL {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}
