package config

import (
	"strings"

	"sortie.dev/services/kit/config"
	"sortie.dev/services/mission-control/internal/providers"
)

// oauthProviders are the providers that can sign in with OAuth.
var oauthProviders = []string{"anthropic", "openai"}

// bindProviders binds the credentials key, the providers' OAuth clients
// and the library URL; the returned function reads and checks them after
// Parse.
func (c *Config) bindProviders(b *config.Binder) func(p *config.Problems) {
	var keyFile string
	b.String(&keyFile, "credentials-key-file", "SORTIE_MC_CREDENTIALS_KEY_FILE", "",
		"file holding the 32-byte key (hex or base64) that encrypts provider credentials stored in Redis")
	b.String(&c.LibraryURL, "library-url", "SORTIE_LIBRARY_URL", "", "the library service's base URL, checked by /api/health")
	defaults := providers.DefaultOAuthClients()
	clients := make([]providers.OAuthClient, len(oauthProviders))
	for i, id := range oauthProviders {
		d, cl := defaults[id], &clients[i]
		cl.JSONToken, cl.Extra = d.JSONToken, d.Extra
		flag, env := "oauth-"+id+"-", "SORTIE_MC_OAUTH_"+strings.ToUpper(id)+"_"
		b.String(&cl.AuthorizeURL, flag+"authorize-url", env+"AUTHORIZE_URL", d.AuthorizeURL, id+" OAuth authorization endpoint")
		b.String(&cl.TokenURL, flag+"token-url", env+"TOKEN_URL", d.TokenURL, id+" OAuth token endpoint")
		b.String(&cl.ClientID, flag+"client-id", env+"CLIENT_ID", d.ClientID, id+" OAuth client id (empty: API keys only)")
		b.String(&cl.RedirectURI, flag+"redirect-uri", env+"REDIRECT_URI", d.RedirectURI, id+" OAuth redirect URI registered for the client")
		b.String(&cl.Scopes, flag+"scopes", env+"SCOPES", d.Scopes, id+" OAuth scopes, space separated")
	}
	return func(p *config.Problems) {
		c.OAuth = map[string]providers.OAuthClient{}
		for i, id := range oauthProviders {
			c.OAuth[id] = clients[i]
		}
		if keyFile == "" {
			return
		}
		s, err := config.ReadSecretFile(keyFile)
		if err != nil {
			p.Addf("SORTIE_MC_CREDENTIALS_KEY_FILE: %v", err)
			return
		}
		if c.CredentialsKey, err = providers.ParseKey(s); err != nil {
			p.Addf("SORTIE_MC_CREDENTIALS_KEY_FILE: %v", err)
		}
	}
}
