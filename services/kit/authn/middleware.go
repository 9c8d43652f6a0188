package authn

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
)

// Authenticator turns a request's token into an Identity on its context.
type Authenticator struct {
	verifier *Verifier
	disabled bool
	log      *slog.Logger
}

// NewAuthenticator returns an Authenticator. With disabled set (dev mode,
// which must be asked for explicitly) every request is DevIdentity; that is
// logged loudly here, once.
func NewAuthenticator(v *Verifier, disabled bool, log *slog.Logger) *Authenticator {
	if log == nil {
		log = slog.Default()
	}
	if disabled {
		log.Warn("AUTHENTICATION IS DISABLED (dev mode): every request acts as the admin user \"dev\"; never expose this to a network")
	}
	return &Authenticator{verifier: v, disabled: disabled, log: log}
}

// Require authenticates from the Authorization header and admits the given
// roles (none given: user and admin).
func (a *Authenticator) Require(roles ...Role) gin.HandlerFunc {
	return a.handler("", roles)
}

// RequireStream is Require for endpoints a browser EventSource opens: it
// cannot send headers, so the token may also come in the query parameter
// named param. The server's access log never records query strings.
func (a *Authenticator) RequireStream(param string, roles ...Role) gin.HandlerFunc {
	return a.handler(param, roles)
}

func (a *Authenticator) handler(queryParam string, roles []Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		if a.disabled {
			c.Request = c.Request.WithContext(WithIdentity(c.Request.Context(), DevIdentity))
			c.Next()
			return
		}
		raw, err := bearer(c.Request, queryParam)
		if err != nil {
			unauthorized(c, err.Error())
			return
		}
		claims, err := a.verifier.Verify(c.Request.Context(), raw)
		var invalid *InvalidTokenError
		switch {
		case errors.As(err, &invalid):
			a.log.DebugContext(c.Request.Context(), "token refused", "reason", invalid.Reason.Error())
			unauthorized(c, invalid.PublicMessage())
			return
		case err != nil:
			a.log.ErrorContext(c.Request.Context(), "cannot verify tokens", "error", err.Error())
			apierror.Abort(c, http.StatusServiceUnavailable, apierror.CodeUnavailable, "authentication is temporarily unavailable")
			return
		}
		if !roleAllowed(claims.Role, roles) {
			apierror.Respond(c, apierror.Forbidden("this token's role may not use this endpoint"))
			return
		}
		c.Request = c.Request.WithContext(WithIdentity(c.Request.Context(), claims.identity()))
		c.Next()
	}
}

func unauthorized(c *gin.Context, msg string) {
	c.Header("WWW-Authenticate", `Bearer realm="sortie"`)
	apierror.Respond(c, apierror.Unauthorized(msg))
}

// bearer extracts the token: "Bearer x" (scheme case-insensitive), else the
// query parameter when allowed.
func bearer(r *http.Request, queryParam string) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", errors.New("Authorization header must be \"Bearer <token>\"")
		}
		return strings.TrimSpace(token), nil
	}
	if queryParam != "" {
		if t := r.URL.Query().Get(queryParam); t != "" {
			return t, nil
		}
	}
	return "", errors.New("missing Authorization header")
}

// Bearer extracts the bearer token of a request, for handlers (logout,
// verify) that act on the token itself.
func Bearer(r *http.Request) (string, error) { return bearer(r, "") }
