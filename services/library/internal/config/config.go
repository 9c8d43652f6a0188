// Package config is the library service's configuration: environment
// variables (as the Helm chart sets them) with flag overrides, checked at
// start so that a bad install fails with every problem named at once.
package config

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sortie.dev/services/kit/config"
	"sortie.dev/services/library/internal/secrets"
)

// Config is everything the library service reads at start.
type Config struct {
	config.Server

	DataDir string // holds the repository (repo/)
	Remote  string // URL (https://, ssh://, git@host:path) or a local path; empty: local only
	Branch  string
	Seed    bool // commit the starter content into a new local repository

	GitUsername        string
	GitToken           string // read from GitTokenFile
	GitTokenFile       string
	SSHKeyFile         string
	SSHKnownHostsFile  string
	EncryptionKeyFile  string
	Sealer             *secrets.Sealer // nil without a key file
	RemoteTimeout      time.Duration
	PushRetryMax       time.Duration
	AuthorEmailDomain  string
	ConfigMapName      string
	ConfigMapNamespace string
	Kubeconfig         string

	AuthDevMode bool
	JWKSURL     string
	Issuer      string
	Audience    string
	// RedisURL, when set, is the auth service's Redis: tokens revoked by
	// logout are refused here too.
	RedisURL      string
	RedisPassword string
}

// RepoDir is where the work tree lives.
func (c *Config) RepoDir() string { return filepath.Join(c.DataDir, "repo") }

// Load binds the environment and args, reads the secret files and
// validates.
func Load(args []string, lookup config.LookupFunc) (*Config, error) {
	var c Config
	var redisPasswordFile string
	b := config.NewBinder("library", lookup)
	c.Server.Bind(b, "address to serve on")
	b.String(&c.DataDir, "data-dir", "SORTIE_LIBRARY_DATA_DIR", "/var/lib/sortie/library", "volume folder holding the library repository")
	b.String(&c.Remote, "remote", "SORTIE_LIBRARY_REMOTE", "", "git remote to clone and push to (https://, ssh:// or git@host:path); empty keeps the library local")
	b.String(&c.Branch, "branch", "SORTIE_LIBRARY_BRANCH", "main", "branch of the remote the library works on")
	b.Bool(&c.Seed, "seed", "SORTIE_LIBRARY_SEED", true, "put starter skills, commands and a template into a newly created library")
	b.String(&c.GitUsername, "git-username", "SORTIE_LIBRARY_GIT_USERNAME", "x-access-token", "user name sent with the HTTPS token (GitLab wants oauth2)")
	b.String(&c.GitTokenFile, "git-token-file", "SORTIE_LIBRARY_GIT_TOKEN_FILE", "", "file holding an HTTPS access token for the remote")
	b.String(&c.SSHKeyFile, "ssh-key-file", "SORTIE_LIBRARY_SSH_KEY_FILE", "", "file holding an SSH private key for the remote")
	b.String(&c.SSHKnownHostsFile, "ssh-known-hosts-file", "SORTIE_LIBRARY_SSH_KNOWN_HOSTS_FILE", "", "known_hosts file that pins the SSH remote's host key")
	b.String(&c.EncryptionKeyFile, "encryption-key-file", "SORTIE_LIBRARY_ENCRYPTION_KEY_FILE", "", "file holding the 32-byte key (64 hex characters or base64) that seals <encrypted> values")
	b.Duration(&c.RemoteTimeout, "remote-timeout", "SORTIE_LIBRARY_REMOTE_TIMEOUT", 30*time.Second, "time limit of one fetch or push")
	b.Duration(&c.PushRetryMax, "push-retry-max", "SORTIE_LIBRARY_PUSH_RETRY_MAX", 5*time.Minute, "longest wait between retries of a failed push")
	b.String(&c.AuthorEmailDomain, "author-email-domain", "SORTIE_LIBRARY_AUTHOR_EMAIL_DOMAIN", "users.sortie.local", "commits are authored by <username>@<this domain>")
	b.String(&c.ConfigMapName, "configmap-name", "SORTIE_LIBRARY_CONFIGMAP_NAME", "sortie-library-revision", "ConfigMap the library writes its revision into")
	b.String(&c.ConfigMapNamespace, "configmap-namespace", "SORTIE_LIBRARY_CONFIGMAP_NAMESPACE", "sortie-workspaces", "namespace of that ConfigMap (the workspaces' namespace)")
	b.String(&c.Kubeconfig, "kubeconfig", "SORTIE_LIBRARY_KUBECONFIG", "", "kubeconfig for publishing the revision; empty: the in-cluster config, or no publishing outside a cluster")
	b.Bool(&c.AuthDevMode, "auth-dev-mode", "SORTIE_AUTH_DEV_MODE", false, "accept every request as the admin user dev (development only)")
	b.String(&c.JWKSURL, "auth-jwks-url", "SORTIE_AUTH_JWKS_URL", "", "the auth service's public keys, e.g. http://auth:8080/api/auth/jwks")
	b.String(&c.RedisURL, "redis-url", "SORTIE_REDIS_URL", "", "the auth service's Redis, to refuse tokens revoked by logout; empty: revocation is not checked")
	b.String(&redisPasswordFile, "redis-password-file", "SORTIE_REDIS_PASSWORD_FILE", "", "file holding the Redis password")
	b.String(&c.Issuer, "auth-issuer", "SORTIE_AUTH_ISSUER", "sortie-auth", "token issuer (iss)")
	b.String(&c.Audience, "auth-audience", "SORTIE_AUTH_AUDIENCE", "sortie", "token audience (aud)")
	if err := b.Parse(args); err != nil {
		return nil, err
	}
	var p config.Problems
	c.Server.Validate(&p)
	c.validate(&p)
	if redisPasswordFile != "" {
		pw, err := config.ReadSecretFile(redisPasswordFile)
		if err != nil {
			p.Addf("SORTIE_REDIS_PASSWORD_FILE: %v", err)
		}
		c.RedisPassword = pw
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate(p *config.Problems) {
	p.Check(c.AuthDevMode || c.JWKSURL != "", "SORTIE_AUTH_JWKS_URL is required (the auth service's /api/auth/jwks), or SORTIE_AUTH_DEV_MODE=true on a development machine")
	p.Check(c.DataDir != "", "SORTIE_LIBRARY_DATA_DIR must not be empty")
	p.Check(c.Branch != "" && !strings.ContainsAny(c.Branch, " ~^:?*[\\") && !strings.Contains(c.Branch, ".."),
		"SORTIE_LIBRARY_BRANCH must be a valid branch name")
	p.Check(c.RemoteTimeout >= time.Second, "SORTIE_LIBRARY_REMOTE_TIMEOUT must be at least 1s")
	p.Check(c.PushRetryMax >= time.Second, "SORTIE_LIBRARY_PUSH_RETRY_MAX must be at least 1s")
	p.Check(c.AuthorEmailDomain != "" && !strings.ContainsAny(c.AuthorEmailDomain, "@<> "), "SORTIE_LIBRARY_AUTHOR_EMAIL_DOMAIN must be a domain name")
	p.Check(c.ConfigMapName != "", "SORTIE_LIBRARY_CONFIGMAP_NAME must not be empty")
	p.Check(c.ConfigMapNamespace != "", "SORTIE_LIBRARY_CONFIGMAP_NAMESPACE must not be empty")

	kind := remoteKind(c.Remote)
	if c.GitTokenFile != "" && c.SSHKeyFile != "" {
		p.Add("set SORTIE_LIBRARY_GIT_TOKEN_FILE (HTTPS) or SORTIE_LIBRARY_SSH_KEY_FILE (SSH), not both")
	}
	if c.GitTokenFile != "" {
		if kind != "https" && kind != "http" {
			p.Addf("SORTIE_LIBRARY_GIT_TOKEN_FILE needs an https:// remote, but SORTIE_LIBRARY_REMOTE is %q", c.Remote)
		}
		tok, err := config.ReadSecretFile(c.GitTokenFile)
		switch {
		case err != nil:
			p.Addf("SORTIE_LIBRARY_GIT_TOKEN_FILE: %v", err)
		case strings.TrimSpace(tok) == "":
			p.Add("SORTIE_LIBRARY_GIT_TOKEN_FILE is empty")
		}
		c.GitToken = strings.TrimSpace(tok)
	}
	if c.SSHKeyFile != "" {
		if kind != "ssh" {
			p.Addf("SORTIE_LIBRARY_SSH_KEY_FILE needs an SSH remote (ssh:// or git@host:path), but SORTIE_LIBRARY_REMOTE is %q", c.Remote)
		}
		if _, err := os.Stat(c.SSHKeyFile); err != nil {
			p.Addf("SORTIE_LIBRARY_SSH_KEY_FILE: %v", err)
		}
		// Without a pinned host key the first connection could go to
		// anyone; refuse rather than trust on first use.
		if c.SSHKnownHostsFile == "" {
			p.Add("SORTIE_LIBRARY_SSH_KNOWN_HOSTS_FILE is required with an SSH key: a known_hosts file holding the remote's host key")
		} else if _, err := os.Stat(c.SSHKnownHostsFile); err != nil {
			p.Addf("SORTIE_LIBRARY_SSH_KNOWN_HOSTS_FILE: %v", err)
		}
	}
	if kind == "http" && c.GitTokenFile != "" {
		p.Add("SORTIE_LIBRARY_REMOTE uses plain http:// and a token: the token would cross the network in clear; use https://")
	}
	if kind == "invalid" {
		p.Addf("SORTIE_LIBRARY_REMOTE %q is not a URL (https://, ssh://, git@host:path) or an absolute path", c.Remote)
	}
	if u, err := url.Parse(c.Remote); err == nil && u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			p.Add("SORTIE_LIBRARY_REMOTE must not carry a password; put the token in SORTIE_LIBRARY_GIT_TOKEN_FILE")
		}
	}
	if c.EncryptionKeyFile != "" {
		s, err := secrets.LoadKeyFile(c.EncryptionKeyFile)
		if err != nil {
			p.Addf("SORTIE_LIBRARY_ENCRYPTION_KEY_FILE: %v", err)
		}
		c.Sealer = s
	}
}

// remoteKind classifies a remote: "", "https", "http", "ssh", "file" or
// "invalid".
func remoteKind(remote string) string {
	switch {
	case remote == "":
		return ""
	case strings.HasPrefix(remote, "https://"):
		return "https"
	case strings.HasPrefix(remote, "http://"):
		return "http"
	case strings.HasPrefix(remote, "ssh://"):
		return "ssh"
	case strings.HasPrefix(remote, "file://"), filepath.IsAbs(remote):
		return "file"
	case strings.Contains(remote, "@") && strings.Contains(remote, ":") && !strings.Contains(remote, "://"):
		return "ssh"
	default:
		return "invalid"
	}
}

// RemoteKind classifies the configured remote (see remoteKind).
func (c *Config) RemoteKind() string { return remoteKind(c.Remote) }
