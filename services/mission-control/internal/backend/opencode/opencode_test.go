package opencode

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/backendtest"
	"sortie.dev/services/mission-control/internal/event"
)

func TestCommand(t *testing.T) {
	tests := map[string]struct {
		edit       func(*backend.Request)
		wantArgv   []string
		wantConfig map[string]any
	}{
		"defaults": {
			wantArgv:   []string{"opencode", "run", "--format=json", "--thinking"},
			wantConfig: map[string]any{"permission": map[string]any{"edit": "allow", "bash": "allow", "webfetch": "allow"}},
		},
		"everything, merged with the workspace's own config": {
			edit: func(r *backend.Request) {
				r.Model, r.Effort, r.Agent, r.Resume = "anthropic/claude-sonnet-4-5", backend.EffortHigh, "build", "ses_abc"
				r.Env = map[string]string{"OPENCODE_CONFIG_CONTENT": `{"model":"x/y","permission":{"bash":"ask","read":"allow"}}`}
			},
			wantArgv: []string{"opencode", "run", "--format=json", "--thinking", "--model=anthropic/claude-sonnet-4-5",
				"--variant=high", "--agent=build", "--session=ses_abc"},
			wantConfig: map[string]any{"model": "x/y", "permission": map[string]any{
				"edit": "allow", "bash": "allow", "webfetch": "allow", "read": "allow"}},
		},
		"invalid workspace config is replaced": {
			edit:       func(r *backend.Request) { r.Env = map[string]string{"OPENCODE_CONFIG_CONTENT": `{nope`} },
			wantArgv:   []string{"opencode", "run", "--format=json", "--thinking"},
			wantConfig: map[string]any{"permission": map[string]any{"edit": "allow", "bash": "allow", "webfetch": "allow"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := backend.Request{Prompt: "hello", Home: "/h", WorkDir: "/w",
				Credentials: map[string]string{"OPENROUTER_API_KEY": "or-SECRET"}}
			if tc.edit != nil {
				tc.edit(&r)
			}
			cmd, err := Command(r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantArgv, cmd.Argv); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
			var cfg map[string]any
			if err := json.Unmarshal([]byte(cmd.Env["OPENCODE_CONFIG_CONTENT"]), &cfg); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantConfig, cfg); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if cmd.Stdin != "hello" || cmd.Env["OPENROUTER_API_KEY"] != "or-SECRET" || cmd.Env["XDG_DATA_HOME"] != "/h/.local/share" {
				t.Errorf("stdin %q env %v", cmd.Stdin, cmd.Env)
			}
		})
	}
}

func TestParseGolden(t *testing.T) {
	tests := map[string]struct {
		exit        backend.Exit
		wantOutcome backend.Outcome
	}{
		"session":   {wantOutcome: backend.OutcomeCompleted},
		"old_build": {wantOutcome: backend.OutcomeCompleted},
		"api_error": {exit: backend.Exit{Code: 1}, wantOutcome: backend.OutcomeFailed},
		"aborted":   {exit: backend.Exit{Code: 1, Cancelled: true}, wantOutcome: backend.OutcomeCancelled},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := backendtest.Golden(t, NewParser(backend.ParserOptions{Model: "anthropic/claude-sonnet-4-5"}), name, tc.exit)
			if got.Summary.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q, want %q", got.Summary.Outcome, tc.wantOutcome)
			}
		})
	}
}

func TestSessionUsageAndCost(t *testing.T) {
	got := backendtest.Golden(t, NewParser(backend.ParserOptions{Model: "anthropic/claude-sonnet-4-5"}), "session", backend.Exit{})
	want := event.Usage{InputTokens: 2600, OutputTokens: 100, ReasoningTokens: 10, CacheReadTokens: 18100, CacheWriteTokens: 50}
	if got.Summary.Usage != want {
		t.Errorf("usage = %+v, want the sum of the steps %+v", got.Summary.Usage, want)
	}
	if c := got.Summary.CostUSD; c == nil || *c < 0.01639 || *c > 0.01641 {
		t.Errorf("cost = %v, want 0.0164", c)
	}
	last := got.Events[len(got.Events)-1]
	if last.Kind != event.KindAssistantMessage || last.CostCents != 2 || last.Content != "Done. There are two Go files." {
		t.Errorf("last event = %+v", last)
	}
}

func FuzzParse(f *testing.F) {
	for _, b := range backendtest.Fixtures(f) {
		f.Add(b, 0)
	}
	f.Fuzz(func(t *testing.T, data []byte, code int) {
		backendtest.Fuzz(t, NewParser(backend.ParserOptions{}), data, code)
	})
}
