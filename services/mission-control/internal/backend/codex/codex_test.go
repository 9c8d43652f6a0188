package codex

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/backendtest"
	"sortie.dev/services/mission-control/internal/event"
)

func TestCommand(t *testing.T) {
	head := []string{"codex", "exec", "--json", "--skip-git-repo-check",
		"--dangerously-bypass-approvals-and-sandbox", "--color=never", "--cd=/w"}
	summary := []string{"-c", `model_reasoning_summary="auto"`}
	tests := map[string]struct {
		edit     func(*backend.Request)
		wantArgv []string
		wantErr  error
	}{
		"defaults": {
			wantArgv: concat(head, summary, []string{"-"}),
		},
		"model and effort": {
			edit:     func(r *backend.Request) { r.Model, r.Effort = "gpt-5.1-codex", backend.EffortLow },
			wantArgv: concat(head, []string{"--model=gpt-5.1-codex", "-c", `model_reasoning_effort="low"`}, summary, []string{"-"}),
		},
		"resume a thread": {
			edit:     func(r *backend.Request) { r.Resume, r.Effort = "0199a213-81c0", backend.EffortHigh },
			wantArgv: concat(head, []string{"-c", `model_reasoning_effort="high"`}, summary, []string{"resume", "0199a213-81c0", "-"}),
		},
		"id with a space": {edit: func(r *backend.Request) { r.Resume = "a b" }, wantErr: backend.ErrBadID},
		"effort xhigh":    {edit: func(r *backend.Request) { r.Effort = "xhigh" }, wantErr: backend.ErrInvalidEffort},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := backend.Request{Prompt: "explain", Home: "/h", WorkDir: "/w", Credentials: CredentialEnv("sk-SECRET")}
			if tc.edit != nil {
				tc.edit(&r)
			}
			cmd, err := Command(r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.wantArgv, cmd.Argv); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
			if cmd.Stdin != "explain" || cmd.Env["CODEX_HOME"] != "/h/.codex" || cmd.Env["CODEX_API_KEY"] != "sk-SECRET" {
				t.Errorf("stdin %q, env %v", cmd.Stdin, cmd.Env)
			}
			if strings.Contains(strings.Join(cmd.Argv, " "), "SECRET") {
				t.Error("a credential is in argv")
			}
		})
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestParseGolden(t *testing.T) {
	tests := map[string]struct {
		opts        backend.ParserOptions
		exit        backend.Exit
		wantOutcome backend.Outcome
		wantUsage   event.Usage
	}{
		"session": {
			opts: backend.ParserOptions{RunID: "t1", Model: "gpt-5.1-codex"}, wantOutcome: backend.OutcomeCompleted,
			wantUsage: event.Usage{InputTokens: 24763, CacheReadTokens: 24448, OutputTokens: 122},
		},
		"resumed": {
			opts:        backend.ParserOptions{RunID: "t2", PriorUsage: event.Usage{InputTokens: 24763, CacheReadTokens: 24448, OutputTokens: 122}},
			wantOutcome: backend.OutcomeCompleted,
			wantUsage:   event.Usage{InputTokens: 30000 - 24763, CacheReadTokens: 25000 - 24448, OutputTokens: 150 - 122},
		},
		"turn_failed": {opts: backend.ParserOptions{RunID: "t3"}, exit: backend.Exit{Code: 1}, wantOutcome: backend.OutcomeFailed},
		"interrupted": {opts: backend.ParserOptions{RunID: "t4"}, exit: backend.Exit{Code: 1, Cancelled: true}, wantOutcome: backend.OutcomeCancelled},
		"no_auth":     {exit: backend.Exit{Code: 1}, wantOutcome: backend.OutcomeFailed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := backendtest.Golden(t, NewParser(tc.opts), name, tc.exit)
			if got.Summary.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q, want %q", got.Summary.Outcome, tc.wantOutcome)
			}
			if got.Summary.Usage != tc.wantUsage {
				t.Errorf("usage = %+v, want %+v", got.Summary.Usage, tc.wantUsage)
			}
		})
	}
}

// TestSessionMapsEveryItemType guards against the reference's bug: shell
// commands and file edits silently dropped.
func TestSessionMapsEveryItemType(t *testing.T) {
	got := backendtest.Golden(t, NewParser(backend.ParserOptions{RunID: "t1", Model: "gpt-5.1-codex"}), "session", backend.Exit{})
	names := map[string]string{}
	for _, e := range got.Events {
		if e.Kind == event.KindToolResult {
			names[e.ToolCallID] = e.ToolName
		}
	}
	want := map[string]string{
		"t1:item_1": "shell", "t1:item_2": "shell", "t1:item_3": "apply_patch",
		"t1:item_4": "mcp__github__search_issues", "t1:item_7": "web_search",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("tool results (-want +got):\n%s", diff)
	}
	if got.Summary.SessionID != "0199a213-81c0-7800-8aa1-bbab2a035a53" {
		t.Errorf("thread id = %q", got.Summary.SessionID)
	}
	if got.Summary.Unknown["item:image_generation"] != 1 {
		t.Errorf("unknown = %v, want the unknown item type counted", got.Summary.Unknown)
	}
}

func FuzzParse(f *testing.F) {
	for _, b := range backendtest.Fixtures(f) {
		f.Add(b, 0)
		f.Add(b, 130)
	}
	f.Fuzz(func(t *testing.T, data []byte, code int) {
		backendtest.Fuzz(t, NewParser(backend.ParserOptions{RunID: "f"}), data, code)
	})
}
