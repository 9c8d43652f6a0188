package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFromEnv(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := func(mutate func(*Config)) Config {
		c := Defaults()
		c.Token = "tok"
		if mutate != nil {
			mutate(&c)
		}
		return c
	}
	tests := map[string]struct {
		env     map[string]string
		want    Config
		wantErr bool
	}{
		"defaults":   {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok"}, want: withToken(nil)},
		"token file": {env: map[string]string{"SORTIE_AGENT_TOKEN_FILE": tokenFile, "SORTIE_AGENT_TOKEN": "ignored"}, want: withToken(func(c *Config) { c.Token = "from-file" })},
		"everything": {
			env: map[string]string{
				"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_ADDR": "127.0.0.1:9000", "SORTIE_AGENT_INIT_SCRIPT": "/init.sh",
				"SORTIE_AGENT_INIT_TIMEOUT": "5m", "SORTIE_AGENT_WORKDIR": "/w", "SORTIE_AGENT_STATE_DIR": "/w/.s",
				"SORTIE_AGENT_ROOTS": " /w , /opt ,", "SORTIE_AGENT_EXEC_MAX_OUTPUT": "2Mi", "SORTIE_AGENT_GRACE": "3s",
				"SORTIE_AGENT_CGROUP_ROOT": "/cg", "SORTIE_AGENT_SUBREAPER": "true", "SORTIE_AGENT_LOG_LEVEL": "debug",
			},
			want: withToken(func(c *Config) {
				c.Addr, c.InitScript, c.InitTimeout, c.Workdir, c.StateDir = "127.0.0.1:9000", "/init.sh", 5*time.Minute, "/w", "/w/.s"
				c.Roots, c.ExecMaxOutput, c.Grace, c.CgroupRoot, c.Subreaper, c.LogLevel = []string{"/w", "/opt"}, 2<<20, 3*time.Second, "/cg", true, slog.LevelDebug
			}),
		},
		"plain byte count":         {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_EXEC_MAX_OUTPUT": "1000"}, want: withToken(func(c *Config) { c.ExecMaxOutput = 1000 })},
		"process output":           {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_PROCESS_MAX_OUTPUT": "1Gi"}, want: withToken(func(c *Config) { c.ProcessMaxOutput = 1 << 30 })},
		"exec output too large":    {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_EXEC_MAX_OUTPUT": "1Gi"}, wantErr: true},
		"zero exec output":         {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_EXEC_MAX_OUTPUT": "0"}, wantErr: true},
		"size overflows":           {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_PROCESS_MAX_OUTPUT": "9999999999999Gi"}, wantErr: true},
		"process output too small": {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_PROCESS_MAX_OUTPUT": "64Ki"}, wantErr: true},
		"no token":                 {env: map[string]string{}, wantErr: true},
		"blank token":              {env: map[string]string{"SORTIE_AGENT_TOKEN": "  "}, wantErr: true},
		"empty token file":         {env: map[string]string{"SORTIE_AGENT_TOKEN_FILE": filepath.Join(t.TempDir(), "missing")}, wantErr: true},
		"bad duration":             {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_GRACE": "soon"}, wantErr: true},
		"bad size":                 {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_EXEC_MAX_OUTPUT": "lots"}, wantErr: true},
		"relative workdir":         {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_WORKDIR": "w"}, wantErr: true},
		"relative root":            {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_ROOTS": "/w,tmp"}, wantErr: true},
		"bad subreaper flag":       {env: map[string]string{"SORTIE_AGENT_TOKEN": "tok", "SORTIE_AGENT_SUBREAPER": "maybe"}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := FromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr {
				if err == nil {
					t.Fatalf("FromEnv: no error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FromEnv (-want +got):\n%s", diff)
			}
		})
	}
}
