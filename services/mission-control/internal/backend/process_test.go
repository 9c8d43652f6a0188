package backend_test

import (
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

	"sortie.dev/services/kit/testbin"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/amp"
	"sortie.dev/services/mission-control/internal/backend/backendtest"
	"sortie.dev/services/mission-control/internal/backend/claudecode"
	"sortie.dev/services/mission-control/internal/backend/codex"
	"sortie.dev/services/mission-control/internal/backend/opencode"
	"sortie.dev/services/mission-control/internal/event"
)

// The fake agent comes from `make build` (kit/testbin); it is copied once
// per test binary into a folder of its own, where each CLI name is a
// symlink to it, as the real CLIs would be installed (the fake picks its
// dialect from argv[0]). The copy outlives the test that made it, which a
// binary testbin built into that test's temporary folder would not.
var (
	installOnce sync.Once
	binDir      string
	installErr  error
)

func fakeAgent(t *testing.T) string {
	t.Helper()
	installOnce.Do(func() {
		installErr = errors.New("installing the fake agent failed in an earlier test")
		src := testbin.Path(t, "fake-agent")
		dir, err := os.MkdirTemp("", "fake-agent-")
		if err != nil {
			installErr = err
			return
		}
		binDir = dir
		installErr = installFakeAgent(src, dir)
	})
	if installErr != nil {
		t.Fatal(installErr)
	}
	return binDir
}

func installFakeAgent(src, dir string) error {
	raw, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	exe := filepath.Join(dir, "fake-agent")
	if err := os.WriteFile(exe, raw, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"claude", "codex", "opencode", "amp"} {
		if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type cli struct {
	name    string
	command func(backend.Request) (backend.Command, error)
	parser  func(backend.ParserOptions) backendtest.Parser
	creds   map[string]string
}

var clis = []cli{
	{"claude", claudecode.Command, func(o backend.ParserOptions) backendtest.Parser { return claudecode.NewParser(o) },
		claudecode.CredentialEnv("sk-ant-api03-test")},
	{"codex", codex.Command, func(o backend.ParserOptions) backendtest.Parser { return codex.NewParser(o) },
		codex.CredentialEnv("sk-test")},
	{"opencode", opencode.Command, func(o backend.ParserOptions) backendtest.Parser { return opencode.NewParser(o) },
		map[string]string{"ANTHROPIC_API_KEY": "sk-ant-api03-test"}},
	{"amp", amp.Command, func(o backend.ParserOptions) backendtest.Parser { return amp.NewParser(o) },
		amp.CredentialEnv("amp-test")},
}

type turn struct {
	events  []event.Event
	summary backend.Summary
	exit    backend.Exit
}

// runTurn runs the command for r as a real process the way the
// workspace-agent does (own process group, stdout and stderr into one
// stream, stdin written then closed), feeds every line to a parser and
// finishes it. cancel, when set, decides after each batch of events whether
// to interrupt the run now (SIGINT to the process group).
func runTurn(t *testing.T, c cli, r backend.Request, cancel func([]event.Event) bool) turn {
	t.Helper()
	r.Executable = filepath.Join(fakeAgent(t), c.name)
	cmd, err := c.command(r)
	if err != nil {
		t.Fatalf("%s command: %v", c.name, err)
	}
	proc := exec.CommandContext(testwait.Context(t, time.Minute), cmd.Argv[0], cmd.Argv[1:]...)
	proc.Dir = cmd.Dir
	proc.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range cmd.Env {
		proc.Env = append(proc.Env, k+"="+v)
	}
	proc.Stdin = strings.NewReader(cmd.Stdin)
	proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	proc.Stdout, proc.Stderr = wr, wr
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()

	p := c.parser(backend.ParserOptions{RunID: "run1"})
	var evs []event.Event
	cancelled := false
	if err := backend.ReadLines(rd, backend.DefaultMaxLine, func(l []byte) {
		evs = append(evs, p.Feed(l)...)
		if cancel != nil && !cancelled && cancel(evs) {
			cancelled = true
			_ = syscall.Kill(-proc.Process.Pid, syscall.SIGINT)
		}
	}); err != nil {
		t.Fatal(err)
	}
	rd.Close()
	x := backend.Exit{Cancelled: cancelled}
	var ee *exec.ExitError
	if err := proc.Wait(); errors.As(err, &ee) {
		x.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	evs = append(evs, p.Finish(x)...)
	if err := backendtest.Check(evs, true); err != nil {
		t.Errorf("%s: invariants: %v", c.name, err)
	}
	return turn{events: evs, summary: p.Summary(), exit: x}
}

func request(t *testing.T, c cli, prompt string) backend.Request {
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return backend.Request{Prompt: prompt, WorkDir: work, Home: t.TempDir(), Credentials: c.creds,
		Effort: backend.EffortMedium, Env: map[string]string{"CLAUDECODE": "1"}}
}

func find(evs []event.Event, k event.Kind) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func TestFakeAgentFullTurnAndResume(t *testing.T) {
	for _, c := range clis {
		t.Run(c.name, func(t *testing.T) {
			r := request(t, c, "Please list the files.")
			first := runTurn(t, c, r, nil)
			if first.summary.Outcome != backend.OutcomeCompleted || first.exit.Code != 0 {
				t.Fatalf("outcome %q exit %d; events %v", first.summary.Outcome, first.exit.Code, backendtest.Kinds(first.events))
			}
			calls, results := find(first.events, event.KindToolCall), find(first.events, event.KindToolResult)
			if len(calls) != 1 || len(results) != 1 || calls[0].ToolCallID != results[0].ToolCallID {
				t.Fatalf("want one tool call and its result, got %v / %v", calls, results)
			}
			if !strings.Contains(string(results[0].Result), "main.go") || results[0].IsError {
				t.Errorf("the tool did not run in the work dir: %s", results[0].Result)
			}
			if len(find(first.events, event.KindThinking)) == 0 {
				t.Errorf("no thinking event")
			}
			if len(find(first.events, event.KindTextDelta)) == 0 {
				t.Errorf("no text_delta event")
			}
			answer := find(first.events, event.KindAssistantMessage)[0]
			if !answer.Success || !strings.HasPrefix(answer.Content, "Done.") {
				t.Errorf("answer = %+v", answer)
			}
			if first.summary.SessionID == "" {
				t.Fatal("no session id captured")
			}

			r.Prompt, r.Resume = "And again.", first.summary.SessionID
			second := runTurn(t, c, r, nil)
			if second.summary.Outcome != backend.OutcomeCompleted {
				t.Fatalf("resumed turn: outcome %q, events %+v", second.summary.Outcome, second.events)
			}
			if second.summary.SessionID != first.summary.SessionID {
				t.Errorf("resumed session = %q, want %q", second.summary.SessionID, first.summary.SessionID)
			}
		})
	}
}

func TestFakeAgentFailures(t *testing.T) {
	tests := map[string]struct {
		prompt      string
		noCreds     bool
		wantMessage string
	}{
		"scripted API failure": {prompt: "please fail", wantMessage: "scripted failure"},
		"stderr only":          {prompt: "crash now", wantMessage: "authentication failed"},
		"no credentials":       {prompt: "hello", noCreds: true, wantMessage: ""},
	}
	for name, tc := range tests {
		for _, c := range clis {
			if tc.noCreds && c.name == "opencode" {
				continue // opencode finds keys in many places; the fake does not check
			}
			t.Run(name+"/"+c.name, func(t *testing.T) {
				r := request(t, c, tc.prompt)
				if tc.noCreds {
					r.Credentials = nil
				}
				got := runTurn(t, c, r, nil)
				if got.summary.Outcome != backend.OutcomeFailed || got.exit.Code == 0 {
					t.Fatalf("outcome %q exit %d, want failed", got.summary.Outcome, got.exit.Code)
				}
				errs := find(got.events, event.KindError)
				if len(errs) == 0 || !errs[len(errs)-1].Fatal || !strings.Contains(errs[len(errs)-1].Message, tc.wantMessage) {
					t.Errorf("errors = %+v, want a fatal one mentioning %q", errs, tc.wantMessage)
				}
			})
		}
	}
}

func TestFakeAgentCancel(t *testing.T) {
	for _, c := range clis {
		t.Run(c.name, func(t *testing.T) {
			r := request(t, c, "sleep 30 then list")
			start := time.Now()
			got := runTurn(t, c, r, func(evs []event.Event) bool {
				return slices.ContainsFunc(evs, func(e event.Event) bool { return e.Kind == event.KindThinking }) ||
					c.name == "opencode" // opencode prints nothing before the sleep but a step_start
			})
			if time.Since(start) > testwait.Scaled(20*time.Second) {
				t.Errorf("cancel took %v", time.Since(start))
			}
			if got.summary.Outcome != backend.OutcomeCancelled {
				t.Fatalf("outcome %q, events %v", got.summary.Outcome, backendtest.Kinds(got.events))
			}
			am := find(got.events, event.KindAssistantMessage)
			if len(am) != 1 || am[0].Content != "Cancelled" || !am[0].Resumable {
				t.Errorf("assistant messages = %+v", am)
			}
		})
	}
}

func TestFakeAgentBigOutputAndGarbage(t *testing.T) {
	for _, c := range clis {
		t.Run(c.name, func(t *testing.T) {
			got := runTurn(t, c, request(t, c, "big garbage"), nil)
			if got.summary.Outcome != backend.OutcomeCompleted {
				t.Fatalf("outcome %q", got.summary.Outcome)
			}
			// The tool printed 2 MB on one line: past the line limit it
			// arrives with its strings cut, and still parses.
			res := find(got.events, event.KindToolResult)
			if len(res) != 1 || len(res[0].Result) > backend.DefaultFieldLimit+64 || !strings.Contains(string(res[0].Result), "[truncated ") {
				t.Fatalf("want one tool result cut to %d bytes, got %d results", backend.DefaultFieldLimit, len(res))
			}
			if got.summary.NonJSON < 2 {
				t.Errorf("non-JSON lines = %d, want the garbage counted", got.summary.NonJSON)
			}
		})
	}
}

// TestFakeAgentResumeNeedsSameHome shows why Home must be per mission and
// stable: the session lives under it, so resuming elsewhere fails the way
// the real CLIs do.
func TestFakeAgentResumeNeedsSameHome(t *testing.T) {
	for _, c := range clis[:2] { // claude and codex keep sessions on disk
		t.Run(c.name, func(t *testing.T) {
			r := request(t, c, "hello")
			first := runTurn(t, c, r, nil)
			r.Resume, r.Home = first.summary.SessionID, t.TempDir()
			got := runTurn(t, c, r, nil)
			if got.summary.Outcome != backend.OutcomeFailed {
				t.Fatalf("outcome %q, want failed", got.summary.Outcome)
			}
			if msg := find(got.events, event.KindError)[0].Message; !strings.Contains(msg, first.summary.SessionID) {
				t.Errorf("error %q does not name the session", msg)
			}
		})
	}
}
