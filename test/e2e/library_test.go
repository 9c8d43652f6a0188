package e2e

import (
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
)

// Library journeys: a saved skill reaches a ready workspace in every agent
// CLI's layout; a template gives a new workspace its env and init script.
func TestLibraryReachesWorkspaces(t *testing.T) {
	t.Parallel()
	u := loggedIn(t)
	skill := map[string]string{"content": "---\nname: e2e-skill\ndescription: Used by the e2e tests\n---\nSay e2e.\n"}
	if a := u.do("PUT", "/api/library/skill/e2e-skill", skill); a.status != 200 {
		t.Fatalf("save a skill: %d %s", a.status, a.body)
	}
	tpl := map[string]any{"distro": "debian-bookworm", "skills": []string{"e2e-skill"},
		"env_vars": map[string]string{"FROM_TEMPLATE": "yes"}, "init_script": "#!/bin/sh\necho templated > /workspace/templated.txt\n"}
	if a := u.do("PUT", "/api/library/workspace-template/e2e-tpl", tpl); a.status != 200 {
		t.Fatalf("save a template: %d %s", a.status, a.body)
	}
	ws := u.createWorkspace(map[string]any{"name": "e2e-templated", "template": "e2e-tpl"})
	if ws.Type != "container" || ws.EnvVars["FROM_TEMPLATE"] != "yes" {
		t.Errorf("the template was not applied: %+v", ws)
	}
	u.waitStatus(ws.ID, "ready")
	if r := u.exec(ws.ID, map[string]any{"command": "cat templated.txt; echo $FROM_TEMPLATE"}); r.Stdout != "templated\nyes\n" {
		t.Errorf("template init script and env: %+v", r)
	}
	read := func() string {
		return u.exec(ws.ID, map[string]any{"command": "cat .opencode/skill/e2e-skill/SKILL.md .claude/skills/e2e-skill/SKILL.md 2>&1"}).Stdout
	}
	testwait.Eventually(t, time.Minute, "the skill in the workspace", func() (bool, string) {
		s := read()
		return strings.Count(s, "Say e2e.") == 2, s
	})
	skill["content"] = strings.Replace(skill["content"], "Say e2e.", "Say e2e again.", 1)
	if a := u.do("PUT", "/api/library/skill/e2e-skill", skill); a.status != 200 {
		t.Fatalf("update the skill: %d %s", a.status, a.body)
	}
	testwait.Eventually(t, time.Minute, "the new version in the running workspace", func() (bool, string) {
		s := read()
		return strings.Count(s, "Say e2e again.") == 2, s
	})
	if a := u.do("POST", "/api/workspaces/"+ws.ID+"/sync", nil); a.status != 200 {
		t.Errorf("sync: %d %s", a.status, a.body)
	}
	u.do("DELETE", "/api/workspaces/"+ws.ID, nil)
}
