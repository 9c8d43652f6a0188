package rest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/config"
	"sortie.dev/services/workspace-operator/internal/library"
)

// testWorkload is the operator's workload settings for a test, with env on
// top of the defaults.
func testWorkload(t *testing.T, env map[string]string) *config.Workload {
	t.Helper()
	all := map[string]string{"SORTIE_AUTH_DEV_MODE": "true"}
	for k, v := range env {
		all[k] = v
	}
	c, err := config.Load(nil, func(k string) (string, bool) { v, ok := all[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return &c.Workload
}

// templateLibrary serves workspace templates as the library does.
func templateLibrary(t *testing.T, templates map[string]map[string]any) *library.Client {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/library/workspace-template/{name}", func(w http.ResponseWriter, r *http.Request) {
		tpl, ok := templates[r.PathValue("name")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not found","code":"not_found"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(tpl)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &library.Client{BaseURL: srv.URL, HTTP: &http.Client{Timeout: testwait.Scaled(time.Minute)}}
}

// workspaceCount is how many Workspaces the test's namespace holds.
func workspaceCount(t *testing.T, e *restEnv) int {
	t.Helper()
	var wl v1alpha1.WorkspaceList
	if err := e.client.List(context.Background(), &wl, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	return len(wl.Items)
}

// TestWorkspaceWorkload: a create body's resources and a template's
// resources and RuntimeClass reach the spec within the operator's bounds;
// anything beyond them, and env vars that would steer the agent, are
// refused with 400 and no Workspace is made or changed.
func TestWorkspaceWorkload(t *testing.T) {
	lib := templateLibrary(t, map[string]map[string]any{
		"big": {"name": "big", "skills": []string{}, "init_scripts": []string{},
			"resources":          map[string]any{"requests": map[string]string{"cpu": "1"}, "limits": map[string]string{"cpu": "3", "memory": "6Gi"}},
			"runtime_class_name": "gvisor"},
		"huge":     {"name": "huge", "resources": map[string]any{"limits": map[string]string{"memory": "64Gi"}}},
		"runc":     {"name": "runc", "runtime_class_name": "runc"},
		"steering": {"name": "steering", "env_vars": map[string]string{"SORTIE_AGENT_ROOTS": "/"}},
	})
	e := startREST(t, kube.Get(t).Config, kube.Get(t).Namespace(t), func(_ ctrl.Manager, h *Handler) {
		h.Library = lib
		h.Workload = testWorkload(t, map[string]string{
			"SORTIE_WORKSPACE_MAX_RESOURCES":   "cpu=4,memory=8Gi,ephemeral-storage=20Gi",
			"SORTIE_WORKSPACE_RUNTIME_CLASSES": "gvisor,kata",
		})
	})
	ctx := context.Background()
	spec := func(id string) v1alpha1.WorkspaceSpec {
		t.Helper()
		var wl v1alpha1.WorkspaceList
		if err := e.client.List(ctx, &wl, client.InNamespace(e.ns)); err != nil {
			t.Fatal(err)
		}
		for _, ws := range wl.Items {
			if string(ws.UID) == id {
				return ws.Spec
			}
		}
		t.Fatalf("no workspace %s", id)
		return v1alpha1.WorkspaceSpec{}
	}

	// Accepted: the body's own resources (strings or numbers).
	r := e.do("POST", "/api/workspaces", map[string]any{"name": "sized", "workspace_type": "container",
		"resources": map[string]any{"requests": map[string]any{"cpu": "500m", "memory": "1Gi"}, "limits": map[string]any{"cpu": 2, "ephemeral-storage": "20Gi"}}})
	if r.Status != 200 {
		t.Fatalf("create with resources: %d %s", r.Status, r.Body)
	}
	var sized Workspace
	r.Decode(t, &sized)
	s := spec(sized.ID)
	if s.Resources == nil || s.Resources.Requests.CPU.String() != "500m" || s.Resources.Requests.Memory.String() != "1Gi" ||
		s.Resources.Limits.CPU.String() != "2" || s.Resources.Limits.EphemeralStorage.String() != "20Gi" {
		t.Errorf("spec resources %+v", s.Resources)
	}
	if sized.Resources == nil || sized.Resources.Limits["cpu"] != "2" || sized.Resources.Requests["memory"] != "1Gi" || sized.RuntimeClassName != nil {
		t.Errorf("answer resources %+v, runtime class %v", sized.Resources, sized.RuntimeClassName)
	}
	// A template's resources and RuntimeClass; the body's resources win over them.
	var fromTemplate, own Workspace
	e.do("POST", "/api/workspaces", map[string]any{"name": "t1", "template": "big"}).Decode(t, &fromTemplate)
	if s := spec(fromTemplate.ID); s.RuntimeClassName != "gvisor" || s.Resources == nil || s.Resources.Limits.Memory.String() != "6Gi" || s.Resources.Requests.CPU.String() != "1" {
		t.Errorf("from the template: runtime class %q, resources %+v", s.RuntimeClassName, s.Resources)
	}
	e.do("POST", "/api/workspaces", map[string]any{"name": "t2", "template": "big", "resources": map[string]any{"limits": map[string]any{"cpu": "4"}}}).Decode(t, &own)
	if s := spec(own.ID); s.Resources == nil || s.Resources.Limits.CPU.String() != "4" || s.Resources.Limits.Memory != nil || s.RuntimeClassName != "gvisor" {
		t.Errorf("the body's resources over the template's: %+v %q", s.Resources, s.RuntimeClassName)
	}

	before := workspaceCount(t, e)
	tests := map[string]struct {
		body map[string]any
		code string
		msg  string
	}{
		"limit above the maximum": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"limits": map[string]any{"memory": "9Gi"}}},
			code: "resources_above_maximum", msg: "the memory limit 9Gi is above the maximum 8Gi"},
		"request above the maximum": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"requests": map[string]any{"cpu": 64}}},
			code: "resources_above_maximum", msg: "the cpu request 64 is above the maximum 4"},
		"a template above the maximum": {body: map[string]any{"name": "x", "template": "huge"}, code: "resources_above_maximum", msg: "64Gi"},
		"request above its limit": {body: map[string]any{"name": "x", "workspace_type": "container",
			"resources": map[string]any{"requests": map[string]any{"cpu": "2"}, "limits": map[string]any{"cpu": "1"}}}, code: "bad_request", msg: "above its limit"},
		"unknown resource": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"limits": map[string]any{"nvidia.com/gpu": "1"}}},
			code: "bad_request", msg: "not cpu, memory or ephemeral-storage"},
		"not a quantity": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"limits": map[string]any{"memory": "lots"}}},
			code: "bad_request", msg: "not a plain quantity"},
		// resource.ParseQuantity does not return on it: refused unparsed.
		"a huge exponent": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"limits": map[string]any{"cpu": "1e1444444444444444440"}}},
			code: "bad_request", msg: "not a plain quantity"},
		"a huge exponent as a number": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"limits": map[string]any{"cpu": json.RawMessage("1e1444444444444444440")}}},
			code: "bad_request", msg: "not a plain quantity"},
		"zero": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"limits": map[string]any{"memory": 0}}},
			code: "bad_request", msg: "must be positive"},
		"negative": {body: map[string]any{"name": "x", "workspace_type": "container", "resources": map[string]any{"requests": map[string]any{"cpu": "-1"}}},
			code: "bad_request", msg: "not a plain quantity"},
		"a host workspace": {body: map[string]any{"name": "x", "resources": map[string]any{"limits": map[string]any{"cpu": "1"}}},
			code: "bad_request", msg: "container workspaces"},
		"a RuntimeClass not allowed": {body: map[string]any{"name": "x", "template": "runc"}, code: "bad_request", msg: "is not one the operator allows"},
		"an agent setting":           {body: map[string]any{"name": "x", "env_vars": map[string]string{"SORTIE_AGENT_TOKEN": "known"}}, code: "reserved_env_var", msg: "SORTIE_AGENT_TOKEN"},
		"the agent's address":        {body: map[string]any{"name": "x", "workspace_type": "container", "env_vars": map[string]string{"OK": "1", "SORTIE_AGENT_ADDR": ":1"}}, code: "reserved_env_var", msg: "SORTIE_AGENT_ADDR"},
		"the workspace name":         {body: map[string]any{"name": "x", "env_vars": map[string]string{"SORTIE_WORKSPACE_NAME": "y"}}, code: "reserved_env_var", msg: "SORTIE_WORKSPACE_NAME"},
		"the workspace marker":       {body: map[string]any{"name": "x", "env_vars": map[string]string{"SORTIE_WORKSPACE": "0"}}, code: "reserved_env_var", msg: "SORTIE_WORKSPACE"},
		"a template's agent setting": {body: map[string]any{"name": "x", "template": "steering"}, code: "reserved_env_var", msg: "SORTIE_AGENT_ROOTS"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.do("POST", "/api/workspaces", tc.body)
			if r.Status != 400 || r.Code(t) != tc.code || !strings.Contains(string(r.Body), tc.msg) {
				t.Errorf("got %d %s, want 400 %s with %q", r.Status, r.Body, tc.code, tc.msg)
			}
		})
	}
	if n := workspaceCount(t, e); n != before {
		t.Errorf("%d workspaces after the refused creates, want %d", n, before)
	}

	// An update cannot set an agent setting either, and changes nothing.
	r = e.do("PUT", "/api/workspaces/"+sized.ID, map[string]any{"name": "renamed", "env_vars": map[string]string{"SORTIE_AGENT_EXEC_MAX_OUTPUT": "100Gi"}})
	if r.Status != 400 || r.Code(t) != "reserved_env_var" {
		t.Errorf("update with an agent setting: %d %s", r.Status, r.Body)
	}
	if s := spec(sized.ID); s.DisplayName != "sized" || len(s.EnvVars) != 0 {
		t.Errorf("the refused update changed the workspace: %q %v", s.DisplayName, s.EnvVars)
	}
}
