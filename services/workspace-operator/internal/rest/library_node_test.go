package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testbin"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/library"
)

// libraryService is the real library service (bin/library from make
// build), run as a child process in dev-auth mode, publishing its revision into ns.
type libraryService struct {
	url string
	t   *testing.T
	cmd *exec.Cmd
}

func startLibrary(t *testing.T, c *clustertest.Cluster, ns string) *libraryService {
	t.Helper()
	dir := t.TempDir()
	bin := testbin.Path(t, "library") // built by make build
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"SORTIE_LISTEN_ADDR="+addr, "SORTIE_AUTH_DEV_MODE=true",
		"SORTIE_LIBRARY_DATA_DIR="+filepath.Join(dir, "data"),
		"SORTIE_LIBRARY_KUBECONFIG="+c.Kubeconfig, "SORTIE_LIBRARY_CONFIGMAP_NAMESPACE="+ns,
	)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("library log:\n%s", logs.String())
		}
	})
	l := &libraryService{url: "http://" + addr, t: t, cmd: cmd}
	waitUntilREST(t, "the library to answer", func() bool {
		r, err := http.Get(l.url + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	return l
}

func (l *libraryService) put(path string, body any) {
	l.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPut, l.url+"/api/library/"+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var e map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		l.t.Fatalf("PUT %s: %d %v", path, resp.StatusCode, e)
	}
}

func (l *libraryService) delete(path string) {
	l.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, l.url+"/api/library/"+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		l.t.Fatalf("DELETE %s: %d", path, resp.StatusCode)
	}
}

func skillDoc(name, body string) map[string]string {
	return map[string]string{"content": fmt.Sprintf("---\nname: %s\ndescription: %s for tests\n---\n%s\n", name, name, body)}
}

// TestLibraryOnNode is the library journey of a workspace on the real node
// with the real library service: a template carries env, skills and init
// script fragments into a new workspace; its skills land in every agent
// CLI's layout; a new revision reaches it through the ConfigMap watch; a
// skill dropped from the spec is removed; POST /sync answers once synced.
func TestLibraryOnNode(t *testing.T) {
	c, ns := prepareNode(t)
	lib := startLibrary(t, c, ns)
	lib.put("skill/greet", skillDoc("greet", "Say hello."))
	lib.put("skill/review", skillDoc("review", "Review the diff."))
	lib.put("tool/now", map[string]string{"content": "export default { description: 'time' }\n"})
	lib.put("init-script/marker", map[string]string{"content": "#!/bin/sh\necho from-fragment > /workspace/fragment.txt\n"})
	lib.put("workspace-template/py", map[string]any{
		"distro": "debian-bookworm", "skills": []string{"greet"}, "env_vars": map[string]string{"LANG_HINT": "python", "KEEP": "template"},
		"init_scripts": []string{"marker", "gone"}, "init_script": "echo from-template > /workspace/template.txt",
	})
	e := serveOnNode(t, c, ns, &library.Client{BaseURL: lib.url, HTTP: &http.Client{Timeout: testwait.Scaled(time.Minute)}})

	if r := e.do("POST", "/api/workspaces", map[string]any{"name": "x", "template": "nope"}); r.Status != 404 || r.Code(t) != "not_found" {
		t.Errorf("an unknown template: %d %s, want 404", r.Status, r.Body)
	}
	var ws Workspace
	r := e.do("POST", "/api/workspaces", map[string]any{
		"name": "from-template", "template": "py", "tools": []string{"now"}, "env_vars": map[string]string{"KEEP": "request"},
	})
	if r.Status != 200 {
		t.Fatalf("create from a template: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &ws)
	if ws.WorkspaceType != "container" || *ws.Template != "py" || ws.EnvVars["LANG_HINT"] != "python" || ws.EnvVars["KEEP"] != "request" ||
		len(ws.Skills) != 1 || ws.Skills[0] != "greet" || !strings.Contains(*ws.InitScript, "# === gone === (skipped") {
		t.Errorf("the template was not applied: %+v (init script %q)", ws, *ws.InitScript)
	}
	waitStatus(t, e, ws.ID, "ready")

	sh := func(cmd string) string {
		t.Helper()
		var out ExecResponse
		e.do("POST", "/api/workspaces/"+ws.ID+"/exec", map[string]any{"command": cmd}).Decode(t, &out)
		return out.Stdout
	}
	if got := sh("cat fragment.txt template.txt; echo $LANG_HINT"); got != "from-fragment\nfrom-template\npython\n" {
		t.Errorf("init script fragments and env: %q", got)
	}
	waitUntilREST(t, "the skills in every layout", func() bool {
		return sh("cat .opencode/skill/greet/SKILL.md .claude/skills/greet/SKILL.md .agents/skills/greet/SKILL.md 2>/dev/null | grep -c 'Say hello'") == "3\n"
	})
	if got := sh("ls .opencode/tool; ls .claude/skills"); got != "now.ts\ngreet\n" {
		t.Errorf("only the workspace's own items: %q", got)
	}

	// A new revision of a skill the workspace has reaches it by itself.
	lib.put("skill/greet", skillDoc("greet", "Say hello, twice."))
	waitUntilREST(t, "the new revision in the workspace", func() bool {
		return strings.Contains(sh("cat .claude/skills/greet/SKILL.md"), "twice")
	})

	// The spec changes: review comes, greet goes.
	if r := e.do("PUT", "/api/workspaces/"+ws.ID, map[string]any{"skills": []string{"review"}}); r.Status != 200 {
		t.Fatalf("update skills: %d %s", r.Status, r.Body)
	}
	waitUntilREST(t, "review in, greet out", func() bool {
		return sh("ls .claude/skills .opencode/skill | sort -u | grep -v :") == "\nreview\n"
	})

	// POST /sync answers once the workspace has the library's latest.
	lib.put("skill/review", skillDoc("review", "Review the diff carefully."))
	r = e.do("POST", "/api/workspaces/"+ws.ID+"/sync", nil)
	if r.Status != 200 {
		t.Fatalf("sync: %d %s", r.Status, r.Body)
	}
	if got := sh("cat .opencode/skill/review/SKILL.md"); !strings.Contains(got, "carefully") {
		t.Errorf("after POST /sync the skill is %q", got)
	}

	// The default host workspace gets every skill of the library.
	waitStatus(t, e, DefaultID, "ready")
	var out ExecResponse
	waitUntilREST(t, "all skills in the default workspace", func() bool {
		e.do("POST", "/api/workspaces/"+DefaultID+"/exec", map[string]any{"command": "ls .claude/skills"}).Decode(t, &out)
		return strings.Contains(out.Stdout, "greet") && strings.Contains(out.Stdout, "review")
	})
	lib.delete("skill/greet")
	waitUntilREST(t, "a deleted skill leaves the default workspace", func() bool {
		e.do("POST", "/api/workspaces/"+DefaultID+"/exec", map[string]any{"command": "ls .claude/skills"}).Decode(t, &out)
		return !strings.Contains(out.Stdout, "greet")
	})

	// With the library gone, an asked-for sync fails at once, saying why.
	_ = lib.cmd.Process.Kill()
	_ = lib.cmd.Wait()
	start := time.Now()
	if r := e.do("POST", "/api/workspaces/"+ws.ID+"/sync", nil); r.Status != 503 || r.Code(t) != "library_unavailable" {
		t.Errorf("sync without a library: %d %s", r.Status, r.Body)
	} else if time.Since(start) > testwait.Scaled(30*time.Second) {
		t.Errorf("the failed sync took %s to answer", time.Since(start))
	}
}
