package e2e

import (
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
)

type workspace struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Type         string            `json:"workspace_type"`
	Path         string            `json:"path"`
	Status       string            `json:"status"`
	ErrorMessage *string           `json:"error_message"`
	EnvVars      map[string]string `json:"env_vars"`
	Skills       []string          `json:"skills"`
	Owner        string            `json:"owner"`
}

type execResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
}

func (u *user) createWorkspace(body map[string]any) workspace {
	u.t.Helper()
	a := u.do("POST", "/api/workspaces", body)
	if a.status != 200 {
		u.t.Fatalf("create workspace %v: %d %s", body["name"], a.status, a.body)
	}
	var ws workspace
	a.decode(u.t, &ws)
	return ws
}

func (u *user) waitStatus(id, want string) workspace {
	u.t.Helper()
	var ws workspace
	testwait.Eventually(u.t, 3*time.Minute, "workspace "+id+" "+want, func() (bool, string) {
		ws = workspace{}
		u.do("GET", "/api/workspaces/"+id, nil).decode(u.t, &ws)
		msg := ""
		if ws.ErrorMessage != nil {
			msg = *ws.ErrorMessage
		}
		return ws.Status == want, ws.Status + " " + msg
	})
	return ws
}

func (u *user) exec(id string, body map[string]any) execResult {
	u.t.Helper()
	a := u.do("POST", "/api/workspaces/"+id+"/exec", body)
	if a.status != 200 {
		u.t.Fatalf("exec %v: %d %s", body["command"], a.status, a.body)
	}
	var r execResult
	a.decode(u.t, &r)
	return r
}

// TestWorkspaceJourney: the seed's workspace routes as a user calls them.
func TestWorkspaceJourney(t *testing.T) {
	t.Parallel()
	u := loggedIn(t)
	ws := u.createWorkspace(map[string]any{
		"name": "e2e-box", "workspace_type": "container", "distro": "debian-bookworm",
		"env_vars": map[string]string{"GREETING": "hello"}, "init_script": "#!/bin/sh\necho preparing\ntouch /workspace/prepared\n",
	})
	var list []workspace
	u.do("GET", "/api/workspaces", nil).decode(t, &list)
	if len(list) < 2 || list[0].ID != "00000000-0000-0000-0000-000000000000" {
		t.Errorf("list: %+v", list)
	}
	u.waitStatus(ws.ID, "ready")

	if r := u.exec(ws.ID, map[string]any{"command": "ls prepared && echo $GREETING && echo oops >&2; exit 7"}); r.ExitCode != 7 || r.Stdout != "prepared\nhello\n" || r.Stderr != "oops\n" {
		t.Errorf("exit code, env and streams: %+v", r)
	}
	if r := u.exec(ws.ID, map[string]any{"command": "echo started; sleep 60", "timeout_secs": 1}); !r.TimedOut || r.Stdout != "started\n" {
		t.Errorf("timeout: %+v", r)
	}
	if r := u.exec(ws.ID, map[string]any{"command": "head -c 10485760 /dev/zero | tr '\\0' y"}); len(r.Stdout) != 10<<20 || r.StdoutTruncated {
		t.Errorf("10 MB of output: %d bytes (truncated %v)", len(r.Stdout), r.StdoutTruncated)
	}
	var l struct {
		Exists  bool   `json:"exists"`
		Content string `json:"content"`
	}
	u.do("GET", "/api/workspaces/"+ws.ID+"/init-log", nil).decode(t, &l)
	if !l.Exists || !strings.Contains(l.Content, "preparing") {
		t.Errorf("init log: %+v", l)
	}
	var rerun struct {
		Success bool `json:"success"`
	}
	if a := u.do("POST", "/api/workspaces/"+ws.ID+"/rerun-init", nil); a.status != 200 {
		t.Errorf("rerun-init: %d %s", a.status, a.body)
	} else if a.decode(t, &rerun); !rerun.Success {
		t.Errorf("rerun-init: %s", a.body)
	}

	// Rebuild: a new Pod, the init script again, the volume kept.
	u.exec(ws.ID, map[string]any{"command": "echo kept > notes.txt"})
	if a := u.do("POST", "/api/workspaces/"+ws.ID+"/build", map[string]any{"rebuild": true}); a.status != 200 {
		t.Fatalf("rebuild: %d %s", a.status, a.body)
	}
	u.waitStatus(ws.ID, "ready")
	if r := u.exec(ws.ID, map[string]any{"command": "cat notes.txt"}); r.Stdout != "kept\n" {
		t.Errorf("after a rebuild the volume holds %q", r.Stdout)
	}

	if a := u.do("DELETE", "/api/workspaces/"+ws.ID, nil); a.status != 200 {
		t.Fatalf("delete: %d %s", a.status, a.body)
	}
	testwait.Eventually(t, time.Minute, "the workspace gone", func() (bool, string) {
		a := u.do("GET", "/api/workspaces/"+ws.ID, nil)
		return a.status == 404, a.code()
	})
}

// A failing init script makes the workspace error, with the script's log.
func TestFailingInitScript(t *testing.T) {
	t.Parallel()
	u := loggedIn(t)
	ws := u.createWorkspace(map[string]any{
		"name": "e2e-broken", "workspace_type": "container",
		"init_script": "#!/bin/sh\necho about to fail\nexit 3\n",
	})
	ws = u.waitStatus(ws.ID, "error")
	if ws.ErrorMessage == nil || !strings.Contains(*ws.ErrorMessage, "exit code 3") {
		t.Errorf("error message: %v", ws.ErrorMessage)
	}
	var l struct {
		Content string `json:"content"`
	}
	u.do("GET", "/api/workspaces/"+ws.ID+"/init-log", nil).decode(t, &l)
	if !strings.Contains(l.Content, "about to fail") {
		t.Errorf("the log of the failed script: %q", l.Content)
	}
	u.do("DELETE", "/api/workspaces/"+ws.ID, nil)
}

// The default host workspace is there and ready, and host workspaces run
// in the shared host runtime.
func TestHostWorkspace(t *testing.T) {
	t.Parallel()
	u := loggedIn(t)
	u.waitStatus("00000000-0000-0000-0000-000000000000", "ready")
	ws := u.createWorkspace(map[string]any{"name": "e2e-dir", "env_vars": map[string]string{"WHO": "dir"}})
	u.waitStatus(ws.ID, "ready")
	if r := u.exec(ws.ID, map[string]any{"command": "pwd; echo $WHO"}); r.Stdout != ws.Path+"\ndir\n" {
		t.Errorf("host exec: %+v", r)
	}
	if a := u.do("DELETE", "/api/workspaces/00000000-0000-0000-0000-000000000000", nil); a.status != 400 {
		t.Errorf("deleting the default workspace: %d", a.status)
	}
	u.do("DELETE", "/api/workspaces/"+ws.ID, nil)
}
