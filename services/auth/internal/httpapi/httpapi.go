// Package httpapi serves the auth service's routes under /api/auth.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"sortie.dev/services/auth/internal/clients"
	"sortie.dev/services/auth/internal/config"
	"sortie.dev/services/auth/internal/throttle"
	"sortie.dev/services/auth/internal/tokens"
	"sortie.dev/services/auth/internal/users"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redisconn"
)

// Error codes of this service, beside kit's.
const (
	CodeInvalidCredentials   = "invalid_credentials"
	CodeInvalidClient        = "invalid_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeDelegationNotAllowed = "delegation_not_allowed"
	CodeUnknownSubject       = "unknown_subject"
)

// Handler holds what the routes need. Users and Clients are functions
// because the files behind them are reloaded while the service runs.
type Handler struct {
	Mode    config.Mode
	Users   func() *users.Store
	Clients func() *clients.Store
	// DelegatingClients may ask for tokens on a user's behalf.
	DelegatingClients []string
	Throttle          *throttle.Throttle
	Redis             redis.UniversalClient
	Tokens            *tokens.Issuer
	Verifier          *authn.Verifier
	JWKS              func() authn.JWKSDocument
	TokenTTL          time.Duration
	ServiceTokenTTL   time.Duration
	Log               *slog.Logger

	logins          *prometheus.CounterVec
	serviceTokens   *prometheus.CounterVec
	delegatedTokens *prometheus.CounterVec
}

// Register adds the routes and the service's metrics.
func (h *Handler) Register(r gin.IRouter, reg prometheus.Registerer) {
	h.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sortie_auth_logins_total",
		Help: "Login attempts by result: success, failure, throttled, error.",
	}, []string{"result"})
	h.serviceTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sortie_auth_service_tokens_total",
		Help: "Service token requests by result: success, failure.",
	}, []string{"result"})
	h.delegatedTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sortie_auth_delegated_tokens_total",
		Help: "Requests for tokens on a user's behalf by authenticated clients, by result: success, not_allowed, unknown_subject.",
	}, []string{"result"})
	reg.MustRegister(h.logins, h.serviceTokens, h.delegatedTokens)

	g := r.Group("/api/auth")
	g.POST("/login", h.login)
	g.GET("/verify", h.verify)
	g.POST("/logout", h.logout)
	g.GET("/jwks", h.jwks)
	g.POST("/token", h.serviceToken)
	g.GET("/status", h.status)
}

// UserJSON is a user as the API shows it.
type UserJSON struct {
	ID       string     `json:"id"`
	Username string     `json:"username"`
	Role     authn.Role `json:"role"`
}

// LoginRequest is the body of POST /api/auth/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse carries the token with its expiry both as RFC 3339
// (expires_at, the spec) and unix seconds (exp, which the original
// server's web client reads).
type LoginResponse struct {
	Token     string   `json:"token"`
	ExpiresAt string   `json:"expires_at"`
	Exp       int64    `json:"exp"`
	User      UserJSON `json:"user"`
}

// decodeLogin reads a login body: JSON only.
func decodeLogin(r *http.Request) (LoginRequest, error) {
	var req LoginRequest
	err := apierror.DecodeJSON(r, &req)
	return req, err
}

func (h *Handler) login(c *gin.Context) {
	ctx := c.Request.Context()
	req, err := decodeLogin(c.Request)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	if h.Mode == config.ModeDisabled {
		h.issueLogin(c, &users.User{ID: authn.DevIdentity.UserID, Username: authn.DevIdentity.Username, Role: authn.DevIdentity.Role})
		return
	}
	store := h.Users()
	if req.Password == "" {
		apierror.Respond(c, apierror.BadRequest("password is required"))
		return
	}
	if !store.SingleTenant() && strings.TrimSpace(req.Username) == "" {
		apierror.Respond(c, apierror.BadRequest("username is required: this server has several users"))
		return
	}
	throttleName := req.Username
	if store.SingleTenant() {
		throttleName = users.SingleTenantUser
	}
	// The try is counted before the password is checked, so concurrent
	// tries cannot get more guesses than the limit (and bcrypt work with
	// them).
	ip := c.ClientIP()
	d, err := h.Throttle.Try(ctx, throttleName, ip)
	if err != nil {
		h.unavailable(c, "login", err)
		return
	}
	if !d.Allowed {
		h.logins.WithLabelValues("throttled").Inc()
		h.Log.InfoContext(ctx, "login throttled", "username", req.Username, "client_ip", ip, "limit", d.Limit)
		tooManyTries(c, d.Wait, "too many failed logins; try again in %d seconds")
		return
	}
	u, err := store.Authenticate(req.Username, req.Password)
	if err != nil {
		h.logins.WithLabelValues("failure").Inc()
		// The username is the caller's claim, not a secret; passwords are never logged.
		h.Log.InfoContext(ctx, "login failed", "username", req.Username, "client_ip", ip)
		msg := "invalid username or password"
		if store.SingleTenant() {
			msg = "invalid password"
		}
		apierror.Respond(c, apierror.New(http.StatusUnauthorized, CodeInvalidCredentials, msg))
		return
	}
	if err := h.Throttle.Succeed(ctx, throttleName, ip); err != nil {
		h.Log.ErrorContext(ctx, "could not reset the login throttle", "error", err.Error())
	}
	h.issueLogin(c, u)
}

// tooManyTries answers 429 with Retry-After in whole seconds (at least 1),
// rounded up so a client that waits that long is not refused again.
func tooManyTries(c *gin.Context, wait time.Duration, format string) {
	secs := max(1, int((wait+time.Second-1)/time.Second))
	apierror.Respond(c, apierror.Newf(http.StatusTooManyRequests, apierror.CodeRateLimited, format, secs).
		WithRetryAfter(time.Duration(secs)*time.Second))
}

func (h *Handler) issueLogin(c *gin.Context, u *users.User) {
	tok, err := h.Tokens.Issue(u.ID, u.Username, u.Role, nil, h.TokenTTL)
	if err != nil {
		h.logins.WithLabelValues("error").Inc()
		apierror.Respond(c, err)
		return
	}
	h.logins.WithLabelValues("success").Inc()
	h.Log.InfoContext(c.Request.Context(), "login", "user_id", u.ID, "username", u.Username, "token_id", tok.ID)
	c.JSON(http.StatusOK, LoginResponse{
		Token:     tok.Raw,
		ExpiresAt: tok.ExpiresAt.UTC().Format(time.RFC3339),
		Exp:       tok.ExpiresAt.Unix(),
		User:      UserJSON{ID: u.ID, Username: u.Username, Role: u.Role},
	})
}

// VerifyResponse describes a valid token's holder. The user's fields are
// given both flat and under "user", for clients of either habit. Actor is
// the service client of a delegated token.
type VerifyResponse struct {
	Valid     bool       `json:"valid"`
	ID        string     `json:"id"`
	Username  string     `json:"username"`
	Role      authn.Role `json:"role"`
	User      UserJSON   `json:"user"`
	Actor     string     `json:"actor,omitempty"`
	ExpiresAt string     `json:"expires_at,omitempty"`
	Exp       int64      `json:"exp,omitempty"`
}

func (h *Handler) verify(c *gin.Context) {
	if h.Mode == config.ModeDisabled {
		id := authn.DevIdentity
		u := UserJSON{ID: id.UserID, Username: id.Username, Role: id.Role}
		c.JSON(http.StatusOK, VerifyResponse{Valid: true, ID: u.ID, Username: u.Username, Role: u.Role, User: u})
		return
	}
	claims, ok := h.authenticate(c)
	if !ok {
		return
	}
	u := UserJSON{ID: claims.Subject, Username: claims.Username, Role: claims.Role}
	resp := VerifyResponse{
		Valid: true, ID: u.ID, Username: u.Username, Role: u.Role, User: u,
		ExpiresAt: claims.ExpiresAt.UTC().Format(time.RFC3339),
		Exp:       claims.ExpiresAt.Unix(),
	}
	if claims.Actor != nil {
		resp.Actor = claims.Actor.Subject
	}
	c.JSON(http.StatusOK, resp)
}

// authenticate verifies the request's own token, including (through the
// verifier's Principals, the hash this service publishes) that its user
// still exists with the token's role, or its service client does: removing,
// disabling or demoting one in its file ends its sessions.
func (h *Handler) authenticate(c *gin.Context) (*authn.Claims, bool) {
	raw, err := authn.Bearer(c.Request)
	if err != nil {
		unauthorized(c, err.Error())
		return nil, false
	}
	claims, err := h.Verifier.Verify(c.Request.Context(), raw)
	var invalid *authn.InvalidTokenError
	switch {
	case errors.As(err, &invalid):
		h.Log.DebugContext(c.Request.Context(), "token refused", "reason", invalid.Reason.Error())
		unauthorized(c, invalid.PublicMessage())
		return nil, false
	case err != nil:
		h.unavailable(c, "verify", err)
		return nil, false
	}
	return claims, true
}

func (h *Handler) logout(c *gin.Context) {
	if h.Mode == config.ModeDisabled {
		c.Status(http.StatusNoContent)
		return
	}
	claims, ok := h.authenticate(c)
	if !ok {
		return
	}
	ttl := time.Until(claims.ExpiresAt.Time) + time.Minute // outlive the verifiers' leeway
	if err := h.Redis.Set(c.Request.Context(), authn.RevokedKey(claims.ID), "1", ttl).Err(); err != nil {
		h.unavailable(c, "logout", err)
		return
	}
	h.Log.InfoContext(c.Request.Context(), "logout", "user_id", claims.Subject, "token_id", claims.ID)
	c.Status(http.StatusNoContent)
}

func (h *Handler) jwks(c *gin.Context) {
	// Short caching: a rotated key must reach verifiers well within a
	// token's life, and they refetch on unknown kids anyway.
	c.Header("Cache-Control", "public, max-age=60")
	c.JSON(http.StatusOK, h.JWKS())
}

// StatusResponse tells a client whether it must show a login, in the
// original server's terms.
type StatusResponse struct {
	AuthRequired bool        `json:"auth_required"`
	AuthMode     config.Mode `json:"auth_mode"`
}

func (h *Handler) status(c *gin.Context) {
	c.JSON(http.StatusOK, StatusResponse{AuthRequired: h.Mode != config.ModeDisabled, AuthMode: h.Mode})
}

// TokenRequest is the body of POST /api/auth/token (OAuth 2 client
// credentials, as JSON or a form; HTTP Basic works too). Subject, from a
// delegating client, asks for a token on that user's behalf.
type TokenRequest struct {
	GrantType    string `json:"grant_type" form:"grant_type"`
	ClientID     string `json:"client_id" form:"client_id"`
	ClientSecret string `json:"client_secret" form:"client_secret"`
	Subject      string `json:"subject" form:"subject"`
}

// decodeTokenRequest reads client credentials from a form or JSON body,
// or HTTP Basic when the body names no client.
func decodeTokenRequest(r *http.Request) (TokenRequest, error) {
	var req TokenRequest
	mt := r.Header.Get("Content-Type")
	if strings.HasPrefix(mt, "application/x-www-form-urlencoded") {
		if err := r.ParseForm(); err != nil {
			return req, apierror.BadRequest("form body could not be read")
		}
		f := r.PostForm
		req = TokenRequest{GrantType: f.Get("grant_type"), ClientID: f.Get("client_id"), ClientSecret: f.Get("client_secret"), Subject: f.Get("subject")}
	} else if err := apierror.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if id, secret, ok := r.BasicAuth(); ok && req.ClientID == "" {
		req.ClientID, req.ClientSecret = id, secret
	}
	if req.GrantType != "" && req.GrantType != "client_credentials" {
		return req, apierror.Newf(http.StatusBadRequest, CodeUnsupportedGrantType, "grant_type %q is not supported; use client_credentials", req.GrantType)
	}
	if req.ClientID == "" || req.ClientSecret == "" {
		return req, apierror.BadRequest("client_id and client_secret are required")
	}
	return req, nil
}

// serviceToken checks the secret first, always: a client's secret is long
// and random (clients.MinSecretLength, generated by the chart and make
// run), so guessing it online is hopeless with or without a throttle, and
// checking it is one SHA-256, not bcrypt. A right secret is therefore never
// refused, whatever the address has done: refusing it would let anyone who
// shares the service's address (a node, a NAT, the gateway) lock the
// service out. A wrong one counts against the caller's address only, never
// the client it names; past the address's limit it answers 429.
func (h *Handler) serviceToken(c *gin.Context) {
	req, err := decodeTokenRequest(c.Request)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	ctx := c.Request.Context()
	if err := h.Clients().Authenticate(req.ClientID, req.ClientSecret); err != nil {
		ip := c.ClientIP()
		d, err := h.Throttle.CountFailure(ctx, ip)
		if err != nil {
			h.unavailable(c, "token", err)
			return
		}
		h.serviceTokens.WithLabelValues("failure").Inc()
		h.Log.InfoContext(ctx, "service token refused", "client_id", req.ClientID, "client_ip", ip, "throttled", !d.Allowed)
		if !d.Allowed {
			tooManyTries(c, d.Wait, "too many failed attempts from this address; try again in %d seconds")
			return
		}
		c.Header("WWW-Authenticate", `Basic realm="sortie"`)
		apierror.Respond(c, apierror.New(http.StatusUnauthorized, CodeInvalidClient, "invalid client credentials"))
		return
	}
	if req.Subject != "" {
		h.delegatedToken(c, req.ClientID, req.Subject)
		return
	}
	tok, err := h.Tokens.Issue(authn.ServiceSubjectPrefix+req.ClientID, req.ClientID, authn.RoleService, nil, h.ServiceTokenTTL)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	h.serviceTokens.WithLabelValues("success").Inc()
	h.tokenResponse(c, tok)
}

// delegatedToken answers an authenticated client's request for a token on
// the user subject's behalf (docs/tenancy.md): only a delegating client
// may ask, only for a current user, and the token has that user's sub,
// usr and current role, act naming the client, and a service token's
// life. Every answer is in the audit log; the token never is.
func (h *Handler) delegatedToken(c *gin.Context, clientID, subject string) {
	ctx := c.Request.Context()
	if !slices.Contains(h.DelegatingClients, clientID) {
		h.delegatedTokens.WithLabelValues("not_allowed").Inc()
		h.Log.WarnContext(ctx, "audit: delegated token refused", "client_id", clientID, "subject", subject, "reason", CodeDelegationNotAllowed)
		apierror.Respond(c, apierror.Newf(http.StatusForbidden, CodeDelegationNotAllowed,
			"client %q may not ask for tokens on a user's behalf (SORTIE_AUTH_DELEGATING_CLIENTS)", clientID))
		return
	}
	u, ok := h.subject(subject)
	if !ok {
		h.delegatedTokens.WithLabelValues("unknown_subject").Inc()
		h.Log.WarnContext(ctx, "audit: delegated token refused", "client_id", clientID, "subject", subject, "reason", CodeUnknownSubject)
		apierror.Respond(c, apierror.New(http.StatusBadRequest, CodeUnknownSubject, "subject is not a current user"))
		return
	}
	tok, err := h.Tokens.Issue(u.ID, u.Username, u.Role, &authn.Actor{Subject: clientID}, h.ServiceTokenTTL)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	h.delegatedTokens.WithLabelValues("success").Inc()
	h.Log.InfoContext(ctx, "audit: delegated token issued", "client_id", clientID, "subject", u.ID, "role", string(u.Role), "token_id", tok.ID)
	h.tokenResponse(c, tok)
}

// subject finds the current (enabled) user a delegated token is asked for.
func (h *Handler) subject(id string) (*users.User, bool) {
	if h.Mode == config.ModeDisabled {
		d := authn.DevIdentity
		return &users.User{ID: d.UserID, Username: d.Username, Role: d.Role}, id == d.UserID
	}
	return h.Users().ByID(id)
}

func (h *Handler) tokenResponse(c *gin.Context, tok tokens.Token) {
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, authn.TokenResponse{
		AccessToken: tok.Raw,
		TokenType:   "Bearer",
		ExpiresIn:   int64(h.ServiceTokenTTL / time.Second),
		ExpiresAt:   tok.ExpiresAt.UTC().Format(time.RFC3339),
		Exp:         tok.ExpiresAt.Unix(),
	})
}

func unauthorized(c *gin.Context, msg string) {
	c.Header("WWW-Authenticate", `Bearer realm="sortie"`)
	apierror.Respond(c, apierror.Unauthorized(msg))
}

// unavailable answers 503 when Redis (throttling, revocation) is down or
// full: failing closed, since both are security controls. Full (maxmemory)
// is 503 storage_full with Retry-After, as from every service.
func (h *Handler) unavailable(c *gin.Context, op string, err error) {
	h.Log.ErrorContext(c.Request.Context(), "dependency failed", "op", op, "error", err.Error())
	switch {
	case errors.Is(err, context.Canceled):
		c.Abort()
	case redisconn.IsOOM(err):
		apierror.Respond(c, apierror.StorageFull("cannot record the "+op))
	default:
		apierror.Respond(c, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "the service cannot reach its store; try again shortly"))
	}
}
