// Package config is the auth service's configuration: environment
// variables (as a Helm chart sets them) with flag overrides, validated at
// start so a bad install fails with every problem named.
package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"sortie.dev/services/auth/internal/clients"
	"sortie.dev/services/kit/config"
)

// Mode is how users log in.
type Mode string

// Modes, named as the original server's /api/health reports them.
const (
	ModeDisabled     Mode = "disabled"      // dev mode: no authentication
	ModeSingleTenant Mode = "single_tenant" // one password
	ModeMultiUser    Mode = "multi_user"    // a users file
)

// Config is everything the auth service reads at start.
type Config struct {
	config.Server
	RedisURL      string
	RedisPassword string // from RedisPasswordFile

	DevMode      bool
	Password     string // single-tenant password or bcrypt hash
	PasswordFile string
	UsersFile    string
	ClientsFile  string
	// DelegatingClients may ask for tokens on a user's behalf.
	DelegatingClients []string
	KeysDir           string
	GenerateKey       bool
	ReloadEvery       time.Duration

	Issuer          string
	Audience        string
	TokenTTL        time.Duration
	ServiceTokenTTL time.Duration

	LoginMaxFailures      int // per username from one address
	LoginMaxFailuresPerIP int // per address, any username (and client credentials)
	LoginUserCeiling      int // per username from all addresses; 0: none
	LoginWindow           time.Duration

	redisPasswordFile string
	delegatingSet     bool // SORTIE_AUTH_DELEGATING_CLIENTS given, not defaulted
}

// Load binds the environment and args, reads secret files and validates.
func Load(args []string, lookup config.LookupFunc) (*Config, error) {
	var c Config
	b := config.NewBinder("auth", lookup)
	c.Server.Bind(b, "address to serve on")
	b.String(&c.RedisURL, "redis-url", "SORTIE_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis for login throttling and revoked tokens")
	b.String(&c.redisPasswordFile, "redis-password-file", "SORTIE_REDIS_PASSWORD_FILE", "", "file holding the Redis password")

	b.Bool(&c.DevMode, "dev-mode", "SORTIE_AUTH_DEV_MODE", false, "disable authentication (development only)")
	b.String(&c.Password, "password", "SORTIE_AUTH_PASSWORD", "", "single-user mode: the password, or its bcrypt hash")
	b.String(&c.PasswordFile, "password-file", "SORTIE_AUTH_PASSWORD_FILE", "", "single-user mode: file holding the password or its bcrypt hash")
	b.String(&c.UsersFile, "users-file", "SORTIE_AUTH_USERS_FILE", "", "multi-user mode: JSON list of {id, username, password_hash, role}")
	b.String(&c.ClientsFile, "clients-file", "SORTIE_AUTH_CLIENTS_FILE", "", "JSON object of service client id to secret, for service tokens")
	b.List(&c.DelegatingClients, "delegating-clients", "SORTIE_AUTH_DELEGATING_CLIENTS", []string{"mission-control"}, "service clients that may ask for tokens on a user's behalf")
	b.String(&c.KeysDir, "keys-dir", "SORTIE_AUTH_KEYS_DIR", "", "folder of Ed25519 signing keys (PEM)")
	b.Bool(&c.GenerateKey, "generate-key", "SORTIE_AUTH_GENERATE_KEY", false, "create and save a signing key when the keys folder has none")
	b.Duration(&c.ReloadEvery, "reload-every", "SORTIE_AUTH_RELOAD_EVERY", 15*time.Second, "how often keys, users and clients are re-read from their files and the principals republished")

	b.String(&c.Issuer, "issuer", "SORTIE_AUTH_ISSUER", "sortie-auth", "token issuer (iss)")
	b.String(&c.Audience, "audience", "SORTIE_AUTH_AUDIENCE", "sortie", "token audience (aud)")
	b.Duration(&c.TokenTTL, "token-ttl", "SORTIE_AUTH_TOKEN_TTL", 30*24*time.Hour, "lifetime of a login token")
	b.Duration(&c.ServiceTokenTTL, "service-token-ttl", "SORTIE_AUTH_SERVICE_TOKEN_TTL", 5*time.Minute, "lifetime of a service token")

	b.Int(&c.LoginMaxFailures, "login-max-failures", "SORTIE_AUTH_LOGIN_MAX_FAILURES", 5, "failed logins per username from one client address before that address is locked out of it for the window")
	b.Int(&c.LoginMaxFailuresPerIP, "login-max-failures-per-ip", "SORTIE_AUTH_LOGIN_MAX_FAILURES_PER_IP", 50, "failed logins and client credentials per client address (IPv6: per /64) before it is locked for the window")
	b.Int(&c.LoginUserCeiling, "login-user-ceiling", "SORTIE_AUTH_LOGIN_USER_CEILING", 100, "failed logins per username from all addresses before only addresses it logged in from may try, for the window (0: no ceiling)")
	b.Duration(&c.LoginWindow, "login-window", "SORTIE_AUTH_LOGIN_WINDOW", 15*time.Minute, "how long failed logins are counted and a lock lasts")

	if err := b.Parse(args); err != nil {
		return nil, err
	}
	_, c.delegatingSet = lookup("SORTIE_AUTH_DELEGATING_CLIENTS")
	b.FlagSet().Visit(func(f *flag.Flag) { c.delegatingSet = c.delegatingSet || f.Name == "delegating-clients" })
	var p config.Problems
	if c.redisPasswordFile != "" {
		pw, err := config.ReadSecretFile(c.redisPasswordFile)
		if err != nil {
			p.Addf("SORTIE_REDIS_PASSWORD_FILE: %v", err)
		}
		c.RedisPassword = pw
	}
	if c.PasswordFile != "" {
		if c.Password != "" {
			p.Add("set SORTIE_AUTH_PASSWORD or SORTIE_AUTH_PASSWORD_FILE, not both")
		}
		pw, err := config.ReadSecretFile(c.PasswordFile)
		if err != nil {
			p.Addf("SORTIE_AUTH_PASSWORD_FILE: %v", err)
		}
		c.Password = pw
	}
	p.Merge(c.Validate())
	if err := p.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Mode reports the login mode the configuration selects.
func (c *Config) Mode() Mode {
	switch {
	case c.DevMode:
		return ModeDisabled
	case c.UsersFile != "":
		return ModeMultiUser
	default:
		return ModeSingleTenant
	}
}

// Validate reports every problem at once. It refuses configurations in
// which the service would run unsafely: no way to log in, or no key.
func (c *Config) Validate() error {
	var p config.Problems
	c.Server.Validate(&p)
	p.Check(strings.HasPrefix(c.RedisURL, "redis://") || strings.HasPrefix(c.RedisURL, "rediss://") || strings.HasPrefix(c.RedisURL, "unix://"),
		fmt.Sprintf("SORTIE_REDIS_URL %q must start with redis://, rediss:// or unix://", c.RedisURL))
	if !c.DevMode {
		switch {
		case c.Password == "" && c.UsersFile == "":
			p.Add("no way to log in: set SORTIE_AUTH_PASSWORD(_FILE) for one password, SORTIE_AUTH_USERS_FILE for several users, or SORTIE_AUTH_DEV_MODE=true to disable authentication on a development machine")
		case c.Password != "" && c.UsersFile != "":
			p.Add("set either a password (single-user mode) or SORTIE_AUTH_USERS_FILE (multi-user mode), not both")
		}
		if c.Password != "" && !strings.HasPrefix(c.Password, "$2") && len(c.Password) < 8 {
			p.Add("the password must be at least 8 characters long")
		}
		if c.KeysDir == "" {
			p.Add("SORTIE_AUTH_KEYS_DIR is required: a folder holding the Ed25519 signing keys (create one with `auth keys generate --dir DIR`, or set SORTIE_AUTH_GENERATE_KEY=true to create it at start)")
		} else if !c.GenerateKey {
			if _, err := os.Stat(c.KeysDir); err != nil {
				p.Addf("SORTIE_AUTH_KEYS_DIR: %v", err)
			}
		}
	}
	p.Check(c.Issuer != "", "SORTIE_AUTH_ISSUER must not be empty")
	p.Check(c.Audience != "", "SORTIE_AUTH_AUDIENCE must not be empty")
	p.Check(c.TokenTTL >= time.Minute, "SORTIE_AUTH_TOKEN_TTL must be at least 1m")
	p.Check(c.ServiceTokenTTL >= 30*time.Second && c.ServiceTokenTTL <= 24*time.Hour, "SORTIE_AUTH_SERVICE_TOKEN_TTL must be between 30s and 24h")
	p.Check(c.LoginMaxFailures >= 1, "SORTIE_AUTH_LOGIN_MAX_FAILURES must be at least 1")
	p.Check(c.LoginMaxFailuresPerIP >= c.LoginMaxFailures, "SORTIE_AUTH_LOGIN_MAX_FAILURES_PER_IP must be at least SORTIE_AUTH_LOGIN_MAX_FAILURES")
	p.Check(c.LoginUserCeiling == 0 || c.LoginUserCeiling >= c.LoginMaxFailures, "SORTIE_AUTH_LOGIN_USER_CEILING must be 0 (no ceiling) or at least SORTIE_AUTH_LOGIN_MAX_FAILURES")
	p.Check(c.LoginWindow >= time.Second, "SORTIE_AUTH_LOGIN_WINDOW must be at least 1s")
	p.Check(c.ReloadEvery >= time.Second && c.ReloadEvery <= 30*time.Second,
		"SORTIE_AUTH_RELOAD_EVERY must be between 1s and 30s: losing access reaches every service within it plus 15s")
	c.validateDelegating(&p)
	return p.Err()
}

// validateDelegating checks that every delegating client is a client of the
// clients file. Without a clients file no client can ask for anything, so
// only a list set on purpose is a mistake.
func (c *Config) validateDelegating(p *config.Problems) {
	if c.ClientsFile == "" {
		if c.delegatingSet && len(c.DelegatingClients) > 0 {
			p.Addf("SORTIE_AUTH_DELEGATING_CLIENTS names %s but SORTIE_AUTH_CLIENTS_FILE is not set", strings.Join(c.DelegatingClients, ", "))
		}
		return
	}
	store, err := clients.LoadFile(c.ClientsFile)
	if err != nil {
		p.Addf("SORTIE_AUTH_CLIENTS_FILE: %v", err)
		return
	}
	for _, id := range c.DelegatingClients {
		if !store.Has(id) {
			p.Addf("SORTIE_AUTH_DELEGATING_CLIENTS: %q is not a client of %s (it has: %s)", id, c.ClientsFile, strings.Join(store.IDs(), ", "))
		}
	}
}
