package service_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/server"
)

func TestRoutesMatchSpec(t *testing.T) {
	l := startLibrary(t, nil)
	openapitest.Load(t, spec()).CheckRoutes(t, l.svc.Routes(), []string{"/api/library"}, server.OperationalPaths...)
}

// TestStarterContent: a library with no remote starts with useful items.
func TestStarterContent(t *testing.T) {
	l := startLibrary(t, nil)
	var skills []map[string]any
	l.must(200, "GET", "/api/library/skill", nil).Decode(t, &skills)
	if len(skills) < 2 || skills[0]["name"] != "code-review" || skills[0]["description"] == "" {
		t.Fatalf("starter skills: %v", skills)
	}
	var tpl map[string]any
	l.must(200, "GET", "/api/library/workspace-template/node", nil).Decode(t, &tpl)
	if tpl["distro"] != "debian-bookworm" {
		t.Errorf("starter template: %v", tpl)
	}
	if out := git(t, l.repoDir(), "log", "--format=%an <%ae> %s"); !strings.Contains(out, "Start the library") {
		t.Errorf("git log: %s", out)
	}
}

// TestRoundTrip saves, reads, lists and deletes an item of every type, and
// checks each save is one commit authored by the caller: alice (a user)
// for the types any user may write, root (an admin) for the others.
func TestRoundTrip(t *testing.T) {
	l := startLibrary(t, map[string]string{"SORTIE_LIBRARY_SEED": "false"})
	cases := map[string]struct {
		typ       string
		body      any
		file      string // in the repository
		want      map[string]any
		wantInRow map[string]any // fields of the list entry
	}{
		"skill": {
			typ:  "skill",
			body: content("---\nname: deploy\ndescription: Ship it.\nsetup_commands: [\"npm i\"]\nextra: kept\n---\n# Deploy\n"),
			file: "skill/deploy/SKILL.md",
			want: map[string]any{"name": "deploy", "description": "Ship it.", "path": "skill/deploy",
				"source": map[string]any{"type": "Local"}, "setup_commands": []any{"npm i"}, "files": []any{}, "references": []any{}},
			wantInRow: map[string]any{"name": "deploy", "description": "Ship it.", "path": "skill/deploy"},
		},
		"command": {
			typ:       "command",
			body:      content("---\ndescription: Say hi.\nparams:\n  - who\n  - {name: loud, required: false}\n---\nHi $who\n"),
			file:      "command/deploy.md",
			want:      map[string]any{"name": "deploy", "description": "Say hi.", "path": "command/deploy.md", "params": []any{map[string]any{"name": "who", "required": true}, map[string]any{"name": "loud", "required": false}}},
			wantInRow: map[string]any{"name": "deploy", "description": "Say hi."},
		},
		"rule": {
			typ:       "rule",
			body:      content("---\ndescription: Be brief.\n---\nKeep answers short.\n"),
			file:      "rule/deploy.md",
			want:      map[string]any{"name": "deploy", "description": "Be brief.", "path": "rule/deploy.md"},
			wantInRow: map[string]any{"name": "deploy", "description": "Be brief."},
		},
		"agent": {
			typ:       "agent",
			body:      map[string]any{"name": "deploy", "path": "agent/deploy.md", "content": "---\ndescription: Ops.\nmodel: big\ntools:\n  bash: true\npermissions:\n  edit: ask\n---\nYou deploy.\n"},
			file:      "agent/deploy.md",
			want:      map[string]any{"name": "deploy", "description": "Ops.", "model": "big", "tools": map[string]any{"bash": true}, "permissions": map[string]any{"edit": "ask"}},
			wantInRow: map[string]any{"name": "deploy", "path": "agent/deploy.md"},
		},
		"tool": {
			typ:       "tool",
			body:      content("// Description: Counts words.\nexport default {}\n"),
			file:      "tool/deploy.ts",
			want:      map[string]any{"name": "deploy", "description": "Counts words.", "path": "tool/deploy.ts"},
			wantInRow: map[string]any{"name": "deploy", "description": "Counts words."},
		},
		"init-script": {
			typ:       "init-script",
			body:      content("#!/bin/bash\n# Description: Installs bun.\ncurl -fsSL https://bun.sh/install | bash\n"),
			file:      "init-script/deploy/SCRIPT.sh",
			want:      map[string]any{"name": "deploy", "description": "Installs bun.", "path": "init-script/deploy/SCRIPT.sh"},
			wantInRow: map[string]any{"name": "deploy", "description": "Installs bun."},
		},
		"workspace-template": {
			typ:  "workspace-template",
			body: map[string]any{"description": "Go box", "distro": "ubuntu-noble", "skills": []string{"deploy"}, "env_vars": map[string]string{"GOFLAGS": "-mod=mod"}, "init_scripts": []string{"go"}, "shared_network": false},
			file: "workspace-template/deploy.json",
			want: map[string]any{"name": "deploy", "description": "Go box", "distro": "ubuntu-noble", "skills": []any{"deploy"},
				"env_vars": map[string]any{"GOFLAGS": "-mod=mod"}, "encrypted_keys": []any{}, "init_scripts": []any{"go"}, "mcps": []any{}, "shared_network": false},
			wantInRow: map[string]any{"name": "deploy", "distro": "ubuntu-noble", "skills": []any{"deploy"}},
		},
		"mcp": {
			typ:       "mcp",
			body:      map[string]any{"type": "local", "command": []string{"npx", "server"}, "env": map[string]string{"A": "b"}},
			file:      "mcp/servers.json",
			want:      map[string]any{"name": "deploy", "type": "local", "command": []any{"npx", "server"}, "env": map[string]any{"A": "b"}, "enabled": true},
			wantInRow: map[string]any{"name": "deploy", "type": "local", "enabled": true},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := "/api/library/" + tc.typ + "/deploy"
			token, author := l.alice, "alice"
			if adminTypes[tc.typ] {
				token, author = l.root, "root"
			}
			must := func(want int, method, path string, body any) response {
				t.Helper()
				return l.mustAs(token, want, method, path, body)
			}
			saved := must(200, "PUT", path, tc.body)
			rev := saved.Header.Get("X-Library-Revision")
			if rev == "" || git(t, l.repoDir(), "rev-parse", "HEAD") != rev {
				t.Fatalf("revision header %q is not HEAD", rev)
			}
			if got := git(t, l.repoDir(), "log", "-1", "--format=%an <%ae>|%s"); got != author+" <"+author+"@users.sortie.local>|Add "+tc.typ+" deploy" {
				t.Errorf("commit: %s", got)
			}
			if _, err := os.Stat(filepath.Join(l.repoDir(), tc.file)); err != nil {
				t.Errorf("file: %v", err)
			}
			got := must(200, "GET", path, nil).Object(t)
			checkFields(t, "get", got, tc.want)
			if !reflect.DeepEqual(saved.Object(t), got) {
				t.Errorf("save answered %s, get answers %v", saved.Body, got)
			}
			if b, ok := tc.body.(map[string]string); ok && got["content"] != b["content"] {
				t.Errorf("content changed: %q", got["content"])
			}
			var list []map[string]any
			must(200, "GET", "/api/library/"+tc.typ+"s", nil).Decode(t, &list) // the plural works too
			if len(list) != 1 {
				t.Fatalf("list: %v", list)
			}
			checkFields(t, "list", list[0], tc.wantInRow)
			// Saving the same thing again makes no commit.
			again := must(200, "PUT", path, tc.body)
			if again.Header.Get("X-Library-Revision") != rev {
				t.Errorf("an unchanged save made a commit")
			}
			must(204, "DELETE", path, nil)
			if code := must(404, "GET", path, nil).Code(t); code != "not_found" {
				t.Errorf("code %s", code)
			}
			must(404, "DELETE", path, nil)
			if got := git(t, l.repoDir(), "log", "-1", "--format=%s"); got != "Delete "+tc.typ+" deploy" {
				t.Errorf("delete commit: %s", got)
			}
		})
	}
	if out := git(t, l.repoDir(), "status", "--porcelain"); out != "" {
		t.Errorf("work tree not clean:\n%s", out)
	}
	git(t, l.repoDir(), "fsck", "--strict")
}

func checkFields(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s: field %s = %#v, want %#v", what, k, got[k], v)
		}
	}
}

// TestInvalidInput: every refusal is a 4xx JSON error and changes nothing.
func TestInvalidInput(t *testing.T) {
	l := startLibrary(t, nil)
	head := git(t, l.repoDir(), "rev-parse", "HEAD")
	cases := map[string]struct {
		method, path string
		body         any
		raw          bool // a path the spec cannot route
		wantStatus   int
		wantCode     string
	}{
		"unclosed frontmatter": {"PUT", "/api/library/skill/x", content("---\nname: x\n"), false, 400, "invalid_frontmatter"},
		"frontmatter not YAML": {"PUT", "/api/library/skill/x", content("---\nname: [x\n---\nbody"), false, 400, "invalid_frontmatter"},
		"frontmatter a list":   {"PUT", "/api/library/command/x", content("---\n- a\n- b\n---\nbody"), false, 400, "invalid_frontmatter"},
		"setup_commands map":   {"PUT", "/api/library/skill/x", content("---\nsetup_commands: {a: b}\n---\n"), false, 400, "invalid_frontmatter"},
		"params not a list":    {"PUT", "/api/library/command/x", content("---\nparams: 3\n---\n"), false, 400, "invalid_frontmatter"},
		"agent tools not bool": {"PUT", "/api/library/agent/x", content("---\ntools:\n  bash: maybe\n---\n"), false, 400, "invalid_frontmatter"},
		"no content":           {"PUT", "/api/library/skill/x", map[string]string{"text": "hi"}, false, 400, "invalid_content"},
		"body not JSON":        {"PUT", "/api/library/skill/x", "{not json", false, 400, "invalid_json"},
		"template unknown key": {"PUT", "/api/library/workspace-template/x", map[string]any{"distroo": "ubuntu-noble"}, false, 400, "invalid_template"},
		"template bad distro":  {"PUT", "/api/library/workspace-template/x", map[string]any{"distro": "windows"}, false, 400, "invalid_template"},
		"template bad types":   {"PUT", "/api/library/workspace-template/x", map[string]any{"skills": "a"}, false, 400, "invalid_template"},
		"template bad env":     {"PUT", "/api/library/workspace-template/x", map[string]any{"env_vars": map[string]string{"A-B": "1"}}, false, 400, "invalid_template"},
		"template bad skill":   {"PUT", "/api/library/workspace-template/x", map[string]any{"skills": []string{"../x"}}, false, 400, "invalid_template"},
		"mcp bad type":         {"PUT", "/api/library/mcp/x", map[string]any{"type": "magic"}, false, 400, "invalid_mcp"},
		"mcp remote no url":    {"PUT", "/api/library/mcp/x", map[string]any{"type": "remote", "url": "ftp://x"}, false, 400, "invalid_mcp"},
		"secret without key":   {"PUT", "/api/library/skill/x", content("token: <encrypted>abc</encrypted>"), false, 400, "encryption_unavailable"},
		"dot dot":              {"PUT", "/api/library/skill/..", content("x"), false, 400, "invalid_name"},
		"hidden":               {"PUT", "/api/library/skill/.hidden", content("x"), false, 400, "invalid_name"},
		"dot dot inside":       {"PUT", "/api/library/command/a..b", content("x"), false, 400, "invalid_name"},
		"encoded dot dot":      {"PUT", "/api/library/skill/%2e%2e", content("x"), false, 400, "invalid_name"},
		"double encoded":       {"PUT", "/api/library/skill/%252e%252e%252fetc", content("x"), false, 400, "invalid_name"},
		"backslash":            {"PUT", "/api/library/skill/a%5Cb", content("x"), false, 400, "invalid_name"},
		"NUL":                  {"PUT", "/api/library/skill/a%00b", content("x"), false, 400, "invalid_name"},
		"space":                {"GET", "/api/library/skill/a%20b", nil, false, 400, "invalid_name"},
		"too long":             {"PUT", "/api/library/skill/" + strings.Repeat("a", 101), content("x"), false, 400, "invalid_name"},
		"get traversal":        {"GET", "/api/library/agent/..", nil, false, 400, "invalid_name"},
		"delete traversal":     {"DELETE", "/api/library/skill/.git", nil, false, 400, "invalid_name"},
		"slash":                {"PUT", "/api/library/skill/a/b", content("x"), true, 404, "not_found"},
		"encoded slash":        {"PUT", "/api/library/skill/..%2Fetc", content("x"), true, 404, "not_found"},
		"file traversal":       {"PUT", "/api/library/skill/code-review/files/..%2F..%2Fetc", content("x"), true, 400, "invalid_path"},
		"file hidden":          {"PUT", "/api/library/skill/code-review/files/.git", content("x"), false, 400, "invalid_path"},
		"file SKILL.md":        {"DELETE", "/api/library/skill/code-review/files/SKILL.md", nil, false, 400, "unsupported_operation"},
		"file of a command":    {"GET", "/api/library/command/review/files/x.md", nil, false, 400, "unsupported_operation"},
		"file of no skill":     {"PUT", "/api/library/skill/nope/files/x.md", content("x"), false, 404, "not_found"},
		"unknown type":         {"GET", "/api/library/widget", nil, true, 404, "unknown_type"},
		"history limit":        {"GET", "/api/library/skill/code-review/history?limit=0", nil, false, 400, "bad_request"},
		"bundle revision":      {"GET", "/api/library/bundle?revision=HEAD~1", nil, true, 400, "invalid_revision"},
		"bundle unknown rev":   {"GET", "/api/library/bundle?revision=0123456789abcdef", nil, false, 404, "unknown_revision"},
		"bundle layout":        {"GET", "/api/library/bundle?layout=flat", nil, true, 400, "invalid_layout"},
		"sync without remote":  {"POST", "/api/library/sync", nil, false, 409, "no_remote"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			client := l.http
			if tc.raw {
				client = l.raw
			}
			r := l.send(client, l.root, tc.method, tc.path, tc.body)
			if r.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.wantStatus, r.Body)
			}
			if code := r.Code(t); code != tc.wantCode {
				t.Errorf("code %q, want %q (%s)", code, tc.wantCode, r.Body)
			}
		})
	}
	if got := git(t, l.repoDir(), "rev-parse", "HEAD"); got != head {
		t.Errorf("a refused request made a commit")
	}
	if out := git(t, l.repoDir(), "status", "--porcelain", "--ignored"); out != "" {
		t.Errorf("a refused request left files:\n%s", out)
	}
}

func TestAuthorisation(t *testing.T) {
	l := startLibrary(t, nil)
	cases := []struct {
		name, token, method, path string
		want                      int
	}{
		{"no token", "", "GET", "/api/library/skill", 401},
		{"bad token", "nope", "GET", "/api/library/skill", 401},
		{"service reads", l.op, "GET", "/api/library/skill", 200},
		{"service bundles", l.op, "GET", "/api/library/bundle", 200},
		{"service cannot write", l.op, "PUT", "/api/library/command/x", 403},
		{"user cannot force-sync", l.alice, "POST", "/api/library/force-sync", 403},
		{"user cannot force-push", l.alice, "POST", "/api/library/force-push", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.method == "PUT" {
				body = content("x")
			}
			r := l.do(tc.token, tc.method, tc.path, body)
			if r.Status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.want, r.Body)
			}
			if r.Status >= 400 {
				r.Code(t)
			}
		})
	}
}

func TestSkillFilesAndHistory(t *testing.T) {
	l := startLibrary(t, nil)
	l.must(200, "PUT", "/api/library/skill/s", content("---\ndescription: one\n---\n"))
	f := l.must(200, "PUT", "/api/library/skill/s/files/notes.md", content("# notes")).Object(t)
	if f["path"] != "notes.md" || f["content"] != "# notes" {
		t.Errorf("file: %v", f)
	}
	// Nested paths hold slashes, which the spec's router cannot express.
	r := l.send(l.raw, l.alice, "PUT", "/api/library/skill/s/files/scripts/run.sh", content("echo hi"))
	if r.Status != 200 {
		t.Fatalf("nested file: %d %s", r.Status, r.Body)
	}
	skill := l.must(200, "GET", "/api/library/skill/s", nil).Object(t)
	if fmt.Sprint(skill["references"]) != "[scripts/run.sh]" || len(skill["files"].([]any)) != 1 {
		t.Errorf("skill: %v", skill)
	}
	l.must(200, "PUT", "/api/library/skill/s", content("---\ndescription: two\n---\n"))
	l.must(204, "DELETE", "/api/library/skill/s/files/notes.md", nil)
	l.must(404, "GET", "/api/library/skill/s/files/notes.md", nil)
	var hist []map[string]any
	l.must(200, "GET", "/api/library/skill/s/history", nil).Decode(t, &hist)
	var msgs []string
	for _, h := range hist {
		msgs = append(msgs, h["message"].(string))
	}
	want := "Delete skill s: notes.md|Update skill s|Update skill s: scripts/run.sh|Update skill s: notes.md|Add skill s"
	if strings.Join(msgs, "|") != want {
		t.Errorf("history:\n got %s\nwant %s", strings.Join(msgs, "|"), want)
	}
	l.must(200, "GET", "/api/library/skill/s/history?limit=2", nil).Decode(t, &hist)
	if len(hist) != 2 {
		t.Errorf("limit: %d", len(hist))
	}
	l.must(204, "DELETE", "/api/library/skill/s", nil)
	if _, err := os.Stat(filepath.Join(l.repoDir(), "skill", "s")); !os.IsNotExist(err) {
		t.Errorf("skill folder left: %v", err)
	}
	_ = http.StatusOK
}

// adminTypes are the types only admins may write (in the plural too).
var adminTypes = map[string]bool{
	"init-script": true, "workspace-template": true, "tool": true, "mcp": true,
	"init-scripts": true, "workspace-templates": true, "tools": true, "mcps": true,
}
