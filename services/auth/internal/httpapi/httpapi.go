// Package httpapi serves the auth service's routes under /api/auth.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
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
)

// Error codes of this service, beside kit's.
const (
	CodeInvalidCredentials   = "invalid_credentials"
	CodeInvalidClient        = "invalid_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
)

// Handler holds what the routes need. Users and Clients are functions
// because the files behind them are reloaded while the service runs.
type Handler struct {
	Mode            config.Mode
	Users           func() *users.Store
	Clients         func() *clients.Store
	Throttle        *throttle.Throttle
	Redis           redis.UniversalClient
	Tokens          *tokens.Issuer
	Verifier        *authn.Verifier
	JWKS            func() authn.JWKSDocument
	TokenTTL        time.Duration
	ServiceTokenTTL time.Duration
	Log             *slog.Logger

	logins        *prometheus.CounterVec
	serviceTokens *prometheus.CounterVec
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
	reg.MustRegister(h.logins, h.serviceTokens)

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

func (h *Handler) login(c *gin.Context) {
	ctx := c.Request.Context()
	var req LoginRequest
	if err := apierror.DecodeJSON(c.Request, &req); err != nil {
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
	ip := c.ClientIP()
	wait, err := h.Throttle.Check(ctx, throttleName, ip)
	if err != nil {
		h.unavailable(c, "login", err)
		return
	}
	if wait > 0 {
		h.logins.WithLabelValues("throttled").Inc()
		secs := int((wait + time.Second - 1) / time.Second)
		c.Header("Retry-After", strconv.Itoa(secs))
		apierror.Respond(c, apierror.Newf(http.StatusTooManyRequests, apierror.CodeRateLimited,
			"too many failed logins; try again in %d seconds", secs))
		return
	}
	u, err := store.Authenticate(req.Username, req.Password)
	if err != nil {
		if ferr := h.Throttle.Fail(ctx, throttleName, ip); ferr != nil {
			h.Log.ErrorContext(ctx, "could not record a failed login", "error", ferr.Error())
		}
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
	if err := h.Throttle.Succeed(ctx, throttleName); err != nil {
		h.Log.ErrorContext(ctx, "could not reset the login throttle", "error", err.Error())
	}
	h.issueLogin(c, u)
}

func (h *Handler) issueLogin(c *gin.Context, u *users.User) {
	tok, err := h.Tokens.Issue(u.ID, u.Username, u.Role, h.TokenTTL)
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
// given both flat and under "user", for clients of either habit.
type VerifyResponse struct {
	Valid     bool       `json:"valid"`
	ID        string     `json:"id"`
	Username  string     `json:"username"`
	Role      authn.Role `json:"role"`
	User      UserJSON   `json:"user"`
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
	c.JSON(http.StatusOK, VerifyResponse{
		Valid: true, ID: u.ID, Username: u.Username, Role: u.Role, User: u,
		ExpiresAt: claims.ExpiresAt.UTC().Format(time.RFC3339),
		Exp:       claims.ExpiresAt.Unix(),
	})
}

// authenticate verifies the request's own token, including that its user
// (or service client) still exists: removing one from its file ends its
// sessions.
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
		unauthorized(c, "invalid or expired token")
		return nil, false
	case err != nil:
		h.unavailable(c, "verify", err)
		return nil, false
	}
	if claims.Role != authn.RoleService {
		if _, ok := h.Users().ByID(claims.Subject); !ok {
			unauthorized(c, "the token's user no longer exists")
			return nil, false
		}
	} else if !h.Clients().Has(strings.TrimPrefix(claims.Subject, "service:")) {
		unauthorized(c, "the token's client no longer exists")
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
// credentials, as JSON or a form; HTTP Basic works too).
type TokenRequest struct {
	GrantType    string `json:"grant_type" form:"grant_type"`
	ClientID     string `json:"client_id" form:"client_id"`
	ClientSecret string `json:"client_secret" form:"client_secret"`
}

func (h *Handler) serviceToken(c *gin.Context) {
	var req TokenRequest
	if strings.HasPrefix(c.ContentType(), "application/x-www-form-urlencoded") {
		if err := c.Request.ParseForm(); err != nil {
			apierror.Respond(c, apierror.BadRequest("form body could not be read"))
			return
		}
		req = TokenRequest{GrantType: c.Request.PostForm.Get("grant_type"), ClientID: c.Request.PostForm.Get("client_id"), ClientSecret: c.Request.PostForm.Get("client_secret")}
	} else if err := apierror.DecodeJSON(c.Request, &req); err != nil {
		apierror.Respond(c, err)
		return
	}
	if id, secret, ok := c.Request.BasicAuth(); ok && req.ClientID == "" {
		req.ClientID, req.ClientSecret = id, secret
	}
	if req.GrantType != "" && req.GrantType != "client_credentials" {
		apierror.Respond(c, apierror.Newf(http.StatusBadRequest, CodeUnsupportedGrantType, "grant_type %q is not supported; use client_credentials", req.GrantType))
		return
	}
	if req.ClientID == "" || req.ClientSecret == "" {
		apierror.Respond(c, apierror.BadRequest("client_id and client_secret are required"))
		return
	}
	ctx := c.Request.Context()
	ip := c.ClientIP()
	throttleName := "client:" + req.ClientID
	wait, err := h.Throttle.Check(ctx, throttleName, ip)
	if err != nil {
		h.unavailable(c, "token", err)
		return
	}
	if wait > 0 {
		c.Header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		apierror.Respond(c, apierror.New(http.StatusTooManyRequests, apierror.CodeRateLimited, "too many failed attempts"))
		return
	}
	if err := h.Clients().Authenticate(req.ClientID, req.ClientSecret); err != nil {
		_ = h.Throttle.Fail(ctx, throttleName, ip)
		h.serviceTokens.WithLabelValues("failure").Inc()
		h.Log.InfoContext(ctx, "service token refused", "client_id", req.ClientID, "client_ip", ip)
		c.Header("WWW-Authenticate", `Basic realm="sortie"`)
		apierror.Respond(c, apierror.New(http.StatusUnauthorized, CodeInvalidClient, "invalid client credentials"))
		return
	}
	tok, err := h.Tokens.Issue("service:"+req.ClientID, req.ClientID, authn.RoleService, h.ServiceTokenTTL)
	if err != nil {
		apierror.Respond(c, err)
		return
	}
	h.serviceTokens.WithLabelValues("success").Inc()
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

// unavailable answers 503 when Redis (throttling, revocation) is down:
// failing closed, since both are security controls.
func (h *Handler) unavailable(c *gin.Context, op string, err error) {
	h.Log.ErrorContext(c.Request.Context(), "dependency failed", "op", op, "error", err.Error())
	if errors.Is(err, context.Canceled) {
		c.Abort()
		return
	}
	apierror.Respond(c, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "the service cannot reach its store; try again shortly"))
}
