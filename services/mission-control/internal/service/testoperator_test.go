package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/testbin"
	"sortie.dev/services/kit/testwait"
)

// tenantOperator is a workspace-operator stand-in that enforces tenancy
// the way docs/tenancy.md says the real one does: it verifies every token
// against the issuer's keys, authorises the user of the token (a plain
// service token, without act, reaches no workspace), shows a user their
// own workspaces only (any other id is 404 not_found, as an unknown one;
// admins see all, and alone see those without an owner), and resolves the
// nil UUID to the caller's own default workspace. Behind that it works for
// real, on the local machine: exec runs /bin/sh in the workspace's folder,
// and a detached process runs the fake agent (in the dialect argv[0]
// names) with exactly the environment the request gives, plus PATH.
type tenantOperator struct {
	t        *testing.T
	url      string
	verifier *authn.Verifier
	fake     string
	root     string // the workspaces' folders (their "volumes")

	mu         sync.Mutex
	workspaces map[string]*tenantWorkspace
	calls      []opCall
	starts     []opStart
	procs      map[string]*tenantProc // workspace id + "/" + process id
}

type tenantWorkspace struct {
	id, name, owner, dir string
}

// opCall is one request the operator answered, with who made it.
type opCall struct {
	Method, Path string
	User         string // the token's sub
	Role         authn.Role
	Actor        string // act.sub of a delegated token
	Workspace    string // the workspace it acted on, if found
	Status       int
}

// opStart is a process start as the operator received it.
type opStart struct {
	Workspace, User string
	Argv            []string
	Env             map[string]string
}

type tenantProc struct {
	id   string
	cmd  *exec.Cmd
	out  bytes.Buffer // written by the child through a pipe copier
	mu   sync.Mutex
	done chan struct{}
	code int
}

func newTenantOperator(t *testing.T, is *issuer) *tenantOperator {
	op := &tenantOperator{t: t, verifier: is.verifier(), fake: testbin.Path(t, "fake-agent"), root: t.TempDir(),
		workspaces: map[string]*tenantWorkspace{}, procs: map[string]*tenantProc{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ready"}`)) })
	mux.HandleFunc("GET /api/workspaces/{id}", op.handle(op.get))
	mux.HandleFunc("POST /api/workspaces/{id}/exec", op.handle(op.exec))
	mux.HandleFunc("POST /api/workspaces/{id}/processes", op.handle(op.start))
	mux.HandleFunc("GET /api/workspaces/{id}/processes/{pid}", op.handle(op.process))
	mux.HandleFunc("GET /api/workspaces/{id}/processes/{pid}/output", op.handle(op.output))
	mux.HandleFunc("POST /api/workspaces/{id}/processes/{pid}/signal", op.handle(op.signal))
	mux.HandleFunc("DELETE /api/workspaces/{id}/processes/{pid}", op.handle(op.remove))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		op.mu.Lock()
		defer op.mu.Unlock()
		for _, p := range op.procs {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	op.url = srv.URL
	return op
}

// add makes a workspace owned by owner ("" for none).
func (op *tenantOperator) add(id, owner string) {
	op.mu.Lock()
	defer op.mu.Unlock()
	dir := filepath.Join(op.root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		op.t.Fatal(err)
	}
	op.workspaces[id] = &tenantWorkspace{id: id, name: "ws-" + id, owner: owner, dir: dir}
}

// setOwner gives a workspace to another owner (as if the first lost it).
func (op *tenantOperator) setOwner(id, owner string) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.workspaces[id].owner = owner
}

// find is the operator's find+authorize of a workspace for the caller.
func (op *tenantOperator) find(id string, who *authn.Claims) (*tenantWorkspace, bool) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if id == defaultWS {
		id = "home-" + who.Subject
		if op.workspaces[id] == nil {
			dir := filepath.Join(op.root, id)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, false
			}
			op.workspaces[id] = &tenantWorkspace{id: id, name: "default", owner: who.Subject, dir: dir}
		}
	}
	ws := op.workspaces[id]
	if ws == nil {
		return nil, false
	}
	if ws.owner == who.Subject || who.Role == authn.RoleAdmin {
		return ws, true
	}
	return nil, false
}

type opHandler func(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, who *authn.Claims) int

// handle authenticates, authorises and records every per-workspace call.
func (op *tenantOperator) handle(h opHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		call := opCall{Method: r.Method, Path: r.URL.Path}
		defer func() {
			op.mu.Lock()
			op.calls = append(op.calls, call)
			op.mu.Unlock()
		}()
		fail := func(status int, code, msg string) {
			call.Status = status
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
		}
		raw, err := authn.Bearer(r)
		if err != nil {
			fail(401, "unauthorized", err.Error())
			return
		}
		who, err := op.verifier.Verify(r.Context(), raw)
		if err != nil {
			fail(401, "unauthorized", err.Error())
			return
		}
		call.User, call.Role = who.Subject, who.Role
		if who.Actor != nil {
			call.Actor = who.Actor.Subject
		}
		// Authorisation is always of a user: a service token alone
		// reaches nobody's workspace.
		if who.Role == authn.RoleService {
			fail(404, "not_found", "workspace not found")
			return
		}
		ws, ok := op.find(r.PathValue("id"), who)
		if !ok {
			fail(404, "not_found", "workspace not found")
			return
		}
		call.Workspace = ws.id
		call.Status = h(w, r, ws, who)
	}
}

func reply(w http.ResponseWriter, status int, v any) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
	return status
}

func (op *tenantOperator) get(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, _ *authn.Claims) int {
	return reply(w, 200, map[string]any{"id": ws.id, "name": ws.name, "owner": ws.owner, "workspace_type": "host",
		"path": ws.dir, "status": "ready", "env_vars": map[string]string{}})
}

// environ is exactly env, plus PATH.
func environ(env map[string]string) []string {
	out := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func dirIn(ws *tenantWorkspace, cwd string) string {
	if cwd == "" {
		return ws.dir
	}
	if filepath.IsAbs(cwd) {
		return cwd
	}
	return filepath.Join(ws.dir, cwd)
}

func (op *tenantOperator) exec(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, _ *authn.Claims) int {
	var req struct {
		Command, Cwd, Stdin string
		Env                 map[string]string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return reply(w, 400, map[string]string{"error": err.Error(), "code": "invalid_json"})
	}
	cmd := exec.CommandContext(r.Context(), "/bin/sh", "-c", req.Command)
	cmd.Dir, cmd.Env, cmd.Stdin = dirIn(ws, req.Cwd), environ(req.Env), strings.NewReader(req.Stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return reply(w, 500, map[string]string{"error": err.Error(), "code": "internal"})
		}
		code = ee.ExitCode()
	}
	return reply(w, 200, map[string]any{"exit_code": code, "stdout": stdout.String(), "stderr": stderr.String(), "timed_out": false})
}

func (p *tenantProc) view() map[string]any {
	v := map[string]any{"id": p.id, "pid": p.cmd.Process.Pid, "running": true, "output_bytes": 0}
	select {
	case <-p.done:
		v["running"], v["exit_code"] = false, p.code
	default:
	}
	return v
}

func (op *tenantOperator) start(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, who *authn.Claims) int {
	var req struct {
		ID, Cwd, Stdin string
		Argv           []string
		Env            map[string]string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Argv) == 0 || req.ID == "" {
		return reply(w, 400, map[string]string{"error": "bad start request", "code": "bad_request"})
	}
	op.mu.Lock()
	op.starts = append(op.starts, opStart{Workspace: ws.id, User: who.Subject, Argv: req.Argv, Env: req.Env})
	key := ws.id + "/" + req.ID
	if op.procs[key] != nil {
		op.mu.Unlock()
		return reply(w, 409, map[string]string{"error": "process id in use", "code": "conflict"})
	}
	op.mu.Unlock()
	cmd := exec.Command(op.fake, append([]string{"--cli=" + filepath.Base(req.Argv[0])}, req.Argv[1:]...)...)
	cmd.Dir, cmd.Env, cmd.Stdin = dirIn(ws, req.Cwd), environ(req.Env), strings.NewReader(req.Stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &tenantProc{id: req.ID, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := cmd.Start(); err != nil {
		return reply(w, 400, map[string]string{"error": err.Error(), "code": "start_failed"})
	}
	go func() {
		err := cmd.Wait()
		p.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	op.mu.Lock()
	op.procs[key] = p
	op.mu.Unlock()
	return reply(w, 201, p.view())
}

type lockedWriter struct{ p *tenantProc }

func (l lockedWriter) Write(b []byte) (int, error) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	return l.p.out.Write(b)
}

func (op *tenantOperator) proc(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace) (*tenantProc, bool) {
	op.mu.Lock()
	p := op.procs[ws.id+"/"+r.PathValue("pid")]
	op.mu.Unlock()
	if p == nil {
		reply(w, 404, map[string]string{"error": "no such process", "code": "not_found"})
		return nil, false
	}
	return p, true
}

func (op *tenantOperator) process(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, _ *authn.Claims) int {
	p, ok := op.proc(w, r, ws)
	if !ok {
		return 404
	}
	return reply(w, 200, p.view())
}

// output answers the whole output from offset once the process has
// exited, then the end (turns here are short; the real operator streams).
func (op *tenantOperator) output(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, _ *authn.Claims) int {
	p, ok := op.proc(w, r, ws)
	if !ok {
		return 404
	}
	select {
	case <-p.done:
	case <-r.Context().Done():
		return 499
	}
	var offset int64
	fmt.Sscan(r.URL.Query().Get("offset"), &offset)
	p.mu.Lock()
	out := p.out.Bytes()
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	// In pages (raw bytes, so a page may end inside a character), as the
	// workspace-agent sends it: the client reads one NDJSON line at a time.
	for ; offset < int64(len(out)); offset += 256 << 10 {
		enc.Encode(map[string]any{"offset": offset, "data_b64": out[offset:min(offset+256<<10, int64(len(out)))]})
	}
	enc.Encode(map[string]any{"offset": len(out), "eof": true, "exit_code": p.code})
	return 200
}

func (op *tenantOperator) signal(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, _ *authn.Claims) int {
	p, ok := op.proc(w, r, ws)
	if !ok {
		return 404
	}
	var req struct{ Signal string }
	json.NewDecoder(r.Body).Decode(&req)
	sig := map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL}[req.Signal]
	if sig == 0 {
		return reply(w, 400, map[string]string{"error": "bad signal", "code": "bad_request"})
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	return reply(w, 200, map[string]bool{"ok": true})
}

func (op *tenantOperator) remove(w http.ResponseWriter, r *http.Request, ws *tenantWorkspace, _ *authn.Claims) int {
	p, ok := op.proc(w, r, ws)
	if !ok {
		return 404
	}
	select {
	case <-p.done:
	default:
		return reply(w, 409, map[string]string{"error": "still running", "code": "conflict"})
	}
	op.mu.Lock()
	delete(op.procs, ws.id+"/"+p.id)
	op.mu.Unlock()
	w.WriteHeader(204)
	return 204
}

// callLog returns the calls so far.
func (op *tenantOperator) callLog() []opCall {
	op.mu.Lock()
	defer op.mu.Unlock()
	return append([]opCall(nil), op.calls...)
}

// startLog returns the process starts so far.
func (op *tenantOperator) startLog() []opStart {
	op.mu.Lock()
	defer op.mu.Unlock()
	return append([]opStart(nil), op.starts...)
}

// checkDelegated fails the test for any call that was not made with a
// delegated token of mission-control for a user.
func (op *tenantOperator) checkDelegated(t *testing.T) {
	t.Helper()
	for _, c := range op.callLog() {
		if c.Actor != "mission-control" || c.Role == authn.RoleService || c.User == "" {
			t.Errorf("%s %s was not made for a user by mission-control: %+v", c.Method, c.Path, c)
		}
	}
}

// waitIdle waits until no process runs (so the log is complete).
func (op *tenantOperator) waitIdle(t *testing.T) {
	testwait.Eventually(t, time.Minute, "the operator's processes end", func() (bool, string) {
		op.mu.Lock()
		defer op.mu.Unlock()
		for k, p := range op.procs {
			select {
			case <-p.done:
			default:
				return false, k + " runs"
			}
		}
		return true, ""
	})
}
