// Package config is mission-control's configuration: environment variables
// (as a Helm chart sets them) with flag overrides, validated at start so a
// bad install fails with every problem named at once.
package config

import (
	"fmt"
	"strings"
	"time"

	"sortie.dev/services/kit/config"
	"sortie.dev/services/mission-control/internal/providers"
)

// Backends are the agent CLIs mission-control can run, in the order the
// default is chosen from, and the built-in backend (agents.go).
var Backends = []string{"claudecode", "codex", "opencode", "amp", BuiltinBackend}

// AuthMode is how users log in, as /api/health reports it. Mission-control
// verifies tokens but does not know how they were obtained, so the mode is
// configured (the chart sets it from the auth service's settings).
type AuthMode string

// The modes of the original server's /api/health.
const (
	AuthDisabled     AuthMode = "disabled"
	AuthSingleTenant AuthMode = "single_tenant"
	AuthMultiUser    AuthMode = "multi_user"
)

// Config is everything mission-control reads at start.
type Config struct {
	config.Server
	RedisURL      string
	RedisPassword string

	AuthDevMode bool
	JWKSURL     string
	Issuer      string
	Audience    string
	AuthMode    AuthMode

	// WorkspacesURL is the workspace-operator's REST base URL.
	WorkspacesURL string
	// AuthURL, ClientID and ClientSecret obtain service tokens for calls to
	// the operator; unused in dev mode.
	AuthURL      string
	ClientID     string
	ClientSecret string

	MaxRunningPerUser int
	DefaultBackend    string
	// CLIs maps a backend to the executable run in the workspace.
	CLIs map[string]string
	// Credentials maps an environment variable (ANTHROPIC_API_KEY, ...) to
	// its value, from the operator's configuration.
	Credentials map[string]string
	// ToolOutputLimit is the longest text stored in one field of an event
	// (a tool's output, its arguments' strings, a turn's streamed text, a
	// thinking block, a string of an over-long output line).
	ToolOutputLimit int
	// Limits bound what one user or agent can make the service hold
	// (limits.go).
	Limits Limits

	LeaseTTL       time.Duration
	CancelGrace    time.Duration
	KeepAlive      time.Duration
	StreamMaxLen   int64
	ReplicaID      string
	MissionsSubdir string

	// CredentialsKey encrypts provider credentials stored in Redis (nil:
	// none configured); OAuth holds the providers' OAuth clients by
	// provider id (providers.go).
	CredentialsKey []byte
	OAuth          map[string]providers.OAuthClient
	// LibraryURL is the library service, checked by /api/health.
	LibraryURL string

	// Agents configures the watchdogs and the built-in backend (agents.go).
	Agents Agents
}

// credentialEnv names the provider credentials that can be configured and
// the variable each is passed to the CLIs in.
var credentialEnv = []struct{ flag, env, target string }{
	{"anthropic-api-key", "SORTIE_MC_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"},
	{"openai-api-key", "SORTIE_MC_OPENAI_API_KEY", "OPENAI_API_KEY"},
	{"amp-api-key", "SORTIE_MC_AMP_API_KEY", "AMP_API_KEY"},
}

// Load binds env and args, reads secret files and validates.
func Load(args []string, lookup config.LookupFunc) (*Config, error) {
	c := Config{CLIs: map[string]string{}, Credentials: map[string]string{}}
	var redisPasswordFile, secretFile, authMode string
	b := config.NewBinder("mission-control", lookup)
	c.Server.Bind(b, "address to serve on")
	b.String(&c.RedisURL, "redis-url", "SORTIE_REDIS_URL", "", "Redis holding missions, events and queues")
	b.String(&redisPasswordFile, "redis-password-file", "SORTIE_REDIS_PASSWORD_FILE", "", "file holding the Redis password")
	b.Bool(&c.AuthDevMode, "auth-dev-mode", "SORTIE_AUTH_DEV_MODE", false, "accept every request as the admin user dev (development only)")
	b.String(&c.JWKSURL, "auth-jwks-url", "SORTIE_AUTH_JWKS_URL", "", "the auth service's public keys, e.g. http://auth:8080/api/auth/jwks")
	b.String(&c.Issuer, "auth-issuer", "SORTIE_AUTH_ISSUER", "sortie-auth", "token issuer (iss)")
	b.String(&c.Audience, "auth-audience", "SORTIE_AUTH_AUDIENCE", "sortie", "token audience (aud)")
	b.String(&authMode, "auth-mode", "SORTIE_AUTH_MODE", "", "login mode reported by /api/health: disabled, single_tenant or multi_user (default: disabled in dev mode, else single_tenant)")
	b.String(&c.WorkspacesURL, "workspaces-url", "SORTIE_WORKSPACES_URL", "", "the workspace-operator's REST base URL, e.g. http://workspace-operator:8080")
	b.String(&c.AuthURL, "auth-url", "SORTIE_AUTH_URL", "", "the auth service's base URL, for service tokens")
	b.String(&c.ClientID, "client-id", "SORTIE_SERVICE_CLIENT_ID", "mission-control", "service client id")
	b.String(&secretFile, "client-secret-file", "SORTIE_SERVICE_CLIENT_SECRET_FILE", "", "file holding the service client secret")
	b.Int(&c.MaxRunningPerUser, "max-running-per-user", "SORTIE_MC_MAX_RUNNING_PER_USER", 3, "missions of one user that run at once; further turns queue")
	b.String(&c.DefaultBackend, "default-backend", "SORTIE_MC_DEFAULT_BACKEND", "claudecode", "backend of a mission that names none")
	for _, name := range CLIBackends() {
		var exe string
		b.String(&exe, "cli-"+name, "SORTIE_MC_CLI_"+strings.ToUpper(name), defaultCLI(name), "executable of the "+name+" backend inside workspaces")
		c.CLIs[name] = exe
	}
	creds := make([]string, len(credentialEnv))
	credFiles := make([]string, len(credentialEnv))
	for i, ce := range credentialEnv {
		b.String(&creds[i], ce.flag, ce.env, "", "passed to the CLIs as "+ce.target)
		b.String(&credFiles[i], ce.flag+"-file", ce.env+"_FILE", "", "file holding "+ce.target)
	}
	b.Int(&c.ToolOutputLimit, "tool-output-limit", "SORTIE_MC_TOOL_OUTPUT_LIMIT", 64<<10, "bytes of text kept per stored field (tool output and arguments, a turn's streamed text, a thinking block); the rest is cut with a marker")
	b.Duration(&c.LeaseTTL, "lease-ttl", "SORTIE_MC_LEASE_TTL", 15*time.Second, "how long a run's lease lasts without renewal; another replica takes a run over after it")
	b.Duration(&c.CancelGrace, "cancel-grace", "SORTIE_MC_CANCEL_GRACE", 5*time.Second, "wait after SIGINT and after SIGTERM before escalating")
	b.Duration(&c.KeepAlive, "sse-keepalive", "SORTIE_MC_SSE_KEEPALIVE", 15*time.Second, "interval of SSE keepalive comments")
	var maxLen int
	b.Int(&maxLen, "stream-max-len", "SORTIE_MC_STREAM_MAX_LEN", 100000, "events kept per user for SSE resume")
	b.String(&c.ReplicaID, "replica-id", "SORTIE_MC_REPLICA_ID", "", "this replica's name in run leases (default: host name plus a random suffix)")
	checkProviders := c.bindProviders(b)
	checkAgents := c.bindAgents(b)
	checkLimits := c.bindLimits(b)
	// Parse even for the flags that read the vars above in loops: the
	// pointers were bound before the map copies.
	if err := b.Parse(args); err != nil {
		return nil, err
	}
	for _, name := range CLIBackends() {
		c.CLIs[name] = b.FlagSet().Lookup("cli-" + name).Value.String()
	}
	c.StreamMaxLen = int64(maxLen)

	var p config.Problems
	c.Server.Validate(&p)
	checkProviders(&p)
	checkAgents(&p)
	checkLimits(&p)
	p.Check(c.RedisURL != "", "SORTIE_REDIS_URL is required (e.g. redis://redis:6379/0)")
	p.Check(c.AuthDevMode || c.JWKSURL != "", "SORTIE_AUTH_JWKS_URL is required (the auth service's /api/auth/jwks), or SORTIE_AUTH_DEV_MODE=true on a development machine")
	p.Check(c.WorkspacesURL != "", "SORTIE_WORKSPACES_URL is required (the workspace-operator's REST API, e.g. http://workspace-operator:8080)")
	if !c.AuthDevMode {
		p.Check(c.AuthURL != "", "SORTIE_AUTH_URL is required to get service tokens for the workspace-operator (or SORTIE_AUTH_DEV_MODE=true)")
		p.Check(secretFile != "", "SORTIE_SERVICE_CLIENT_SECRET_FILE is required to get service tokens (or SORTIE_AUTH_DEV_MODE=true)")
	}
	if secretFile != "" {
		s, err := config.ReadSecretFile(secretFile)
		if err != nil {
			p.Addf("SORTIE_SERVICE_CLIENT_SECRET_FILE: %v", err)
		}
		c.ClientSecret = s
	}
	if redisPasswordFile != "" {
		s, err := config.ReadSecretFile(redisPasswordFile)
		if err != nil {
			p.Addf("SORTIE_REDIS_PASSWORD_FILE: %v", err)
		}
		c.RedisPassword = s
	}
	switch c.AuthMode = AuthMode(authMode); c.AuthMode {
	case "":
		c.AuthMode = AuthSingleTenant
		if c.AuthDevMode {
			c.AuthMode = AuthDisabled
		}
	case AuthDisabled, AuthSingleTenant, AuthMultiUser:
	default:
		p.Addf("SORTIE_AUTH_MODE %q must be disabled, single_tenant or multi_user", authMode)
	}
	if !isBackend(c.DefaultBackend) {
		p.Addf("SORTIE_MC_DEFAULT_BACKEND %q must be one of %s", c.DefaultBackend, strings.Join(Backends, ", "))
	}
	for name, exe := range c.CLIs {
		p.Check(exe != "", fmt.Sprintf("SORTIE_MC_CLI_%s must not be empty", strings.ToUpper(name)))
	}
	for i, ce := range credentialEnv {
		v := creds[i]
		if credFiles[i] != "" {
			if v != "" {
				p.Addf("set %s or %s_FILE, not both", ce.env, ce.env)
			}
			s, err := config.ReadSecretFile(credFiles[i])
			if err != nil {
				p.Addf("%s_FILE: %v", ce.env, err)
			}
			v = s
		}
		if v != "" {
			c.Credentials[ce.target] = v
		}
	}
	p.Check(c.MaxRunningPerUser >= 1, "SORTIE_MC_MAX_RUNNING_PER_USER must be at least 1")
	p.Check(c.ToolOutputLimit >= 1024 && c.ToolOutputLimit <= 16<<20, "SORTIE_MC_TOOL_OUTPUT_LIMIT must be between 1024 bytes and 16 MiB")
	p.Check(c.LeaseTTL >= time.Second, "SORTIE_MC_LEASE_TTL must be at least 1s")
	p.Check(c.CancelGrace > 0, "SORTIE_MC_CANCEL_GRACE must be positive")
	p.Check(c.KeepAlive >= 100*time.Millisecond, "SORTIE_MC_SSE_KEEPALIVE must be at least 100ms")
	p.Check(c.StreamMaxLen >= 100, "SORTIE_MC_STREAM_MAX_LEN must be at least 100")
	if err := p.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

func defaultCLI(backend string) string {
	if backend == "claudecode" {
		return "claude"
	}
	return backend
}

func isBackend(name string) bool {
	for _, b := range Backends {
		if b == name {
			return true
		}
	}
	return false
}

// IsBackend reports whether name is a known backend.
func IsBackend(name string) bool { return isBackend(name) }
