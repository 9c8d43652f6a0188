package service

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/testbin"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/backend/openai/openaitest"
)

// The runner's boundary is the workspace-operator: these tests run the real
// operator (built by `make build`, handed over by kit/testbin) as a child
// process against the real local node, install the fake agent CLIs into the
// default host workspace through the exec API, and drive turns through
// mission-control's HTTP API. Nothing is built or packed inside a test: the
// node must already hold the workspace-agent image (`make images`).

const defaultWS = "00000000-0000-0000-0000-000000000000"

// cliDir is where the fake CLIs are installed in the host workspace.
const cliDir = "/workspaces/.sortie/bin"

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuf collects a child's output for failure reports.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// operator runs the real workspace-operator for one test namespace.
type operator struct {
	url     string
	out     *syncBuf
	cluster *clustertest.Cluster
	ns      string
	token   string // the test's own calls' bearer token (auth on)
}

func startOperator(t *testing.T) *operator {
	t.Helper()
	return startOperatorWith(t, map[string]string{"SORTIE_AUTH_DEV_MODE": "true"}, "")
}

// startOperatorWith runs the operator with settings (SORTIE_AUTH_*) and
// calls it, in the test's own requests, with token.
func startOperatorWith(t *testing.T, settings map[string]string, token string) *operator {
	t.Helper()
	c := clustertest.Require(t)
	c.RequireImages(t)
	bin := testbin.Path(t, "workspace-operator")
	root, err := testbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{Paths: []string{filepath.Join(root, "api", "crds")}, ErrorIfPathMissing: true}); err != nil {
		t.Fatal(err)
	}
	ns := c.Namespace(t)

	addr := freeAddr(t)
	env := append(os.Environ(), "KUBECONFIG="+c.Kubeconfig, "SORTIE_WORKSPACE_NAMESPACE="+ns,
		"SORTIE_LEADER_ELECTION=false", "SORTIE_LISTEN_ADDR="+addr, "SORTIE_METRICS_ADDR=0", "SORTIE_PROBE_ADDR=0",
		"SORTIE_WORKSPACE_STORAGE=64Mi", "SORTIE_HOST_STORAGE=256Mi")
	// hack/cluster.sh writes the operator's settings for the local node
	// (its images and distros); an external cluster has none.
	if c.StateDir != "" {
		opEnv, err := os.ReadFile(filepath.Join(c.StateDir, "operator.env"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(opEnv), "\n") {
			if strings.Contains(l, "=") && !strings.HasPrefix(l, "#") {
				env = append(env, strings.TrimSpace(l))
			}
		}
	}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-testwait.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("workspace-operator output:\n%s", tail(out.String(), 4000))
		}
	})
	op := &operator{url: "http://" + addr, out: out, cluster: c, ns: ns, token: token}
	start := time.Now()
	if err := testwait.Until(t.Context(), 3*time.Minute, func() (bool, string) {
		var ws struct{ Status string }
		r, err := op.request("GET", "/api/workspaces/"+defaultWS, nil)
		if err != nil {
			return false, err.Error()
		}
		json.NewDecoder(r.Body).Decode(&ws)
		r.Body.Close()
		return ws.Status == "ready", fmt.Sprintf("status %q", ws.Status)
	}); err != nil {
		t.Fatalf("default host workspace not ready: %v\n%s", err, tail(out.String(), 4000))
	}
	t.Logf("default host workspace ready after %v", time.Since(start).Round(time.Millisecond))
	return op
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// request calls the operator as the test (op.token).
func (op *operator) request(method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, op.url+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if op.token != "" {
		req.Header.Set("Authorization", "Bearer "+op.token)
	}
	return http.DefaultClient.Do(req)
}

// exec runs a shell command in a workspace through the operator.
func (op *operator) exec(t testing.TB, ws, command, stdin string) (string, int) {
	t.Helper()
	r, err := op.request("POST", "/api/workspaces/"+ws+"/exec", map[string]any{"command": command, "stdin": stdin, "timeout_secs": 60})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var res struct {
		ExitCode       int `json:"exit_code"`
		Stdout, Stderr string
	}
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 {
		t.Fatalf("exec %q: %d %s", command, r.StatusCode, body)
	}
	json.Unmarshal(body, &res)
	return res.Stdout + res.Stderr, res.ExitCode
}

// installFakeCLIs copies the fake agent (built static) into the workspace
// in base64 chunks small enough for the exec API, as claude, with codex,
// opencode and amp as symlinks (the fake picks its dialect from argv[0]).
func (op *operator) installFakeCLIs(t testing.TB, ws string) {
	t.Helper()
	raw, err := os.ReadFile(testbin.Path(t, "fake-agent"))
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	if out, code := op.exec(t, ws, "rm -rf "+cliDir+" && mkdir -p "+cliDir, ""); code != 0 {
		t.Fatalf("mkdir: %s", out)
	}
	const chunk = 700_000 // a multiple of 4: each chunk decodes on its own
	for i := 0; i < len(enc); i += chunk {
		part := enc[i:min(i+chunk, len(enc))]
		if out, code := op.exec(t, ws, "base64 -d >> "+cliDir+"/claude", part); code != 0 {
			t.Fatalf("upload: %s", out)
		}
	}
	out, code := op.exec(t, ws, fmt.Sprintf("cd %s && chmod 755 claude && ln -sf claude codex && ln -sf claude opencode && ln -sf claude amp && wc -c < claude", cliDir), "")
	if code != 0 || strings.TrimSpace(out) != fmt.Sprint(len(raw)) {
		t.Fatalf("install: %d %s (want %d bytes)", code, out, len(raw))
	}
}

// cliEnv points mission-control at the installed fakes.
func cliEnv() map[string]string {
	return map[string]string{
		"SORTIE_MC_CLI_CLAUDECODE": cliDir + "/claude", "SORTIE_MC_CLI_CODEX": cliDir + "/codex",
		"SORTIE_MC_CLI_OPENCODE": cliDir + "/opencode", "SORTIE_MC_CLI_AMP": cliDir + "/amp",
	}
}

// storedEvent is the part of GET .../events the tests check.
type storedEvent struct {
	Sequence   int64          `json:"sequence"`
	EventType  string         `json:"event_type"`
	EventID    *string        `json:"event_id"`
	ToolCallID *string        `json:"tool_call_id"`
	Content    string         `json:"content"`
	Metadata   map[string]any `json:"metadata"`
}

func (e *env) events(t testing.TB, mission string) []storedEvent {
	t.Helper()
	var evs []storedEvent
	e.do("GET", "/api/control/missions/"+mission+"/events", nil).Decode(t, &evs)
	return evs
}

func (e *env) waitStatus(t testing.TB, id string, want ...string) mission {
	t.Helper()
	return testwait.For(t, time.Minute, "mission "+id+" "+strings.Join(want, " or ")+", its run ended", func() (mission, bool) {
		var m mission
		e.do("GET", "/api/control/missions/"+id, nil).Decode(t, &m)
		for _, w := range want {
			if m.Status == w {
				if r, _ := e.svc.Control.Run(context.Background(), id); r == nil {
					return m, true
				}
			}
		}
		return m, false
	})
}

// waitTurns waits until the mission has answered n turns and runs none.
func (e *env) waitTurns(t testing.TB, id string, n int) mission {
	t.Helper()
	testwait.For(t, time.Minute, fmt.Sprintf("mission %s answers %d turns, its run ended", id, n), func() (int, bool) {
		c := count(e.events(t, id), "assistant_message")
		r, _ := e.svc.Control.Run(context.Background(), id)
		return c, c >= n && r == nil
	})
	var m mission
	e.do("GET", "/api/control/missions/"+id, nil).Decode(t, &m)
	return m
}

func kinds(evs []storedEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventType
	}
	return out
}

func count(evs []storedEvent, kind string) int {
	n := 0
	for _, e := range evs {
		if e.EventType == kind {
			n++
		}
	}
	return n
}

// checkTurns checks a mission's stored events: contiguous sequences, and
// per turn a user message, tool call and matching result, one answer.
func checkTurns(t testing.TB, evs []storedEvent, turns int) {
	t.Helper()
	for i, e := range evs {
		if e.Sequence != int64(i+1) {
			t.Fatalf("event %d has sequence %d (gap or duplicate); kinds %v", i, e.Sequence, kinds(evs))
		}
	}
	if n := count(evs, "assistant_message"); n != turns {
		t.Errorf("%d assistant messages, want %d; kinds %v", n, turns, kinds(evs))
	}
	calls := map[string]bool{}
	for _, e := range evs {
		switch e.EventType {
		case "tool_call":
			calls[*e.ToolCallID] = true
		case "tool_result":
			if !calls[*e.ToolCallID] {
				t.Errorf("tool_result %s without its call", *e.ToolCallID)
			}
			delete(calls, *e.ToolCallID)
		}
	}
	if len(calls) != 0 {
		t.Errorf("calls without results: %v", calls)
	}
}

func (e *env) send(t testing.TB, mission, content string) (string, bool) {
	t.Helper()
	var resp struct {
		ID     string `json:"id"`
		Queued bool   `json:"queued"`
	}
	r := e.do("POST", "/api/control/message", map[string]any{"content": content, "mission_id": mission})
	if r.Status != 200 {
		t.Fatalf("message: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &resp)
	return resp.ID, resp.Queued
}

func (e *env) create(t testing.TB, body map[string]any) mission {
	t.Helper()
	var m mission
	r := e.do("POST", "/api/control/missions", body)
	if r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &m)
	return m
}

// grandchildren counts the fake agent's "grandchild" sleeps (pgrep -f
// would count the shell running it).
const grandchildren = "ps -eo args | grep -c '^sleep 1000$'"

// TestOnNode drives real turns through the real operator on the local
// node. The subtests share one operator and host workspace (a workspace
// takes seconds to become ready).
func TestOnNode(t *testing.T) {
	op := startOperator(t)
	op.installFakeCLIs(t, defaultWS)
	ep := openaitest.New(t)
	env := cliEnv()
	env["SORTIE_MC_OPENAI_BASE_URL"] = ep.URL
	e := start(t, options{workspaces: op.url, env: env})

	t.Run("a turn per backend", func(t *testing.T) {
		// Four missions at once with a limit of three: one waits and
		// starts by itself when a slot frees.
		var ms []mission
		for _, b := range []string{"claudecode", "codex", "opencode", "amp"} {
			ms = append(ms, e.create(t, map[string]any{"backend": b, "model_effort": "medium"}))
		}
		queued := 0
		for _, m := range ms {
			if _, q := e.send(t, m.ID, "Please list the files."); q {
				queued++
			}
		}
		if queued != 1 {
			t.Errorf("%d of 4 messages queued with a limit of 3, want 1", queued)
		}
		for _, m := range ms {
			got := e.waitStatus(t, m.ID, "completed", "failed")
			evs := e.events(t, m.ID)
			if got.Status != "completed" {
				t.Fatalf("%s: status %s; events %v", m.Backend, got.Status, kinds(evs))
			}
			checkTurns(t, evs, 1)
			want := []string{"user_message", "mission_status_changed", "thinking", "tool_call", "mission_activity", "tool_result", "assistant_message", "mission_status_changed"}
			k := kinds(evs)
			i := 0
			for _, kind := range k {
				if i < len(want) && kind == want[i] {
					i++
				}
			}
			if i != len(want) {
				t.Errorf("%s: events %v do not contain %v in order", m.Backend, k, want)
			}
			var res storedEvent
			for _, ev := range evs {
				if ev.EventType == "tool_result" {
					res = ev
				}
			}
			if !strings.Contains(res.Content, ".home") {
				t.Errorf("%s: the tool did not run in the mission directory: %s", m.Backend, res.Content)
			}
			if count(evs, "text_delta") != 1 && m.Backend != "codex" && m.Backend != "opencode" {
				t.Errorf("%s: %d stored text rows, want one per turn", m.Backend, count(evs, "text_delta"))
			}
		}
		// A second turn resumes each CLI's session from the mission's home.
		for _, m := range ms {
			e.send(t, m.ID, "And again.")
		}
		for _, m := range ms {
			if got := e.waitTurns(t, m.ID, 2); got.Status != "completed" {
				t.Errorf("%s second turn: %s; %v", m.Backend, got.Status, kinds(e.events(t, m.ID)))
			}
			checkTurns(t, e.events(t, m.ID), 2)
		}
	})

	t.Run("queued message starts by itself", func(t *testing.T) {
		m := e.create(t, map[string]any{"backend": "claudecode"})
		s := e.openStream("/api/control/stream?mission_id="+m.ID, "")
		s.next(t)
		if _, q := e.send(t, m.ID, "sleep 2 then list"); q {
			t.Fatal("first message queued")
		}
		secondID, q := e.send(t, m.ID, "second one")
		if !q {
			t.Fatal("second message not queued behind the running turn")
		}
		done := 0
		evs := s.until(t, func(ev sseEvent) bool {
			if ev.name == "mission_status_changed" && ev.data["status"] == "completed" {
				done++
			}
			return done == 2
		})
		var order []string
		for _, ev := range evs {
			if ev.name == "user_message" {
				order = append(order, fmt.Sprintf("%v:%v", ev.data["id"] == secondID, ev.data["queued"]))
			}
		}
		// first (not queued), second (queued), second again when it starts.
		if strings.Join(order, " ") != "false:false true:true true:false" {
			t.Errorf("user messages on the stream: %v", order)
		}
		e.waitStatus(t, m.ID, "completed")
		checkTurns(t, e.events(t, m.ID), 2)
	})

	t.Run("cancel kills the process group", func(t *testing.T) {
		m := e.create(t, map[string]any{"backend": "codex"})
		// It ignores SIGINT and SIGTERM, and so does its grandchild: only the
		// SIGKILL at the end of the escalation, sent to the process group,
		// stops them.
		e.send(t, m.ID, "grandchild ignore-term ignore-int sleep 120 then list")
		testwait.For(t, time.Minute, "the CLI thinks", func() (int, bool) { n := count(e.events(t, m.ID), "thinking"); return n, n > 0 })
		if r := e.do("DELETE", "/api/control/missions/"+m.ID, nil); r.Status != 409 {
			t.Errorf("delete while running: %d %s", r.Status, r.Body)
		}
		if out, _ := op.exec(t, defaultWS, grandchildren, ""); strings.TrimSpace(out) == "0" {
			t.Fatal("the grandchild is not running before the cancel")
		}
		start := time.Now()
		if r := e.do("POST", "/api/control/missions/"+m.ID+"/cancel", nil); r.Status != 200 {
			t.Fatalf("cancel: %d %s", r.Status, r.Body)
		}
		got := e.waitStatus(t, m.ID, "failed", "completed")
		took := time.Since(start)
		t.Logf("cancelled in %v", took.Round(time.Millisecond))
		if took < 2*time.Second {
			t.Errorf("cancel took %v: the escalation (1s grace after SIGINT and SIGTERM) was skipped", took)
		}
		evs := e.events(t, m.ID)
		last := evs[len(evs)-2]
		if got.Status != "failed" || !got.Resumable || last.EventType != "assistant_message" || last.Content != "Cancelled" {
			t.Errorf("after cancel: %s; %v", got.Status, kinds(evs))
		}
		if out, _ := op.exec(t, defaultWS, grandchildren, ""); strings.TrimSpace(out) != "0" {
			t.Errorf("%s grandchildren survive the cancel", strings.TrimSpace(out))
		}
		// Resume: a new turn with the resume prompt, in the same session.
		var rm mission
		e.do("POST", "/api/control/missions/"+m.ID+"/resume", nil).Decode(t, &rm)
		if rm.Status != "active" {
			t.Errorf("resume answered status %s", rm.Status)
		}
		if got := e.waitTurns(t, m.ID, 2); got.Status != "completed" {
			t.Errorf("resumed turn: %s; %v", got.Status, kinds(e.events(t, m.ID)))
		}
		if r := e.do("DELETE", "/api/control/missions/"+m.ID, nil); r.Status != 200 {
			t.Errorf("delete after the turn: %d", r.Status)
		}
	})

	t.Run("garbage, big output and stderr-only failures", func(t *testing.T) {
		m := e.create(t, map[string]any{"backend": "amp"})
		e.send(t, m.ID, "big garbage")
		if got := e.waitStatus(t, m.ID, "completed", "failed"); got.Status != "completed" {
			t.Fatalf("big garbage: %s; %v", got.Status, kinds(e.events(t, m.ID)))
		}
		for _, ev := range e.events(t, m.ID) {
			if ev.EventType == "tool_result" && (len(ev.Content) > 100<<10 || !strings.Contains(ev.Content, "[truncated")) {
				t.Errorf("2 MB tool output stored as %d bytes", len(ev.Content))
			}
		}
		e.send(t, m.ID, "crash now")
		got := e.waitTurns(t, m.ID, 2)
		evs := e.events(t, m.ID)
		var msg string
		for _, ev := range evs {
			if ev.EventType == "error" {
				msg = ev.Content
			}
		}
		if got.Status != "failed" || !strings.Contains(msg, "authentication failed") {
			t.Errorf("stderr-only exit 1: %s, error %q", got.Status, msg)
		}
		checkTurns(t, evs, 2)
	})

	t.Run("a message to a mission whose workspace is gone is 404", func(t *testing.T) {
		b, _ := json.Marshal(map[string]any{"name": "doomed"})
		r, err := http.Post(op.url+"/api/workspaces", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var ws struct{ ID string }
		json.NewDecoder(r.Body).Decode(&ws)
		r.Body.Close()
		// The operator reads from its cache, which sees the new workspace
		// a moment after the create.
		testwait.For(t, time.Minute, "the operator finds the new workspace", func() (int, bool) {
			r, err := http.Get(op.url + "/api/workspaces/" + ws.ID)
			if err != nil {
				return 0, false
			}
			r.Body.Close()
			return r.StatusCode, r.StatusCode == 200
		})
		m := e.create(t, map[string]any{"workspace_id": ws.ID})
		req, _ := http.NewRequest("DELETE", op.url+"/api/workspaces/"+ws.ID, nil)
		if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode >= 300 {
			t.Fatalf("delete workspace: %v %v", err, r)
		}
		testwait.For(t, time.Minute, "the deleted workspace is gone", func() (int, bool) {
			r, err := http.Get(op.url + "/api/workspaces/" + ws.ID)
			if err != nil {
				return 0, false
			}
			r.Body.Close()
			return r.StatusCode, r.StatusCode == 404
		})
		// As for a workspace the user cannot see: 404, and nothing stored.
		resp := e.do("POST", "/api/control/message", map[string]any{"content": "hello", "mission_id": m.ID})
		var body struct{ Code string }
		resp.Decode(t, &body)
		if resp.Status != 404 || body.Code != "not_found" {
			t.Errorf("message: %d %s, want 404 not_found", resp.Status, resp.Body)
		}
		if evs := e.events(t, m.ID); len(evs) != 0 {
			t.Errorf("the refused message stored %v", kinds(evs))
		}
	})

	t.Run("a CLI gets only its backend's key, only in its environment", func(t *testing.T) {
		testCredentialsOnNode(t, e, op)
	})

	t.Run("built-in backend runs its tools in the workspace", func(t *testing.T) {
		testBuiltinOnNode(t, e, op, ep)
	})

	t.Run("watchdogs stop silent CLIs", func(t *testing.T) {
		testWatchdogs(t, op)
	})

	t.Run("kill mission-control mid-turn", func(t *testing.T) {
		testKillMidTurn(t, e, op)
	})
}

// testBuiltinOnNode runs a turn of the built-in backend whose tools (a
// real ls, write_file, read_file) run in the host workspace through the
// real operator; only the model is scripted.
func testBuiltinOnNode(t *testing.T, e *env, op *operator, ep *openaitest.Endpoint) {
	writeArgs := `{"path":"notes/hello.txt","content":"hi from the model\n"}`
	ep.Add(
		openaitest.Reply{Chunks: []string{
			openaitest.Content("Let me look around."),
			openaitest.CallStart(0, "call_ls", "shell"), openaitest.CallStart(1, "call_w", "write_file"),
			openaitest.CallArgs(0, `{"command":"ls -a"}`), openaitest.CallArgs(1, writeArgs[:20]), openaitest.CallArgs(1, writeArgs[20:]),
			openaitest.Finish("tool_calls"), openaitest.Usage(100, 20, 0, 0),
		}},
		openaitest.Reply{Chunks: []string{
			openaitest.CallStart(0, "call_r", "read_file"), openaitest.CallArgs(0, `{"path":"notes/hello.txt"}`),
			openaitest.Finish("tool_calls"),
		}},
		openaitest.Reply{Chunks: []string{openaitest.Content("I listed the files and wrote notes/hello.txt."), openaitest.Finish("stop")}},
	)
	m := e.create(t, map[string]any{"backend": "openai"})
	e.send(t, m.ID, "List the files and leave a note.")
	got := e.waitStatus(t, m.ID, "completed", "failed")
	evs := e.events(t, m.ID)
	if got.Status != "completed" {
		t.Fatalf("status %s; %v", got.Status, kinds(evs))
	}
	checkTurns(t, evs, 1)
	results := map[string]string{}
	for _, ev := range evs {
		if ev.EventType == "tool_result" {
			// A stored tool_result's content is the result as JSON: here a string.
			var text string
			if err := json.Unmarshal([]byte(ev.Content), &text); err != nil {
				t.Fatalf("tool_result content %q is not a JSON string: %v", ev.Content, err)
			}
			results[(*ev.ToolCallID)[strings.Index(*ev.ToolCallID, ":")+1:]] = text
		}
	}
	if !strings.Contains(results["call_ls"], ".home") || !strings.HasPrefix(results["call_ls"], "exit code 0") {
		t.Errorf("ls did not run in the mission directory: %q", results["call_ls"])
	}
	if results["call_r"] != "hi from the model\n" {
		t.Errorf("read_file: %q (write: %q)", results["call_r"], results["call_w"])
	}
	var ws struct{ Path string }
	r, err := http.Get(op.url + "/api/workspaces/" + defaultWS)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(r.Body).Decode(&ws)
	r.Body.Close()
	if out, code := op.exec(t, defaultWS, "cat "+ws.Path+"/missions/"+m.ID+"/notes/hello.txt", ""); code != 0 || out != "hi from the model\n" {
		t.Errorf("the file in the workspace: %d %q", code, out)
	}
	// The model saw the real outputs.
	msgs := ep.Requests()[len(ep.Requests())-2]["messages"].([]any)
	if c, _ := msgs[len(msgs)-2].(map[string]any)["content"].(string); !strings.Contains(c, ".home") {
		t.Errorf("the model got %q for ls", c)
	}
}

// testWatchdogs runs a mission-control with short watchdogs: a CLI that
// prints nothing, and one that goes silent after its first lines, are
// stopped like a cancel and their turns fail, resumable, with a clear error.
func testWatchdogs(t *testing.T, op *operator) {
	env := cliEnv()
	// The timeouts under test; scaled, because a slow machine takes longer
	// to start the CLIs that must say something before the startup timeout.
	env["SORTIE_MC_STARTUP_TIMEOUT"] = testwait.Scaled(2 * time.Second).String()
	env["SORTIE_MC_IDLE_TIMEOUT"] = testwait.Scaled(3 * time.Second).String()
	w := start(t, options{workspaces: op.url, env: env})
	cases := []struct{ backend, prompt, reason, words string }{
		{"claudecode", "mute then list", "startup_timeout", "startup timeout"},
		{"codex", "hang then list", "idle_timeout", "idle timeout"},
		{"amp", "ignore-term hang", "idle_timeout", "idle timeout"},
	}
	ids := make([]string, len(cases))
	start := time.Now()
	for i, c := range cases {
		m := w.create(t, map[string]any{"backend": c.backend})
		ids[i] = m.ID
		w.send(t, m.ID, c.prompt)
	}
	for i, c := range cases {
		got := w.waitStatus(t, ids[i], "failed", "completed")
		evs := w.events(t, ids[i])
		var msg string
		for _, ev := range evs {
			if ev.EventType == "error" && strings.Contains(ev.Content, "timeout") {
				msg = ev.Content
			}
		}
		if got.Status != "failed" || !got.Resumable || !strings.Contains(msg, c.words) {
			t.Errorf("%s: status %s resumable %v error %q; %v", c.backend, got.Status, got.Resumable, msg, kinds(evs))
		}
		if r := terminalReason(t, w, ids[i]); r != c.reason {
			t.Errorf("%s: terminal_reason %q, want %q", c.backend, r, c.reason)
		}
		checkTurns(t, evs, 1)
	}
	t.Logf("all stopped after %v", time.Since(start).Round(time.Millisecond))
	if out, _ := op.exec(t, defaultWS, "ps -eo args | grep -c '^"+cliDir+"/' || true", ""); strings.TrimSpace(out) != "0" {
		t.Errorf("%s fake CLIs still run after the watchdogs", strings.TrimSpace(out))
	}
}

// testKillMidTurn runs mission-control as a child process, SIGKILLs it
// while a turn runs, and checks that the in-process instance (another
// replica) takes the run over and finishes it with every event exactly once.
func testKillMidTurn(t *testing.T, e *env, op *operator) {
	bin := testbin.Path(t, "mission-control")
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "SORTIE_REDIS_URL="+e.redis.URL, "SORTIE_AUTH_DEV_MODE=true", "SORTIE_WORKSPACES_URL="+op.url,
		"SORTIE_LISTEN_ADDR="+addr, "SORTIE_MC_LEASE_TTL=2s", "SORTIE_MC_ANTHROPIC_API_KEY=sk-ant-api03-test", "SORTIE_MC_REPLICA_ID=child")
	for k, v := range cliEnv() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("child output:\n%s", tail(out.String(), 3000))
		}
	}()
	child := &env{t: t, base: "http://" + addr, client: e.client, redis: e.redis, svc: e.svc}
	testwait.For(t, time.Minute, "the child mission-control serves /healthz", func() (int, bool) {
		r, err := http.Get(child.base + "/healthz")
		if err != nil {
			return 0, false
		}
		r.Body.Close()
		return r.StatusCode, r.StatusCode == 200
	})
	// The in-process replica must not start this turn: create and send
	// through the child, which takes the lease when the message arrives.
	m := child.create(t, map[string]any{"backend": "claudecode"})
	sse := e.openStream("/api/control/stream?mission_id="+m.ID, "")
	sse.next(t)
	child.send(t, m.ID, "sleep 4 then list")
	testwait.For(t, time.Minute, "the CLI thinks", func() (int, bool) { n := count(e.events(t, m.ID), "thinking"); return n, n > 0 })
	before := len(e.events(t, m.ID))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	got := e.waitStatus(t, m.ID, "completed", "failed")
	t.Logf("turn finished %v after the kill (lease 2s); %d events before the kill", time.Since(killed).Round(time.Millisecond), before)
	evs := e.events(t, m.ID)
	if got.Status != "completed" {
		t.Fatalf("status %s; %v", got.Status, kinds(evs))
	}
	checkTurns(t, evs, 1)
	if count(evs, "tool_call") != 1 || count(evs, "user_message") != 1 || count(evs, "mission_status_changed") != 2 {
		t.Errorf("duplicates after the takeover: %v", kinds(evs))
	}
	// The live stream saw each stored event once, in order.
	seen := map[string]bool{}
	for _, ev := range sse.until(t, func(ev sseEvent) bool { return ev.name == "mission_status_changed" && ev.data["status"] == "completed" }) {
		if ev.id != "" && seen[ev.id] {
			t.Errorf("event id %s twice on the stream", ev.id)
		}
		seen[ev.id] = true
	}
}

// testCredentialsOnNode runs CLIs that write their environment to a file
// in the workspace's /tmp (off the volume), through the real operator and
// workspace-agent: each holds its backend's one key (OpenCode without a
// model: one, not all), and no key is in the Workspace objects, the Pods,
// the operator's answers or a file on the volume.
func testCredentialsOnNode(t *testing.T, e *env, op *operator) {
	keys := map[string]string{"anthropic": "sk-ant-api03-test", "openai": "sk-test", "amp": "amp-test"} // testConfig's
	for _, tc := range []struct {
		backend string
		want    map[string]string
	}{
		{"claudecode", map[string]string{"ANTHROPIC_API_KEY": "anthropic"}},
		{"opencode", map[string]string{"ANTHROPIC_API_KEY": "anthropic"}},
		{"codex", map[string]string{"CODEX_API_KEY": "openai", "OPENAI_API_KEY": "openai"}},
		{"amp", map[string]string{"AMP_API_KEY": "amp"}},
	} {
		m := e.create(t, map[string]any{"backend": tc.backend})
		dump := "/tmp/env-" + m.ID
		e.send(t, m.ID, "dump-env "+dump+" then list")
		if got := e.waitStatus(t, m.ID, "completed", "failed"); got.Status != "completed" {
			t.Fatalf("%s: %s; %v", tc.backend, got.Status, kinds(e.events(t, m.ID)))
		}
		out, code := op.exec(t, defaultWS, "cat "+dump+" && rm -f "+dump, "")
		if code != 0 {
			t.Fatalf("%s: no environment dump: %s", tc.backend, out)
		}
		vars := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				vars[k] = v
			}
		}
		for name, provider := range tc.want {
			if vars[name] != keys[provider] {
				t.Errorf("%s: %s = %q, want the %s key", tc.backend, name, vars[name], provider)
			}
		}
		for provider, key := range keys {
			used := false
			for _, p := range tc.want {
				used = used || p == provider
			}
			if !used && strings.Contains(out, key) {
				t.Errorf("%s: the %s key is in the CLI's environment", tc.backend, provider)
			}
		}
	}
	// Nowhere else: the Workspace objects and Pods of the namespace, the
	// operator's answers, the volume.
	ctx := context.Background()
	var seen strings.Builder
	for _, path := range []string{"/api/v1/namespaces/" + op.ns + "/pods", "/apis/sortie.dev/v1alpha1/namespaces/" + op.ns + "/workspaces"} {
		raw, err := op.cluster.Clientset.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		seen.Write(raw)
	}
	for _, path := range []string{"/api/workspaces", "/api/workspaces/" + defaultWS, "/api/workspaces/" + defaultWS + "/processes"} {
		r, err := http.Get(op.url + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		seen.Write(b)
	}
	for provider, key := range keys {
		if strings.Contains(seen.String(), key) {
			t.Errorf("the %s key is in a Pod, a Workspace or an operator answer", provider)
		}
		if out, _ := op.exec(t, defaultWS, "grep -rlF -- "+key+" /workspaces 2>/dev/null | grep -v '^/workspaces/.sortie/bin/' || true", ""); strings.TrimSpace(out) != "" {
			t.Errorf("the %s key is in files on the volume: %s", provider, out)
		}
	}
}
