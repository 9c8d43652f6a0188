package service

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/testwait"
)

// TestTenancyOnNode runs a mission through the real workspace-operator
// with authentication on, in multi-user mode, where the operator itself
// decides who sees which workspace and refuses mission-control's plain
// service token for all of them: alice's turn runs in her own default
// workspace (her own runtime) only because every call carried her
// delegated identity. Bob cannot put a mission in her workspace (404, as
// an unknown one), nor see its processes or their output; an admin, who
// sees her workspace, cannot put one there either (403).
func TestTenancyOnNode(t *testing.T) {
	is := newIssuer(t)
	aliceToken := is.sign(t, "alice", authn.RoleUser)
	op := startOperatorWith(t, map[string]string{"SORTIE_AUTH_DEV_MODE": "false", "SORTIE_AUTH_MODE": "multi_user",
		"SORTIE_AUTH_JWKS_URL": is.url + "/api/auth/jwks"}, aliceToken)
	op.installFakeCLIs(t, defaultWS)
	vars := is.authEnv(t)
	maps.Copy(vars, cliEnv())
	e := start(t, options{workspaces: op.url, env: vars})
	alice, bob, root := e.as(aliceToken), e.as(is.sign(t, "bob", authn.RoleUser)), e.as(is.sign(t, "root", authn.RoleAdmin))
	as := func(token string) *operator { return &operator{url: op.url, token: token} }
	get := func(o *operator, path string) (int, string) {
		t.Helper()
		r, err := o.request("GET", path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}

	// The operator refuses the plain service token, and gives alice her
	// default workspace.
	if code, body := get(as(is.sign(t, "service:mission-control", authn.RoleService)), "/api/workspaces/"+defaultWS); code == 200 {
		t.Fatalf("the operator lets a plain service token into a workspace: %s", body)
	}
	code, body := get(op, "/api/workspaces/"+defaultWS)
	var ws struct{ ID, Owner string }
	json.Unmarshal([]byte(body), &ws)
	if code != 200 || ws.Owner != "alice" {
		t.Fatalf("alice's default workspace: %d %s", code, body)
	}
	// Its own id (the nil UUID is everyone's own default): its uid.
	raw, err := op.cluster.Clientset.CoreV1().RESTClient().Get().AbsPath("/apis/sortie.dev/v1alpha1/namespaces/" + op.ns + "/workspaces").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wl struct {
		Items []struct {
			Metadata struct{ UID string }
			Spec     struct{ Owner string }
		}
	}
	json.Unmarshal(raw, &wl)
	for _, w := range wl.Items {
		if w.Spec.Owner == "alice" {
			ws.ID = w.Metadata.UID
		}
	}
	if code, body := get(op, "/api/workspaces/"+ws.ID); code != 200 || ws.ID == defaultWS {
		t.Fatalf("alice's default workspace by its id %s: %d %s", ws.ID, code, body)
	}

	m := alice.create(t, map[string]any{"backend": "claudecode"})
	dump := "/tmp/env-" + m.ID
	alice.send(t, m.ID, "sleep 4 dump-env "+dump+" then list")
	// While it runs, its process and output are alice's to see, not bob's.
	pid := testwait.For(t, time.Minute, "alice sees the mission's process", func() (string, bool) {
		var list struct{ Processes []struct{ ID string } }
		_, body := get(op, "/api/workspaces/"+ws.ID+"/processes")
		json.Unmarshal([]byte(body), &list)
		for _, p := range list.Processes {
			if strings.HasPrefix(p.ID, "mc-") {
				return p.ID, true
			}
		}
		return body, false
	})
	bobOp := as(is.sign(t, "bob", authn.RoleUser))
	for _, path := range []string{"/api/workspaces/" + ws.ID, "/api/workspaces/" + ws.ID + "/processes",
		"/api/workspaces/" + ws.ID + "/processes/" + pid, "/api/workspaces/" + ws.ID + "/processes/" + pid + "/output"} {
		if code, body := get(bobOp, path); code != 404 {
			t.Errorf("bob GET %s: %d %s, want 404", path, code, body)
		}
	}
	if got := alice.waitStatus(t, m.ID, "completed", "failed"); got.Status != "completed" {
		t.Fatalf("alice's turn: %s; %v\n%s", got.Status, kinds(alice.events(t, m.ID)), tail(op.out.String(), 3000))
	}
	out, code := op.exec(t, defaultWS, "cat "+dump+" && rm -f "+dump, "")
	if code != 0 || !strings.Contains("\n"+out, "\nANTHROPIC_API_KEY=sk-ant-api03-test\n") || strings.Contains(out, "sk-test") || strings.Contains(out, "amp-test") {
		t.Errorf("the CLI's environment (want the anthropic key only):\n%s", out)
	}
	if is.delegations("alice") == 0 {
		t.Error("no delegated token was issued for alice")
	}

	// Missions in alice's workspace, by its id, as bob and as the admin.
	before := len(redisDump(t, e.redis))
	r := bob.do("POST", "/api/control/missions", map[string]any{"workspace_id": ws.ID})
	wantError(t, r, 404, "not_found")
	r = root.do("POST", "/api/control/missions", map[string]any{"workspace_id": ws.ID})
	wantError(t, r, 403, "forbidden")
	if after := len(redisDump(t, e.redis)); after != before {
		t.Errorf("refused creations stored something (%d → %d bytes in Redis)", before, after)
	}
}
