package rest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/config"
	"sortie.dev/services/workspace-operator/internal/controller"
	"sortie.dev/services/workspace-operator/internal/library"
)

// startOnNode serves the API with the controller running, against the
// real local node.
func startOnNode(t testing.TB) *restEnv {
	t.Helper()
	c, ns := prepareNode(t)
	return serveOnNode(t, c, ns, nil)
}

// prepareNode checks the node holds our images, installs the CRD, and
// makes a namespace for the test.
func prepareNode(t testing.TB) (*clustertest.Cluster, string) {
	t.Helper()
	c := clustertest.Require(t)
	c.RequireImages(t)
	if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
		Paths: []string{crdDir}, ErrorIfPathMissing: true, MaxTime: testwait.Scaled(30 * time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	return c, c.Namespace(t)
}

// serveOnNode runs the controller and the API in ns, with lib as the
// library (nil: none).
func serveOnNode(t testing.TB, c *clustertest.Cluster, ns string, lib *library.Client) *restEnv {
	t.Helper()
	return serveOnNodeIn(t, c, ns, lib, false)
}

// serveOnNodeIn is serveOnNode in multi-user mode (multiUser) or not.
func serveOnNodeIn(t testing.TB, c *clustertest.Cluster, ns string, lib *library.Client, multiUser bool) *restEnv {
	t.Helper()
	env := map[string]string{
		"SORTIE_WORKSPACE_NAMESPACE": ns, "SORTIE_AUTH_DEV_MODE": "true", "SORTIE_WORKSPACE_STORAGE": "64Mi",
		"SORTIE_HOST_STORAGE":  "64Mi",
		"SORTIE_DISTRO_IMAGES": "debian-bookworm=" + clustertest.DebianImage + ",ubuntu-noble=" + clustertest.DebianImage,
	}
	if multiUser {
		env["SORTIE_AUTH_MODE"] = "multi_user"
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return startREST(t, c.Config, ns, func(mgr ctrl.Manager, h *Handler) {
		h.Library, h.MultiUser = lib, cfg.MultiUser()
		r := &controller.WorkspaceReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Config: cfg,
			Prober: controller.AgentProber{}, Recorder: mgr.GetEventRecorder("workspace-operator"), Skills: lib}
		if err := r.SetupWithManager(mgr); err != nil {
			t.Fatal(err)
		}
	})
}

// waitStatus waits for the workspace's status over REST: up to two
// minutes (scaled), which covers pulling nothing (the images are on the
// node) but starting a Pod and running its init script.
func waitStatus(t *testing.T, e *restEnv, id, want string) Workspace {
	t.Helper()
	start := time.Now()
	var ws Workspace
	testwait.Eventually(t, 2*time.Minute, "workspace "+id+" status "+want, func() (bool, string) {
		ws = Workspace{}
		e.do("GET", "/api/workspaces/"+id, nil).Decode(t, &ws)
		return ws.Status == want, fmt.Sprintf("status %s (%s)", ws.Status, ptrString(ws.ErrorMessage))
	})
	t.Logf("status %s after %v", want, time.Since(start).Round(time.Millisecond))
	return ws
}

// TestExecOnNode is the seed's workspace journey over REST on the real
// node: create, wait for ready, exec (exit code, stderr, cwd, env, stdin,
// timeout, 10 MB of output), the init log, and a rerun of the init script.
func TestExecOnNode(t *testing.T) {
	e := startOnNode(t)
	var ws Workspace
	r := e.do("POST", "/api/workspaces", map[string]any{
		"name": "journey", "workspace_type": "container", "distro": "debian-bookworm",
		"env_vars":    map[string]string{"GREETING": "hi"},
		"init_script": "#!/bin/sh\necho setting up\nmkdir -p /workspace/sub\n",
	})
	if r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &ws)
	waitStatus(t, e, ws.ID, "ready")

	exec := func(body map[string]any) ExecResponse {
		t.Helper()
		r := e.do("POST", "/api/workspaces/"+ws.ID+"/exec", body)
		if r.Status != 200 {
			t.Fatalf("exec %v: %d %s", body["command"], r.Status, r.Body)
		}
		var out ExecResponse
		r.Decode(t, &out)
		return out
	}
	if out := exec(map[string]any{"command": "echo out; echo err >&2; exit 3"}); out.ExitCode != 3 || out.Stdout != "out\n" || out.Stderr != "err\n" {
		t.Errorf("exit code and streams: %+v", out)
	}
	if out := exec(map[string]any{"command": "pwd; echo $GREETING $EXTRA; cat", "cwd": "sub", "env": map[string]string{"EXTRA": "there"}, "stdin": "from stdin"}); out.Stdout != "/workspace/sub\nhi there\nfrom stdin" {
		t.Errorf("cwd, env, stdin: %q", out.Stdout)
	}
	if out := exec(map[string]any{"command": "echo partial; sleep 30", "timeout_secs": 1}); !out.TimedOut || out.Stdout != "partial\n" {
		t.Errorf("timeout: %+v", out)
	}
	if out := exec(map[string]any{"command": "head -c 10485760 /dev/zero | tr '\\0' x"}); len(out.Stdout) != 10<<20 || out.StdoutTruncated {
		t.Errorf("10 MB of output: got %d bytes, truncated %v", len(out.Stdout), out.StdoutTruncated)
	}

	var l struct {
		Exists     bool   `json:"exists"`
		Content    string `json:"content"`
		TotalLines int    `json:"total_lines"`
	}
	e.do("GET", "/api/workspaces/"+ws.ID+"/init-log", nil).Decode(t, &l)
	if !l.Exists || !strings.Contains(l.Content, "setting up") {
		t.Errorf("init log: %+v", l)
	}
	var rerun struct {
		Success  bool `json:"success"`
		ExitCode *int `json:"exit_code"`
		Runs     int  `json:"runs"`
	}
	r = e.do("POST", "/api/workspaces/"+ws.ID+"/rerun-init", nil)
	r.Decode(t, &rerun)
	if r.Status != 200 || !rerun.Success || rerun.ExitCode == nil || *rerun.ExitCode != 0 || rerun.Runs != 2 {
		t.Errorf("rerun-init: %d %s", r.Status, r.Body)
	}
	e.do("GET", "/api/workspaces/"+ws.ID+"/init-log", nil).Decode(t, &l)
	if strings.Count(l.Content, "setting up") != 2 {
		t.Errorf("the init log does not show both runs:\n%s", l.Content)
	}

	var st StatsResponse
	e.do("GET", "/api/stats", nil).Decode(t, &st)
	if st.Workspaces["ready"] < 1 || len(st.PerSpace) < 1 || st.MemoryUsed <= 0 || st.DiskTotal <= 0 || st.CPUSeconds <= 0 {
		t.Errorf("stats = %+v", st)
	}
}

// TestProcessesOnNode is the process API mission-control drives turns
// with: a detached process, its output followed over REST to the end,
// resumed from an offset, a signal to a running one, and deletion.
func TestProcessesOnNode(t *testing.T) {
	e := startOnNode(t)
	var ws Workspace
	e.do("POST", "/api/workspaces", map[string]any{"name": "procs", "workspace_type": "container", "distro": "debian-bookworm"}).Decode(t, &ws)
	waitStatus(t, e, ws.ID, "ready")
	base := "/api/workspaces/" + ws.ID + "/processes"

	r := e.do("POST", base, map[string]any{"id": "turn-1", "command": "for i in 1 2 3; do echo line $i; sleep 0.2; done; exit 4"})
	if r.Status != 201 {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", base, map[string]any{"id": "turn-1", "command": "true"}); r.Status != 409 {
		t.Errorf("a second process with the same id: %d, want 409", r.Status)
	}
	events := e.ndjson(base + "/turn-1/output?offset=0&follow=true")
	var text string
	var last map[string]any
	for _, ev := range events {
		if d, ok := ev["data"].(string); ok {
			text += d
		}
		last = ev
	}
	if text != "line 1\nline 2\nline 3\n" || last["eof"] != true || last["exit_code"] != float64(4) {
		t.Errorf("followed output %q, last event %v", text, last)
	}
	// Resume from the middle: exactly the rest, then eof.
	resumed := e.ndjson(base + "/turn-1/output?offset=7")
	if len(resumed) < 2 || resumed[0]["offset"] != float64(7) || resumed[0]["data"] != "line 2\nline 3\n" {
		t.Errorf("resumed at 7: %v", resumed)
	}

	e.do("POST", base, map[string]any{"id": "sleeper", "argv": []string{"sleep", "600"}})
	if r := e.do("DELETE", base+"/sleeper", nil); r.Status != 409 {
		t.Errorf("deleting a running process: %d, want 409", r.Status)
	}
	if r := e.do("POST", base+"/sleeper/signal", map[string]any{"signal": "TERM"}); r.Status != 204 {
		t.Fatalf("signal: %d %s", r.Status, r.Body)
	}
	waitUntilREST(t, "the sleeper to end", func() bool {
		var p struct{ Running bool }
		e.do("GET", base+"/sleeper", nil).Decode(t, &p)
		return !p.Running
	})
	var list struct{ Processes []struct{ ID string } }
	e.do("GET", base, nil).Decode(t, &list)
	if len(list.Processes) != 2 {
		t.Errorf("list: %+v", list)
	}
	if r := e.do("DELETE", base+"/sleeper", nil); r.Status != 204 {
		t.Errorf("delete: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", base+"/nope", nil); r.Status != 404 {
		t.Errorf("unknown process: %d, want 404", r.Status)
	}
}

// waitUntilREST waits up to a minute (scaled) for ok.
func waitUntilREST(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testwait.True(t, time.Minute, what, ok)
}

// TestHostOnNode runs host workspaces in the shared host runtime on the
// real node: the default one is ready, each has its own directory and env,
// and their processes and paths are kept apart.
func TestHostOnNode(t *testing.T) {
	e := startOnNode(t)
	waitStatus(t, e, DefaultID, "ready")
	var alpha, beta Workspace
	e.do("POST", "/api/workspaces", map[string]any{"name": "alpha", "env_vars": map[string]string{"WHO": "alpha"}}).Decode(t, &alpha)
	e.do("POST", "/api/workspaces", map[string]any{"name": "beta", "path": "/workspaces/team/beta"}).Decode(t, &beta)
	waitStatus(t, e, alpha.ID, "ready")
	waitStatus(t, e, beta.ID, "ready")

	exec := func(id string, body map[string]any) ExecResponse {
		t.Helper()
		r := e.do("POST", "/api/workspaces/"+id+"/exec", body)
		if r.Status != 200 {
			t.Fatalf("exec %v: %d %s", body["command"], r.Status, r.Body)
		}
		var out ExecResponse
		r.Decode(t, &out)
		return out
	}
	if out := exec(alpha.ID, map[string]any{"command": "pwd; echo $WHO; echo note > mine.txt"}); out.Stdout != alpha.Path+"\nalpha\n" || out.ExitCode != 0 {
		t.Errorf("alpha: %+v", out)
	}
	if out := exec(beta.ID, map[string]any{"command": "pwd; echo \"[$WHO]\"; ls"}); out.Stdout != "/workspaces/team/beta\n[]\n" {
		t.Errorf("beta sees %q; want its own directory, no env from alpha, no files", out.Stdout)
	}
	if out := exec(DefaultID, map[string]any{"command": "cat alpha/mine.txt", "cwd": "/workspaces"}); out.Stdout != "note\n" {
		t.Errorf("the default host workspace spans the host root: %+v", out)
	}
	if r := e.do("POST", "/api/workspaces/"+beta.ID+"/exec", map[string]any{"command": "true", "cwd": "../../alpha"}); r.Status != 400 {
		t.Errorf("cwd escaping beta: %d, want 400", r.Status)
	}

	// The same process id in two host workspaces: two processes, each
	// listed and read only through its own workspace.
	for _, ws := range []Workspace{alpha, beta} {
		if r := e.do("POST", "/api/workspaces/"+ws.ID+"/processes", map[string]any{"id": "turn", "command": "pwd"}); r.Status != 201 {
			t.Fatalf("start in %s: %d %s", ws.Name, r.Status, r.Body)
		}
	}
	for _, ws := range []Workspace{alpha, beta} {
		var text string
		for _, ev := range e.ndjson("/api/workspaces/" + ws.ID + "/processes/turn/output?follow=true") {
			if d, ok := ev["data"].(string); ok {
				text += d
			}
		}
		if text != ws.Path+"\n" {
			t.Errorf("%s's process printed %q", ws.Name, text)
		}
		var list struct{ Processes []struct{ ID string } }
		e.do("GET", "/api/workspaces/"+ws.ID+"/processes", nil).Decode(t, &list)
		if len(list.Processes) != 1 || list.Processes[0].ID != "turn" {
			t.Errorf("%s lists %+v, want just its own turn", ws.Name, list.Processes)
		}
	}
	if r := e.do("DELETE", "/api/workspaces/"+alpha.ID, nil); r.Status != 200 {
		t.Fatalf("delete alpha: %d", r.Status)
	}
	if out := exec(beta.ID, map[string]any{"command": "echo still here"}); out.Stdout != "still here\n" {
		t.Errorf("beta after alpha's deletion: %+v", out)
	}
}
