package api

import (
	"regexp"
	"testing"
)

func TestServiceFor(t *testing.T) {
	tests := map[string]struct {
		path, want string
		ok         bool
	}{
		"a prefix itself":       {"/api/health", ServiceMissionControl, true},
		"below a prefix":        {"/api/workspaces/00000000-0000-0000-0000-000000000000/exec", ServiceWorkspaceOperator, true},
		"auth":                  {"/api/auth/login", ServiceAuth, true},
		"library":               {"/api/library/skill/x", ServiceLibrary, true},
		"control stream":        {"/api/control/stream", ServiceMissionControl, true},
		"not at a segment":      {"/api/authx", "", false},
		"unknown api":           {"/api/nope", "", false},
		"outside the api":       {"/metrics", "", false},
		"the api root":          {"/api", "", false},
		"trailing slash prefix": {"/api/stats/", ServiceWorkspaceOperator, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := ServiceFor(tc.path)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ServiceFor(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// Every public route in the spec has a service behind the ingress.
func TestEverySpecPathIsRouted(t *testing.T) {
	paths := regexp.MustCompile(`(?m)^  (/[^:]+):\s*$`).FindAllStringSubmatch(string(OpenAPI), -1)
	if len(paths) < 10 {
		t.Fatalf("found only %d paths in openapi.yaml", len(paths))
	}
	for _, m := range paths {
		if _, ok := ServiceFor(m[1]); !ok {
			t.Errorf("%s is in api/openapi.yaml but no route sends it to a service", m[1])
		}
	}
}

func TestServices(t *testing.T) {
	want := []string{ServiceAuth, ServiceMissionControl, ServiceWorkspaceOperator, ServiceLibrary}
	got := Services()
	if len(got) != len(want) {
		t.Fatalf("Services() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Services() = %v, want %v", got, want)
		}
	}
}
