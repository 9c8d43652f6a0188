package rest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api"
	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/kit/testwait"
)

// startOnAPIServer serves the API from the package's apiserver, in a
// namespace of the test's own.
func startOnAPIServer(t *testing.T) *restEnv {
	t.Helper()
	k := kube.Get(t)
	return startREST(t, k.Config, k.Namespace(t), nil)
}

func TestRoutesMatchSpec(t *testing.T) {
	e := startOnAPIServer(t)
	openapitest.Load(t, api.OpenAPI).CheckRoutes(t, e.srv.Engine.Routes(), []string{"/api/workspaces", "/api/stats"}, server.OperationalPaths...)
}

func TestWorkspaceCRUD(t *testing.T) {
	e := startOnAPIServer(t)
	ctx := context.Background()

	// The default host workspace always exists, with the nil UUID.
	var list []Workspace
	e.do("GET", "/api/workspaces", nil).Decode(t, &list)
	if len(list) != 1 || list[0].ID != DefaultID || list[0].Name != "host" || list[0].WorkspaceType != "host" {
		t.Fatalf("list = %+v, want just the default host workspace", list)
	}

	r := e.do("POST", "/api/workspaces", map[string]any{
		"name": "My Project", "workspace_type": "container", "distro": "bookworm",
		"env_vars": map[string]string{"KEY": "VALUE"}, "init_script": "#!/bin/bash\napt install -y nodejs", "skills": []string{"skill-1"},
	})
	if r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var created Workspace
	r.Decode(t, &created)
	if created.Name != "My Project" || created.WorkspaceType != "container" || *created.Distro != "debian-bookworm" ||
		created.Status != "pending" || created.EnvVars["KEY"] != "VALUE" || created.Skills[0] != "skill-1" || created.Path != "/workspace" {
		t.Errorf("created = %+v", created)
	}
	// REST made it, kubectl sees it: the id is the object's uid.
	var wl v1alpha1.WorkspaceList
	if err := e.client.List(ctx, &wl, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	var obj *v1alpha1.Workspace
	for i := range wl.Items {
		if string(wl.Items[i].UID) == created.ID {
			obj = &wl.Items[i]
		}
	}
	if obj == nil || obj.Spec.DisplayName != "My Project" || !strings.HasPrefix(obj.Name, "my-project-") {
		t.Fatalf("no Workspace object with uid %s (%+v)", created.ID, obj)
	}

	// kubectl made it, REST lists it.
	applied := &v1alpha1.Workspace{
		ObjectMeta: metav1.ObjectMeta{Name: "from-yaml", Namespace: e.ns},
		Spec:       v1alpha1.WorkspaceSpec{DisplayName: "applied", Path: "/srv/applied"},
	}
	if err := e.client.Create(ctx, applied); err != nil {
		t.Fatal(err)
	}
	eventuallyListed(t, e, string(applied.UID))

	var got Workspace
	e.do("GET", "/api/workspaces/"+created.ID, nil).Decode(t, &got)
	if got.ID != created.ID || got.CreatedAt == "" {
		t.Errorf("get = %+v", got)
	}
	e.do("GET", "/api/workspaces", nil).Decode(t, &list)
	if len(list) != 3 || list[0].ID != DefaultID || list[1].Name != "applied" || list[2].Name != "My Project" {
		t.Errorf("list order = %v; want host first, then by name", names(list))
	}

	r = e.do("PUT", "/api/workspaces/"+created.ID, map[string]any{"name": "Renamed", "env_vars": map[string]string{"A": "1"}, "init_script": ""})
	var updated Workspace
	r.Decode(t, &updated)
	if r.Status != 200 || updated.Name != "Renamed" || len(updated.EnvVars) != 1 || updated.InitScript != nil || updated.Skills[0] != "skill-1" {
		t.Errorf("update: %d %+v", r.Status, updated)
	}

	r = e.do("POST", "/api/workspaces/"+created.ID+"/build", map[string]any{"distro": "ubuntu-jammy", "rebuild": true})
	var built Workspace
	r.Decode(t, &built)
	if r.Status != 200 || built.Status != "building" || *built.Distro != "ubuntu-jammy" {
		t.Errorf("build: %d %+v", r.Status, built)
	}
	if err := e.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil || obj.Spec.Rebuild != 1 {
		t.Errorf("build did not bump spec.rebuild: %d %v", obj.Spec.Rebuild, err)
	}

	if r := e.do("DELETE", "/api/workspaces/"+DefaultID, nil); r.Status != 400 {
		t.Errorf("deleting the default workspace: %d, want 400", r.Status)
	}
	if r := e.do("DELETE", "/api/workspaces/"+created.ID, nil); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	eventuallyGone(t, e, created.ID)
}

func names(list []Workspace) []string {
	var out []string
	for _, w := range list {
		out = append(out, w.Name)
	}
	return out
}

// restSettle bounds how long the API takes to see a change made through
// the apiserver (its cache).
const restSettle = 10 * time.Second

func eventuallyListed(t *testing.T, e *restEnv, id string) {
	t.Helper()
	testwait.Eventually(t, restSettle, "workspace "+id+" appears over REST", func() (bool, string) {
		r := e.do("GET", "/api/workspaces/"+id, nil)
		return r.Status == 200, fmt.Sprintf("%d %s", r.Status, r.Body)
	})
}

func eventuallyGone(t *testing.T, e *restEnv, id string) {
	t.Helper()
	testwait.Eventually(t, restSettle, "workspace "+id+" gone over REST after delete", func() (bool, string) {
		r := e.do("GET", "/api/workspaces/"+id, nil)
		return r.Status == 404, fmt.Sprintf("%d %s", r.Status, r.Body)
	})
}

func TestBadInput(t *testing.T) {
	e := startOnAPIServer(t)
	var c Workspace
	e.do("POST", "/api/workspaces", map[string]any{"name": "box", "workspace_type": "container"}).Decode(t, &c)
	var host Workspace
	e.do("POST", "/api/workspaces", map[string]any{"name": "dir", "path": "/workspaces/dir/"}).Decode(t, &host)
	if *c.Distro != "ubuntu-noble" || host.Path != "/workspaces/dir" || host.Distro != nil {
		t.Fatalf("defaults: container distro %v, host %+v", c.Distro, host)
	}
	tests := map[string]struct {
		method, path string
		body         any
		want         int
		code         string
	}{
		"no name":            {"POST", "/api/workspaces", map[string]any{"workspace_type": "host"}, 400, "bad_request"},
		"name with slash":    {"POST", "/api/workspaces", map[string]any{"name": "a/b"}, 400, "bad_request"},
		"name with dots":     {"POST", "/api/workspaces", map[string]any{"name": "..x"}, 400, "bad_request"},
		"leading dot":        {"POST", "/api/workspaces", map[string]any{"name": ".hidden"}, 400, "bad_request"},
		"unknown distro":     {"POST", "/api/workspaces", map[string]any{"name": "x", "workspace_type": "container", "distro": "windows"}, 400, "bad_request"},
		"unknown type":       {"POST", "/api/workspaces", map[string]any{"name": "x", "workspace_type": "vm"}, 400, "bad_request"},
		"host with distro":   {"POST", "/api/workspaces", map[string]any{"name": "x", "distro": "ubuntu-noble"}, 400, "bad_request"},
		"relative path":      {"POST", "/api/workspaces", map[string]any{"name": "x", "path": "work"}, 400, "bad_request"},
		"traversal path":     {"POST", "/api/workspaces", map[string]any{"name": "x", "path": "/workspaces/../etc"}, 400, "bad_request"},
		"path outside root":  {"POST", "/api/workspaces", map[string]any{"name": "x", "path": "/srv/dir"}, 400, "bad_request"},
		"root prefix only":   {"POST", "/api/workspaces", map[string]any{"name": "x", "path": "/workspacesX"}, 400, "bad_request"},
		"rerun a host":       {"POST", "/api/workspaces/" + host.ID + "/rerun-init", nil, 400, "not_a_container"},
		"host cwd escape":    {"POST", "/api/workspaces/" + host.ID + "/exec", map[string]any{"command": "true", "cwd": "../other"}, 400, "bad_request"},
		"host abs cwd":       {"POST", "/api/workspaces/" + host.ID + "/exec", map[string]any{"command": "true", "cwd": "/etc"}, 400, "bad_request"},
		"process id":         {"POST", "/api/workspaces/" + c.ID + "/processes", map[string]any{"command": "true", "id": "a/b"}, 400, "bad_request"},
		"bad env name":       {"POST", "/api/workspaces", map[string]any{"name": "x", "env_vars": map[string]string{"A-B": "1"}}, 400, "bad_request"},
		"bad skill":          {"POST", "/api/workspaces", map[string]any{"name": "x", "skills": []string{"../x"}}, 400, "bad_request"},
		"template":           {"POST", "/api/workspaces", map[string]any{"name": "x", "template": "node"}, 503, "library_unavailable"},
		"malformed":          {"POST", "/api/workspaces", `{"name":`, 400, "invalid_json"},
		"wrong type":         {"POST", "/api/workspaces", `{"name": 5}`, 400, "invalid_json"},
		"unknown id":         {"GET", "/api/workspaces/nope", nil, 404, "not_found"},
		"unknown id put":     {"PUT", "/api/workspaces/nope", map[string]any{"name": "y"}, 404, "not_found"},
		"unknown id exec":    {"POST", "/api/workspaces/nope/exec", map[string]any{"command": "true"}, 404, "not_found"},
		"empty command":      {"POST", "/api/workspaces/" + c.ID + "/exec", map[string]any{"command": " "}, 400, "bad_request"},
		"timeout too long":   {"POST", "/api/workspaces/" + c.ID + "/exec", map[string]any{"command": "true", "timeout_secs": 601}, 400, "bad_request"},
		"exec when pending":  {"POST", "/api/workspaces/" + c.ID + "/exec", map[string]any{"command": "true"}, 409, "workspace_not_ready"},
		"build a host":       {"POST", "/api/workspaces/" + host.ID + "/build", nil, 400, "not_a_container"},
		"build bad distro":   {"POST", "/api/workspaces/" + c.ID + "/build", map[string]any{"distro": "plan9"}, 400, "bad_request"},
		"distro for a host":  {"PUT", "/api/workspaces/" + host.ID, map[string]any{"distro": "ubuntu-noble"}, 400, "bad_request"},
		"rename to nothing":  {"PUT", "/api/workspaces/" + c.ID, map[string]any{"name": ""}, 400, "bad_request"},
		"sync, no library":   {"POST", "/api/workspaces/" + c.ID + "/sync", nil, 503, "library_unavailable"},
		"rerun when pending": {"POST", "/api/workspaces/" + c.ID + "/rerun-init", nil, 409, "workspace_not_ready"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			if r.Status != tc.want || r.Code(t) != tc.code {
				t.Errorf("got %d %s, want %d %s", r.Status, r.Body, tc.want, tc.code)
			}
		})
	}
	// init-log of a workspace with no pod yet: an empty log, not an error.
	var l struct {
		Exists bool `json:"exists"`
	}
	if r := e.do("GET", "/api/workspaces/"+host.ID+"/init-log", nil); r.Status != 200 {
		t.Errorf("init-log of a host workspace: %d", r.Status)
	} else if r.Decode(t, &l); l.Exists {
		t.Error("a host workspace has no init log")
	}
	if r := e.do("GET", "/api/workspaces/"+c.ID+"/debug", nil); r.Status != 200 {
		t.Errorf("debug: %d %s", r.Status, r.Body)
	}

	e.token = ""
	for _, p := range []string{"/api/workspaces", "/api/workspaces/" + c.ID} {
		if r := e.do("GET", p, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", p, r.Status)
		}
	}
}
