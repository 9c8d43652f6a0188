package openai

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/backendtest"
	"sortie.dev/services/mission-control/internal/backend/openai/openaitest"
	"sortie.dev/services/mission-control/internal/event"
)

// localWorkspace stands in for the workspace-operator's exec API in these
// unit tests: it runs the command for real with /bin/sh in a directory of
// this machine. The real operator is exercised by the node test in
// internal/service.
type localWorkspace struct {
	mu   sync.Mutex
	reqs []ExecRequest
}

func (l *localWorkspace) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	l.mu.Lock()
	l.reqs = append(l.reqs, req)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", req.Command)
	cmd.Dir = req.Dir
	// Like the operator, kill the whole process group on timeout or cancel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	cmd.Env = os.Environ()
	for k, v := range req.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(req.Stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		res.TimedOut, res.ExitCode = true, -1
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	case err != nil:
		return res, err
	}
	return res, nil
}

type fixture struct {
	dir string
	ws  *localWorkspace
	ep  *openaitest.Endpoint
}

func setup(t *testing.T, replies ...openaitest.Reply) fixture {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".home"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from the workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fixture{dir: dir, ws: &localWorkspace{}, ep: openaitest.New(t, replies...)}
}

func (f fixture) config() Config {
	return Config{BaseURL: f.ep.URL, APIKey: "sk-test", Model: "default-model", MaxRetries: 0}
}

func (f fixture) turn(prompt string) Turn {
	return Turn{
		Request: backend.Request{Prompt: prompt, WorkDir: f.dir, Home: f.dir + "/.home",
			Credentials: map[string]string{"OPENAI_API_KEY": "sk-test"}},
		History: []Message{{"user", "earlier question"}, {"assistant", "earlier answer"}},
	}
}

// drive runs a turn to its end and returns its events.
func drive(t *testing.T, ctx context.Context, cfg Config, ws Workspace, tn Turn, x backend.Exit) ([]event.Event, *Run, error) {
	t.Helper()
	r, err := NewRun(cfg, ws, tn, backend.ParserOptions{RunID: "turn1234"})
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	err = r.Drive(ctx, func(e event.Event) error { evs = append(evs, e); return nil })
	if err != nil {
		x.Cancelled = x.Cancelled || errors.Is(err, context.Canceled)
	}
	evs = append(evs, r.Finish(x)...)
	if cerr := backendtest.Check(evs, true); cerr != nil {
		t.Errorf("invariants: %v; kinds %v", cerr, backendtest.Kinds(evs))
	}
	return evs, r, err
}

func last(evs []event.Event, k event.Kind) event.Event {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Kind == k {
			return evs[i]
		}
	}
	return event.Event{}
}

func TestLoop(t *testing.T) {
	type check func(t *testing.T, f fixture, evs []event.Event, s backend.Summary)
	tests := []struct {
		name    string
		replies []openaitest.Reply
		prompt  string
		model   string
		effort  backend.Effort
		maxStep int
		kinds   []event.Kind
		outcome backend.Outcome
		check   check
	}{
		{
			name:    "text answer with usage",
			replies: []openaitest.Reply{{Chunks: []string{openaitest.Content("Hel"), openaitest.Content("lo"), openaitest.Finish("stop"), openaitest.Usage(900, 40, 512, 16)}}},
			kinds:   []event.Kind{event.KindTextDelta, event.KindTextDelta, event.KindAssistantMessage},
			outcome: backend.OutcomeCompleted,
			check: func(t *testing.T, f fixture, evs []event.Event, s backend.Summary) {
				am := last(evs, event.KindAssistantMessage)
				if am.Content != "Hello" || !am.Success || am.Model != "test-model" {
					t.Errorf("answer %+v", am)
				}
				want := event.Usage{InputTokens: 900, OutputTokens: 40, CacheReadTokens: 512, ReasoningTokens: 16}
				if am.Usage == nil || *am.Usage != want || s.Usage != want {
					t.Errorf("usage %+v / %+v, want %+v", am.Usage, s.Usage, want)
				}
				req := f.ep.Requests()[0]
				if req["model"] != "default-model" || req["stream"] != true || req["reasoning_effort"] != nil {
					t.Errorf("request model %v stream %v effort %v", req["model"], req["stream"], req["reasoning_effort"])
				}
				if so, _ := req["stream_options"].(map[string]any); so["include_usage"] != true {
					t.Errorf("stream_options %v", req["stream_options"])
				}
				roles := []string{}
				for _, m := range req["messages"].([]any) {
					roles = append(roles, m.(map[string]any)["role"].(string))
				}
				if strings.Join(roles, ",") != "system,user,assistant,user" {
					t.Errorf("roles %v: want the system prompt, the history and the prompt", roles)
				}
				if f.ep.Auth()[0] != "Bearer sk-test" {
					t.Errorf("authorization %q", f.ep.Auth()[0])
				}
			},
		},
		{
			name: "interleaved tool calls split across chunks run in the workspace",
			replies: []openaitest.Reply{
				{Chunks: []string{
					openaitest.Content("Let me look."),
					openaitest.CallStart(0, "call_ls", "shell"),
					openaitest.CallStart(1, "call_w", "write_file"),
					openaitest.CallArgs(0, `{"comm`), openaitest.CallArgs(1, `{"path":"sub/out.txt",`),
					openaitest.CallArgs(0, `and":"ls"}`), openaitest.CallArgs(1, `"content":"written by the model\n"}`),
					openaitest.Finish("tool_calls"), openaitest.Usage(100, 10, 0, 0),
				}},
				{Chunks: []string{openaitest.CallStart(0, "call_r", "read_file"), openaitest.CallArgs(0, `{"path":"sub/out.txt"}`), openaitest.Finish("tool_calls"), openaitest.Usage(200, 5, 0, 0)}},
				{Chunks: []string{openaitest.Content("Done: "), openaitest.Content("listed and wrote."), openaitest.Finish("stop"), openaitest.Usage(300, 7, 0, 0)}},
			},
			kinds: []event.Kind{
				event.KindTextDelta,
				event.KindToolCall, event.KindMissionActivity, event.KindToolResult,
				event.KindToolCall, event.KindMissionActivity, event.KindToolResult,
				event.KindToolCall, event.KindMissionActivity, event.KindToolResult,
				event.KindTextDelta, event.KindTextDelta, event.KindAssistantMessage,
			},
			outcome: backend.OutcomeCompleted,
			check: func(t *testing.T, f fixture, evs []event.Event, s backend.Summary) {
				var results []event.Event
				for _, e := range evs {
					if e.Kind == event.KindToolResult {
						results = append(results, e)
					}
				}
				var ls string
				_ = json.Unmarshal(results[0].Result, &ls)
				if results[0].ToolCallID != "turn1234:call_ls" || !strings.Contains(ls, "hello.txt") || results[0].IsError ||
					results[0].ExitCode == nil || *results[0].ExitCode != 0 {
					t.Errorf("ls result %+v (%q)", results[0], ls)
				}
				b, err := os.ReadFile(filepath.Join(f.dir, "sub", "out.txt"))
				if err != nil || string(b) != "written by the model\n" {
					t.Errorf("written file: %q %v", b, err)
				}
				var read string
				_ = json.Unmarshal(results[2].Result, &read)
				if read != "written by the model\n" {
					t.Errorf("read_file result %q", read)
				}
				if am := last(evs, event.KindAssistantMessage); am.Content != "Done: listed and wrote." {
					t.Errorf("answer %q: want the last step's text", am.Content)
				}
				if s.Usage.InputTokens != 600 || s.Usage.OutputTokens != 22 {
					t.Errorf("usage %+v: want the sum of the steps", s.Usage)
				}
				// The second request carries the assistant's calls and one
				// tool message per call, joined by id.
				reqs := f.ep.Requests()
				msgs := reqs[1]["messages"].([]any)
				asst := msgs[len(msgs)-3].(map[string]any)
				calls := asst["tool_calls"].([]any)
				if len(calls) != 2 || asst["content"] != "Let me look." {
					t.Fatalf("assistant message %v", asst)
				}
				fn := calls[0].(map[string]any)["function"].(map[string]any)
				if fn["name"] != "shell" || fn["arguments"] != `{"command":"ls"}` {
					t.Errorf("first call %v", fn)
				}
				for i, id := range []string{"call_ls", "call_w"} {
					m := msgs[len(msgs)-2+i].(map[string]any)
					if m["role"] != "tool" || m["tool_call_id"] != id {
						t.Errorf("tool message %d: %v", i, m)
					}
				}
				// Tools run in the mission directory with the mission's
				// home, never with the endpoint's key.
				for _, r := range f.ws.reqs {
					if r.Dir != f.dir || r.Env["HOME"] != f.dir+"/.home" || r.Env["OPENAI_API_KEY"] != "" {
						t.Errorf("exec %q in %q with HOME %q key %q", r.Command, r.Dir, r.Env["HOME"], r.Env["OPENAI_API_KEY"])
					}
				}
			},
		},
		{
			name: "reasoning streamed as thinking, model override and effort",
			replies: []openaitest.Reply{{Chunks: []string{
				openaitest.Reasoning("reasoning_content", "Think"), openaitest.Reasoning("reasoning_content", "ing."),
				openaitest.Content("Answer."), openaitest.Finish("stop"),
			}}},
			model:   "my-local-model",
			effort:  backend.EffortHigh,
			kinds:   []event.Kind{event.KindThinking, event.KindThinking, event.KindThinking, event.KindTextDelta, event.KindAssistantMessage},
			outcome: backend.OutcomeCompleted,
			check: func(t *testing.T, f fixture, evs []event.Event, s backend.Summary) {
				if th := evs[2]; !th.Done || th.Content != "Thinking." {
					t.Errorf("thinking %+v", th)
				}
				req := f.ep.Requests()[0]
				if req["model"] != "my-local-model" || req["reasoning_effort"] != "high" {
					t.Errorf("model %v effort %v", req["model"], req["reasoning_effort"])
				}
			},
		},
		{
			name:    "reasoning field of OpenRouter",
			replies: []openaitest.Reply{{Chunks: []string{openaitest.Reasoning("reasoning", "Hmm."), openaitest.Content("Yes."), openaitest.Finish("stop")}}},
			kinds:   []event.Kind{event.KindThinking, event.KindThinking, event.KindTextDelta, event.KindAssistantMessage},
			outcome: backend.OutcomeCompleted,
		},
		{
			name:    "error mid-stream",
			replies: []openaitest.Reply{{Chunks: []string{openaitest.Content("Partial"), `{"error":{"message":"upstream overloaded","type":"server_error"}}`}}},
			kinds:   []event.Kind{event.KindTextDelta, event.KindError, event.KindAssistantMessage},
			outcome: backend.OutcomeFailed,
			check: func(t *testing.T, f fixture, evs []event.Event, s backend.Summary) {
				e := last(evs, event.KindError)
				if !e.Fatal || !e.Resumable || e.Code != "llm_error" || !strings.Contains(e.Message, "upstream overloaded") {
					t.Errorf("error %+v", e)
				}
			},
		},
		{
			name:    "HTTP error before the stream",
			replies: []openaitest.Reply{{Status: 401, Body: `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`}},
			kinds:   []event.Kind{event.KindError, event.KindAssistantMessage},
			outcome: backend.OutcomeFailed,
			check: func(t *testing.T, f fixture, evs []event.Event, s backend.Summary) {
				if e := evs[0]; !strings.Contains(e.Message, "401") || !strings.Contains(e.Message, "Incorrect API key") {
					t.Errorf("error %q", e.Message)
				}
			},
		},
		{
			name: "failing command and unknown tool go back to the model",
			replies: []openaitest.Reply{
				{Chunks: []string{
					openaitest.CallStart(0, "c1", "shell"), openaitest.CallArgs(0, `{"command":"echo oops >&2; exit 3"}`),
					openaitest.CallStart(1, "c2", "browse"), openaitest.CallArgs(1, `{}`), openaitest.Finish("tool_calls"),
				}},
				{Chunks: []string{openaitest.Content("It failed."), openaitest.Finish("stop")}},
			},
			kinds: []event.Kind{
				event.KindToolCall, event.KindMissionActivity, event.KindToolResult,
				event.KindToolCall, event.KindMissionActivity, event.KindToolResult,
				event.KindTextDelta, event.KindAssistantMessage,
			},
			outcome: backend.OutcomeCompleted,
			check: func(t *testing.T, f fixture, evs []event.Event, s backend.Summary) {
				if r := evs[2]; !r.IsError || r.ExitCode == nil || *r.ExitCode != 3 || !strings.Contains(string(r.Result), "oops") {
					t.Errorf("failed command result %+v %s", r, r.Result)
				}
				if r := evs[5]; !r.IsError || !strings.Contains(string(r.Result), "unknown tool") {
					t.Errorf("unknown tool result %s", r.Result)
				}
				msgs := f.ep.Requests()[1]["messages"].([]any)
				if c := msgs[len(msgs)-2].(map[string]any)["content"].(string); !strings.HasPrefix(c, "exit code 3\noops") {
					t.Errorf("the model got %q", c)
				}
			},
		},
		{
			name: "step limit",
			replies: []openaitest.Reply{
				{Chunks: []string{openaitest.CallStart(0, "a", "shell"), openaitest.CallArgs(0, `{"command":"true"}`), openaitest.Finish("tool_calls")}},
				{Chunks: []string{openaitest.CallStart(0, "b", "shell"), openaitest.CallArgs(0, `{"command":"true"}`), openaitest.Finish("tool_calls")}},
			},
			maxStep: 2,
			kinds: []event.Kind{
				event.KindToolCall, event.KindMissionActivity, event.KindToolResult,
				event.KindToolCall, event.KindMissionActivity, event.KindToolResult,
				event.KindError, event.KindAssistantMessage,
			},
			outcome: backend.OutcomeFailed,
			check: func(t *testing.T, f fixture, evs []event.Event, s backend.Summary) {
				if e := last(evs, event.KindError); e.Code != "max_steps" || !e.Resumable {
					t.Errorf("error %+v", e)
				}
			},
		},
		{
			name:    "output cut at the token limit",
			replies: []openaitest.Reply{{Chunks: []string{openaitest.Content("Half an ans"), openaitest.Finish("length")}}},
			kinds:   []event.Kind{event.KindTextDelta, event.KindError, event.KindAssistantMessage},
			outcome: backend.OutcomeCompleted,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, tc.replies...)
			cfg := f.config()
			cfg.MaxSteps = tc.maxStep
			tn := f.turn(cmpOr(tc.prompt, "list the files"))
			tn.Request.Model, tn.Request.Effort = tc.model, tc.effort
			evs, r, err := drive(t, context.Background(), cfg, f.ws, tn, backend.Exit{})
			if err != nil {
				t.Fatalf("drive: %v", err)
			}
			if got := backendtest.Kinds(evs); !slices.Equal(got, tc.kinds) {
				t.Errorf("kinds\n got %v\nwant %v", got, tc.kinds)
			}
			s := r.Summary()
			if s.Outcome != tc.outcome {
				t.Errorf("outcome %q, want %q", s.Outcome, tc.outcome)
			}
			if tc.check != nil {
				tc.check(t, f, evs, s)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestCancelMidStream cancels while the endpoint is in the middle of a
// stream: Drive returns at once and the turn ends as cancelled.
func TestCancelMidStream(t *testing.T) {
	f := setup(t, openaitest.Reply{Chunks: []string{openaitest.Content("Working"), openaitest.Content(" on it")}, HangAfter: 1})
	ctx, cancel := context.WithCancel(context.Background())
	r, err := NewRun(f.config(), f.ws, f.turn("go"), backend.ParserOptions{RunID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		evs []event.Event
	)
	errc := make(chan error, 1)
	go func() {
		errc <- r.Drive(ctx, func(e event.Event) error {
			mu.Lock()
			defer mu.Unlock()
			evs = append(evs, e)
			if e.Kind == event.KindTextDelta {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err = <-errc:
	case <-testwait.After(10 * time.Second):
		t.Fatalf("Drive did not return within %v of the cancel", testwait.Scaled(10*time.Second))
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Drive: %v, want context.Canceled", err)
	}
	evs = append(evs, r.Finish(backend.Exit{Cancelled: true})...)
	if err := backendtest.Check(evs, true); err != nil {
		t.Error(err)
	}
	if am := last(evs, event.KindAssistantMessage); am.Content != "Cancelled" || !am.Resumable {
		t.Errorf("answer %+v", am)
	}
	if s := r.Summary(); s.Outcome != backend.OutcomeCancelled {
		t.Errorf("outcome %q", s.Outcome)
	}
}

// TestCancelDuringTool cancels while a tool runs: the call gets an error
// result and the turn ends as cancelled.
func TestCancelDuringTool(t *testing.T) {
	f := setup(t, openaitest.Reply{Chunks: []string{openaitest.CallStart(0, "c", "shell"), openaitest.CallArgs(0, `{"command":"sleep 30"}`), openaitest.Finish("tool_calls")}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(300*time.Millisecond, cancel) // the cancel under test, while the tool's sleep runs
	start := time.Now()
	evs, r, err := drive(t, ctx, f.config(), f.ws, f.turn("go"), backend.Exit{})
	if !errors.Is(err, context.Canceled) || time.Since(start) > testwait.Scaled(10*time.Second) {
		t.Fatalf("Drive: %v after %v", err, time.Since(start))
	}
	want := []event.Kind{event.KindToolCall, event.KindMissionActivity, event.KindToolResult, event.KindAssistantMessage}
	if got := backendtest.Kinds(evs); !slices.Equal(got, want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
	if !evs[2].IsError || r.Summary().Outcome != backend.OutcomeCancelled {
		t.Errorf("result %+v outcome %q", evs[2], r.Summary().Outcome)
	}
}

// TestWatchdogs: an endpoint that sends nothing, or stops sending, fails
// the turn with a clear, resumable error.
func TestWatchdogs(t *testing.T) {
	tests := []struct {
		name string
		rep  openaitest.Reply
		code string
	}{
		{"startup", openaitest.Reply{HangAfter: -1}, "startup_timeout"},
		{"idle", openaitest.Reply{Chunks: []string{openaitest.Content("Start"), openaitest.Content("never")}, HangAfter: 1}, "idle_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, tc.rep)
			cfg := f.config()
			cfg.Startup, cfg.Idle = 300*time.Millisecond, 300*time.Millisecond
			start := time.Now()
			evs, r, err := drive(t, context.Background(), cfg, f.ws, f.turn("go"), backend.Exit{})
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > testwait.Scaled(5*time.Second) {
				t.Errorf("took %v", d)
			}
			e := last(evs, event.KindError)
			if e.Code != tc.code || !e.Fatal || !e.Resumable || !strings.Contains(e.Message, "timeout") {
				t.Errorf("error %+v", e)
			}
			if r.Summary().Outcome != backend.OutcomeFailed {
				t.Errorf("outcome %q", r.Summary().Outcome)
			}
		})
	}
}

// TestEmitErrorStops: a failed store (the lease was lost) stops the loop.
func TestEmitErrorStops(t *testing.T) {
	f := setup(t, openaitest.Reply{Chunks: []string{openaitest.Content("a"), openaitest.Content("b"), openaitest.Finish("stop")}})
	r, err := NewRun(f.config(), f.ws, f.turn("go"), backend.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lost := errors.New("lease lost")
	n := 0
	err = r.Drive(context.Background(), func(event.Event) error { n++; return lost })
	if !errors.Is(err, lost) || n != 1 {
		t.Errorf("Drive: %v after %d emits", err, n)
	}
}

func TestLargeWriteInPieces(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", (writeChunk*2+100)/16)
	args, _ := json.Marshal(map[string]string{"path": "big.txt", "content": big})
	f := setup(t,
		openaitest.Reply{Chunks: []string{openaitest.CallStart(0, "w", "write_file"), openaitest.CallArgs(0, string(args)), openaitest.Finish("tool_calls")}},
		openaitest.Reply{Chunks: []string{openaitest.Content("ok"), openaitest.Finish("stop")}})
	if _, _, err := drive(t, context.Background(), f.config(), f.ws, f.turn("write"), backend.Exit{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "big.txt"))
	if err != nil || string(b) != big {
		t.Fatalf("file has %d bytes, want %d (%v)", len(b), len(big), err)
	}
	if n := len(f.ws.reqs); n != 3 {
		t.Errorf("%d execs, want 3 pieces", n)
	}
}
