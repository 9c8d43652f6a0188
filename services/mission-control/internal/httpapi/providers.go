package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/mission-control/internal/providers"
)

func (h *Handler) listProviders(c *gin.Context) {
	list, err := h.Providers.List(c.Request.Context(), user(c), c.Query("include_all") == "true")
	if err != nil {
		respond(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"providers": list})
}

// providerAuthRequest is the body of POST /api/providers/:id/auth: an API
// key; or nothing, which starts an OAuth sign-in; or the code (with the
// state) the provider's redirect page showed, which finishes it.
type providerAuthRequest struct {
	APIKey *string `json:"api_key"`
	Code   *string `json:"code"`
	State  string  `json:"state"`
}

// scope is whose credentials a call acts on: the caller's own, or with
// ?shared=true the shared ones, which only administrators may change (403).
func scope(c *gin.Context) (providers.Scope, bool) {
	shared := false
	if v := c.Query("shared"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			respond(c, apierror.BadRequest("shared must be true or false, not %q", clipParam(v)))
			return providers.Scope{}, false
		}
		shared = b
	}
	if !shared {
		return providers.UserScope(user(c)), true
	}
	id, _ := authn.FromContext(c.Request.Context())
	if !id.IsAdmin() {
		respond(c, apierror.Forbidden("only an administrator may change shared provider credentials; without shared=true you set your own"))
		return providers.Scope{}, false
	}
	return providers.SharedScope(), true
}

func (h *Handler) setProviderAuth(c *gin.Context) {
	var req providerAuthRequest
	if err := decodeOptional(c.Request, &req); err != nil {
		respond(c, err)
		return
	}
	sc, ok := scope(c)
	if !ok {
		return
	}
	id := c.Param("id")
	key, code := nonEmpty(req.APIKey), nonEmpty(req.Code)
	switch {
	case req.APIKey != nil && key == nil:
		respond(c, apierror.BadRequest("api_key must not be empty"))
	case req.Code != nil && code == nil:
		respond(c, apierror.BadRequest("code must not be empty"))
	case key != nil && code != nil:
		respond(c, apierror.BadRequest("send api_key or code, not both"))
	case key != nil:
		if err := h.Providers.SetKey(c.Request.Context(), sc, id, *key); err != nil {
			providerError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"success": true, "scope": sc.Name(), "message": "API key saved"})
	case code != nil:
		exp, err := h.Providers.FinishOAuth(c.Request.Context(), user(c), sc, id, *code, strings.TrimSpace(req.State))
		if err != nil {
			providerError(c, err)
			return
		}
		resp := gin.H{"success": true, "scope": sc.Name(), "message": "Signed in; the token is used for the next runs"}
		if exp != nil {
			resp["expires_at"] = exp.UTC().Format(time.RFC3339)
		}
		c.JSON(http.StatusOK, resp)
	default:
		start, err := h.Providers.StartOAuth(c.Request.Context(), user(c), sc, id)
		if err != nil {
			providerError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{
			"success": true, "scope": sc.Name(), "method": "code", "auth_url": start.URL, "state": start.State,
			"expires_in": int(start.ExpiresIn.Seconds()),
			"message":    "Open auth_url, sign in, then POST the code shown (or the whole redirect URL) as {\"code\",\"state\"} to this endpoint, with the same shared parameter",
		})
	}
}

func (h *Handler) deleteProviderAuth(c *gin.Context) {
	sc, ok := scope(c)
	if !ok {
		return
	}
	if err := h.Providers.DeleteKey(c.Request.Context(), sc, c.Param("id")); err != nil {
		providerError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

func providerError(c *gin.Context, err error) {
	var oe *providers.OAuthError
	switch {
	case errors.Is(err, providers.ErrUnknown):
		respond(c, apierror.NotFound("unknown provider %q", clipParam(c.Param("id"))))
	case errors.Is(err, providers.ErrNoOAuth):
		respond(c, apierror.BadRequest("provider %q takes an API key only: send {\"api_key\"}", clipParam(c.Param("id"))))
	case errors.Is(err, providers.ErrBadState):
		respond(c, apierror.BadRequest("%v", err))
	case errors.As(err, &oe):
		// A wrong, used or expired code is the caller's input.
		respond(c, apierror.New(http.StatusBadRequest, "oauth_failed", oe.Error()))
	case errors.Is(err, providers.ErrNoKey):
		respond(c, apierror.New(http.StatusServiceUnavailable, "credentials_key_missing",
			"credentials cannot be stored: the administrator must set SORTIE_MC_CREDENTIALS_KEY_FILE (32 random bytes, hex or base64); configured keys (SORTIE_MC_*_API_KEY) still work"))
	case errors.Is(err, providers.ErrTokenEndpoint):
		_ = c.Error(err)
		respond(c, apierror.New(http.StatusBadGateway, "oauth_unavailable", "the provider's token endpoint did not answer properly; retry shortly"))
	default:
		respond(c, err)
	}
}
