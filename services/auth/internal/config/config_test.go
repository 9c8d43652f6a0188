package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	return Load(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func TestLoadRefusesUnsafeConfigurations(t *testing.T) {
	keys := t.TempDir()
	clientsFile := filepath.Join(t.TempDir(), "clients.json")
	os.WriteFile(clientsFile, []byte(`{"mission-control":"a-secret-of-at-least-24-chars","workspace-operator":"another-secret-of-24-chars"}`), 0o600)
	tests := map[string]struct {
		env  map[string]string
		want []string // every one must appear in the error
	}{
		"nothing configured": {
			env:  map[string]string{},
			want: []string{"no way to log in", "SORTIE_AUTH_KEYS_DIR is required"},
		},
		"password without keys": {
			env:  map[string]string{"SORTIE_AUTH_PASSWORD": "long-enough-pw"},
			want: []string{"SORTIE_AUTH_KEYS_DIR is required"},
		},
		"keys folder missing": {
			env:  map[string]string{"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": "/does/not/exist"},
			want: []string{"SORTIE_AUTH_KEYS_DIR"},
		},
		"both modes": {
			env:  map[string]string{"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_USERS_FILE": "/x", "SORTIE_AUTH_KEYS_DIR": keys},
			want: []string{"not both"},
		},
		"short password": {
			env:  map[string]string{"SORTIE_AUTH_PASSWORD": "short", "SORTIE_AUTH_KEYS_DIR": keys},
			want: []string{"at least 8 characters"},
		},
		"bad values, all reported": {
			env: map[string]string{
				"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys,
				"SORTIE_AUTH_TOKEN_TTL": "10s", "SORTIE_LOG_LEVEL": "loud", "SORTIE_REDIS_URL": "localhost:6379",
				"SORTIE_AUTH_LOGIN_MAX_FAILURES": "0",
			},
			want: []string{"SORTIE_AUTH_TOKEN_TTL", "log level", "SORTIE_REDIS_URL", "SORTIE_AUTH_LOGIN_MAX_FAILURES"},
		},
		"unknown delegating clients, listed with the other problems": {
			env: map[string]string{
				"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys, "SORTIE_AUTH_TOKEN_TTL": "10s",
				"SORTIE_AUTH_CLIENTS_FILE": clientsFile, "SORTIE_AUTH_DELEGATING_CLIENTS": "mission-control,misson-control,libary",
			},
			want: []string{`"misson-control" is not a client`, `"libary" is not a client`, "SORTIE_AUTH_TOKEN_TTL"},
		},
		"default delegating client missing from the clients file": {
			env: map[string]string{
				"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys,
				"SORTIE_AUTH_CLIENTS_FILE": writeFile(t, `{"workspace-operator":"another-secret-of-24-chars"}`),
			},
			want: []string{`SORTIE_AUTH_DELEGATING_CLIENTS: "mission-control" is not a client`},
		},
		"delegating clients without a clients file": {
			env:  map[string]string{"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys, "SORTIE_AUTH_DELEGATING_CLIENTS": "mission-control"},
			want: []string{"SORTIE_AUTH_CLIENTS_FILE is not set"},
		},
		"reload too rare for losing access within 60s": {
			env:  map[string]string{"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys, "SORTIE_AUTH_RELOAD_EVERY": "1m"},
			want: []string{"SORTIE_AUTH_RELOAD_EVERY"},
		},
		"login limits that make no sense": {
			env: map[string]string{
				"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys,
				"SORTIE_AUTH_LOGIN_MAX_FAILURES": "10", "SORTIE_AUTH_LOGIN_MAX_FAILURES_PER_IP": "5",
				"SORTIE_AUTH_LOGIN_USER_CEILING": "3", "SORTIE_AUTH_LOGIN_WINDOW": "10ms",
			},
			want: []string{"SORTIE_AUTH_LOGIN_MAX_FAILURES_PER_IP must be at least", "SORTIE_AUTH_LOGIN_USER_CEILING must be 0", "SORTIE_AUTH_LOGIN_WINDOW"},
		},
		"trusted proxies that are not addresses": {
			env: map[string]string{
				"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys,
				"SORTIE_TRUSTED_PROXIES": "10.0.0.0/8, ingress-nginx ,10.0.0.0/33,*",
			},
			want: []string{`"ingress-nginx" is not an IP address or CIDR`, `"10.0.0.0/33"`, `"*"`},
		},
		"unparsable duration": {
			env:  map[string]string{"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_AUTH_TOKEN_TTL": "a month"},
			want: []string{"SORTIE_AUTH_TOKEN_TTL"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, tc.env)
			if err == nil {
				t.Fatal("Load accepted an unsafe configuration")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadModes(t *testing.T) {
	keys := t.TempDir()
	clientsFile := writeFile(t, `{"mission-control":"a-secret-of-at-least-24-chars","workspace-operator":"another-secret-of-24-chars"}`)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("from-a-secret-file\n"), 0o600)
	tests := map[string]struct {
		env      map[string]string
		args     []string
		wantMode Mode
		check    func(*testing.T, *Config)
	}{
		"dev mode needs nothing else": {
			env: map[string]string{"SORTIE_AUTH_DEV_MODE": "true"}, wantMode: ModeDisabled,
		},
		"single password from a file": {
			env:      map[string]string{"SORTIE_AUTH_PASSWORD_FILE": pwFile, "SORTIE_AUTH_KEYS_DIR": keys},
			wantMode: ModeSingleTenant,
			check: func(t *testing.T, c *Config) {
				if c.Password != "from-a-secret-file" {
					t.Errorf("password = %q, want the file's trimmed content", c.Password)
				}
			},
		},
		"users file": {
			env: map[string]string{"SORTIE_AUTH_USERS_FILE": "/etc/sortie/users.json", "SORTIE_AUTH_KEYS_DIR": keys}, wantMode: ModeMultiUser,
		},
		"generate key into a folder that does not exist yet": {
			env: map[string]string{"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": filepath.Join(keys, "new"), "SORTIE_AUTH_GENERATE_KEY": "true"}, wantMode: ModeSingleTenant,
		},
		"defaults and a flag override": {
			env:      map[string]string{"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys, "SORTIE_AUTH_TOKEN_TTL": "48h"},
			args:     []string{"-token-ttl=72h"},
			wantMode: ModeSingleTenant,
			check: func(t *testing.T, c *Config) {
				if c.TokenTTL != 72*time.Hour || c.ServiceTokenTTL != 5*time.Minute || c.LoginMaxFailures != 5 || c.Issuer != "sortie-auth" || c.ReloadEvery != 15*time.Second {
					t.Errorf("config = %+v", c)
				}
				if !slices.Equal(c.DelegatingClients, []string{"mission-control"}) {
					t.Errorf("delegating clients = %v, want mission-control by default", c.DelegatingClients)
				}
				if c.LoginMaxFailuresPerIP != 50 || c.LoginUserCeiling != 100 || c.LoginWindow != 15*time.Minute {
					t.Errorf("login limits = %d per address, %d per user, %v", c.LoginMaxFailuresPerIP, c.LoginUserCeiling, c.LoginWindow)
				}
				if len(c.TrustedProxies) != 0 {
					t.Errorf("trusted proxies = %v, want none by default (the socket's address is the client's)", c.TrustedProxies)
				}
			},
		},
		"trusted proxies and no ceiling": {
			env: map[string]string{
				"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys,
				"SORTIE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,fd00::/8,::1", "SORTIE_AUTH_LOGIN_USER_CEILING": "0",
			},
			wantMode: ModeSingleTenant,
			check: func(t *testing.T, c *Config) {
				if !slices.Equal(c.TrustedProxies, []string{"127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"}) || c.LoginUserCeiling != 0 {
					t.Errorf("trusted proxies = %v, ceiling %d", c.TrustedProxies, c.LoginUserCeiling)
				}
			},
		},
		"delegating clients from the clients file": {
			env: map[string]string{
				"SORTIE_AUTH_USERS_FILE": "/etc/sortie/users.json", "SORTIE_AUTH_KEYS_DIR": keys,
				"SORTIE_AUTH_CLIENTS_FILE": clientsFile, "SORTIE_AUTH_DELEGATING_CLIENTS": "workspace-operator, mission-control",
			},
			wantMode: ModeMultiUser,
			check: func(t *testing.T, c *Config) {
				if !slices.Equal(c.DelegatingClients, []string{"workspace-operator", "mission-control"}) {
					t.Errorf("delegating clients = %v", c.DelegatingClients)
				}
			},
		},
		"nobody may delegate": {
			env: map[string]string{
				"SORTIE_AUTH_PASSWORD": "long-enough-pw", "SORTIE_AUTH_KEYS_DIR": keys,
				"SORTIE_AUTH_CLIENTS_FILE": clientsFile, "SORTIE_AUTH_DELEGATING_CLIENTS": "",
			},
			wantMode: ModeSingleTenant,
			check: func(t *testing.T, c *Config) {
				if len(c.DelegatingClients) != 0 {
					t.Errorf("delegating clients = %v, want none", c.DelegatingClients)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := load(t, tc.env, tc.args...)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.Mode() != tc.wantMode {
				t.Errorf("mode = %s, want %s", c.Mode(), tc.wantMode)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
