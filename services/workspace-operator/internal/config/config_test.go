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

func TestWorkloadSettings(t *testing.T) {
	base := map[string]string{"SORTIE_AUTH_DEV_MODE": "true"}
	c, err := load(base)
	if err != nil {
		t.Fatal(err)
	}
	w := c.Workload
	if got := w.Requests.Cpu().String() + " " + w.Requests.Memory().String() + " " + w.Requests.StorageEphemeral().String(); got != "10m 128Mi 256Mi" {
		t.Errorf("default requests %s", got)
	}
	if got := w.Limits.Cpu().String() + " " + w.Limits.Memory().String() + " " + w.Limits.StorageEphemeral().String(); got != "2 4Gi 10Gi" {
		t.Errorf("default limits %s", got)
	}
	if got := w.Max.Cpu().String() + " " + w.Max.Memory().String() + " " + w.Max.StorageEphemeral().String(); got != "8 16Gi 50Gi" {
		t.Errorf("default maxima %s", got)
	}
	if len(w.RuntimeClasses) != 0 || w.RuntimeClass != "" || !w.RuntimeClassAllowed("anything") {
		t.Errorf("runtime classes by default: %+v", w)
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want string // "" = accepted
	}{
		"own values": {env: map[string]string{"SORTIE_WORKSPACE_REQUESTS": "cpu=1, memory=1Gi", "SORTIE_WORKSPACE_LIMITS": "cpu=2",
			"SORTIE_WORKSPACE_MAX_RESOURCES": "cpu=2,memory=2Gi", "SORTIE_WORKSPACE_CAPABILITIES": "cap_chown,SETUID,chown",
			"SORTIE_WORKSPACE_RUNTIME_CLASSES": "gvisor,kata", "SORTIE_WORKSPACE_RUNTIME_CLASS": "kata"}},
		"unknown resource":           {env: map[string]string{"SORTIE_WORKSPACE_LIMITS": "nvidia.com/gpu=1"}, want: "not cpu, memory or ephemeral-storage"},
		"not a pair":                 {env: map[string]string{"SORTIE_WORKSPACE_REQUESTS": "cpu"}, want: `"cpu" is not name=quantity`},
		"not a quantity":             {env: map[string]string{"SORTIE_WORKSPACE_LIMITS": "memory=lots"}, want: "not a plain quantity"},
		"zero":                       {env: map[string]string{"SORTIE_WORKSPACE_LIMITS": "memory=0"}, want: "not a positive quantity"},
		"negative":                   {env: map[string]string{"SORTIE_WORKSPACE_MAX_RESOURCES": "cpu=-1"}, want: "not a plain quantity"},
		"huge exponent":              {env: map[string]string{"SORTIE_WORKSPACE_LIMITS": "cpu=1e1444444444444444440"}, want: "not a plain quantity"},
		"twice":                      {env: map[string]string{"SORTIE_WORKSPACE_REQUESTS": "cpu=1,cpu=2"}, want: "cpu is given twice"},
		"request above limit":        {env: map[string]string{"SORTIE_WORKSPACE_REQUESTS": "cpu=3"}, want: "cpu=3 is above its limit 2"},
		"limit above maximum":        {env: map[string]string{"SORTIE_WORKSPACE_LIMITS": "memory=32Gi"}, want: "memory=32Gi is above its maximum 16Gi"},
		"capability beyond baseline": {env: map[string]string{"SORTIE_WORKSPACE_CAPABILITIES": "CHOWN,SYS_ADMIN"}, want: "SYS_ADMIN is not one Pod Security baseline allows"},
		"net raw":                    {env: map[string]string{"SORTIE_WORKSPACE_CAPABILITIES": "NET_RAW"}, want: "NET_RAW is not one"},
		"bad runtime class":          {env: map[string]string{"SORTIE_WORKSPACE_RUNTIME_CLASSES": "gVisor"}, want: `"gVisor" is not a RuntimeClass name`},
		"default class not allowed":  {env: map[string]string{"SORTIE_WORKSPACE_RUNTIME_CLASSES": "gvisor", "SORTIE_WORKSPACE_RUNTIME_CLASS": "kata"}, want: `"kata" is not in SORTIE_WORKSPACE_RUNTIME_CLASSES`},
		"default class not a label":  {env: map[string]string{"SORTIE_WORKSPACE_RUNTIME_CLASS": "a_b"}, want: "not a RuntimeClass name"},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range tc.env {
			env[k] = v
		}
		c, err := load(env)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		case tc.want == "" && name == "own values":
			w := c.Workload
			if w.Requests.Cpu().String() != "1" || !w.Limits.Memory().IsZero() || len(w.Capabilities) != 2 ||
				w.Capabilities[0] != "CHOWN" || w.Capabilities[1] != "SETUID" || w.RuntimeClassAllowed("runc") || !w.RuntimeClassAllowed("gvisor") {
				t.Errorf("own values read as %+v", w)
			}
		}
	}
}

func TestExecMaxOutput(t *testing.T) {
	for in, want := range map[string]int64{"": 10 << 20, "1": 1, "1048576": 1 << 20, "64Mi": 64 << 20, "256Mi": 256 << 20} {
		env := map[string]string{"SORTIE_AUTH_DEV_MODE": "true"}
		if in != "" {
			env["SORTIE_EXEC_MAX_OUTPUT"] = in
		}
		c, err := load(env)
		if err != nil || c.ExecMaxOutput != want {
			t.Errorf("%q: %v %v, want %d", in, c, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "257Mi", "1Gi", "lots", "1e1444444444444444440"} {
		if _, err := load(map[string]string{"SORTIE_AUTH_DEV_MODE": "true", "SORTIE_EXEC_MAX_OUTPUT": in}); err == nil || !strings.Contains(err.Error(), "SORTIE_EXEC_MAX_OUTPUT") {
			t.Errorf("%q: %v, want refused", in, err)
		}
	}
}
