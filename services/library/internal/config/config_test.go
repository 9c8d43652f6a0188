package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sortie.dev/services/kit/config"
)

func load(env map[string]string) (*Config, error) {
	return Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func TestDefaults(t *testing.T) {
	c, err := load(map[string]string{"SORTIE_AUTH_DEV_MODE": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Branch != "main" || c.ConfigMapNamespace != "sortie-workspaces" || c.ConfigMapName != "sortie-library-revision" ||
		c.RepoDir() != "/var/lib/sortie/library/repo" || !c.Seed || c.Sealer != nil {
		t.Errorf("defaults: %+v", c)
	}
}

func TestEveryProblemIsReported(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "key")
	if err := os.WriteFile(badKey, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyToken := filepath.Join(dir, "token")
	if err := os.WriteFile(emptyToken, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		env  map[string]string
		want []string
	}{
		"no auth": {map[string]string{}, []string{"SORTIE_AUTH_JWKS_URL is required"}},
		"token and key": {map[string]string{
			"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_LIBRARY_REMOTE": "git@github.com:o/r.git",
			"SORTIE_LIBRARY_GIT_TOKEN_FILE": emptyToken, "SORTIE_LIBRARY_SSH_KEY_FILE": filepath.Join(dir, "nope"),
			"SORTIE_LIBRARY_ENCRYPTION_KEY_FILE": badKey, "SORTIE_LIBRARY_BRANCH": "a..b", "SORTIE_LIBRARY_REMOTE_TIMEOUT": "1ms",
		}, []string{
			"not both", "SORTIE_LIBRARY_GIT_TOKEN_FILE needs an https:// remote", "SORTIE_LIBRARY_GIT_TOKEN_FILE is empty",
			"SORTIE_LIBRARY_SSH_KEY_FILE:", "SORTIE_LIBRARY_SSH_KNOWN_HOSTS_FILE is required", "SORTIE_LIBRARY_ENCRYPTION_KEY_FILE:",
			"SORTIE_LIBRARY_BRANCH", "SORTIE_LIBRARY_REMOTE_TIMEOUT",
		}},
		"password in URL": {map[string]string{"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_LIBRARY_REMOTE": "https://u:p@example.com/r.git"}, []string{"must not carry a password"}},
		"ssh key on https": {map[string]string{"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_LIBRARY_REMOTE": "https://example.com/r.git", "SORTIE_LIBRARY_SSH_KEY_FILE": emptyToken, "SORTIE_LIBRARY_SSH_KNOWN_HOSTS_FILE": emptyToken},
			[]string{"SORTIE_LIBRARY_SSH_KEY_FILE needs an SSH remote"}},
		"not a remote":  {map[string]string{"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_LIBRARY_REMOTE": "relative/path"}, []string{"is not a URL"}},
		"bad log level": {map[string]string{"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_LOG_LEVEL": "loud"}, []string{"log level"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := load(tc.env)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("want a config error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			if len(ce.Problems) < len(tc.want) {
				t.Errorf("%d problems for %d expected", len(ce.Problems), len(tc.want))
			}
		})
	}
}

func TestRemoteKinds(t *testing.T) {
	for remote, want := range map[string]string{
		"": "", "https://github.com/o/r.git": "https", "ssh://git@h/r.git": "ssh", "git@github.com:o/r.git": "ssh",
		"/srv/git/r.git": "file", "file:///srv/r.git": "file", "r.git": "invalid",
	} {
		if got := remoteKind(remote); got != want {
			t.Errorf("remoteKind(%q) = %q, want %q", remote, got, want)
		}
	}
}
