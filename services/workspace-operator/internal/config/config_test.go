package config

import (
	"strings"
	"testing"
)

func load(env map[string]string) (*Config, error) {
	return Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func TestAuthMode(t *testing.T) {
	base := map[string]string{"SORTIE_AUTH_JWKS_URL": "http://auth/jwks"}
	with := func(k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range base {
			out[a] = b
		}
		return out
	}
	for name, tc := range map[string]struct {
		env   map[string]string
		mode  string
		multi bool
	}{
		"default":    {base, AuthSingleTenant, false},
		"dev mode":   {map[string]string{"SORTIE_AUTH_DEV_MODE": "true"}, AuthDisabled, false},
		"single":     {with("SORTIE_AUTH_MODE", "single_tenant"), AuthSingleTenant, false},
		"multi-user": {with("SORTIE_AUTH_MODE", "multi_user"), AuthMultiUser, true},
	} {
		c, err := load(tc.env)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.AuthMode != tc.mode || c.MultiUser() != tc.multi {
			t.Errorf("%s: mode %q multi %v, want %q %v", name, c.AuthMode, c.MultiUser(), tc.mode, tc.multi)
		}
	}
	if _, err := load(with("SORTIE_AUTH_MODE", "multi-user")); err == nil || !strings.Contains(err.Error(), "SORTIE_AUTH_MODE") {
		t.Errorf("a misspelt mode: %v, want refused", err)
	}
}
