package amp

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/backendtest"
	"sortie.dev/services/mission-control/internal/event"
)

func TestCommand(t *testing.T) {
	big := strings.Repeat("y", MaxArgPrompt+1)
	tests := map[string]struct {
		edit      func(*backend.Request)
		wantArgv  []string
		wantStdin bool
	}{
		"prompt right after --execute": {
			wantArgv: []string{"amp", "--execute", "fix it", "--stream-json", "--stream-json-thinking", "--dangerously-allow-all"},
		},
		"continue a thread in deep mode": {
			edit: func(r *backend.Request) { r.Resume, r.Effort = "T-2775dc92", backend.EffortHigh },
			wantArgv: []string{"amp", "threads", "continue", "T-2775dc92", "--execute", "fix it", "--stream-json",
				"--stream-json-thinking", "--dangerously-allow-all", "--mode=deep"},
		},
		"agent naming a mode wins over effort": {
			edit: func(r *backend.Request) { r.Agent, r.Effort = "rush", backend.EffortHigh },
			wantArgv: []string{"amp", "--execute", "fix it", "--stream-json", "--stream-json-thinking",
				"--dangerously-allow-all", "--mode=rush"},
		},
		"model is ignored": {
			edit:     func(r *backend.Request) { r.Model = "gpt-5" },
			wantArgv: []string{"amp", "--execute", "fix it", "--stream-json", "--stream-json-thinking", "--dangerously-allow-all"},
		},
		"long prompt goes on stdin": {
			edit: func(r *backend.Request) { r.Prompt = big },
			wantArgv: []string{"amp", "-x", "--stream-json", "--stream-json-input", "--stream-json-thinking",
				"--dangerously-allow-all"},
			wantStdin: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := backend.Request{Prompt: "fix it", Home: "/h", WorkDir: "/w",
				Credentials: CredentialEnv("amp-SECRET")}
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
			if cmd.Env["AMP_API_KEY"] != "amp-SECRET" || cmd.Env["HOME"] != "/h" {
				t.Errorf("env = %v", cmd.Env)
			}
			if !tc.wantStdin {
				if cmd.Stdin != "" {
					t.Errorf("stdin = %.40q, want none", cmd.Stdin)
				}
				return
			}
			var msg struct {
				Type    string `json:"type"`
				Message struct {
					Content []struct{ Text string } `json:"content"`
				} `json:"message"`
			}
			if err := json.Unmarshal([]byte(cmd.Stdin), &msg); err != nil || msg.Type != "user" ||
				len(msg.Message.Content) != 1 || msg.Message.Content[0].Text != big {
				t.Errorf("stdin is not one user message carrying the prompt: %v", err)
			}
		})
	}
}

func TestParseGolden(t *testing.T) {
	tests := map[string]struct {
		exit        backend.Exit
		wantOutcome backend.Outcome
	}{
		"session":        {exit: backend.Exit{}, wantOutcome: backend.OutcomeCompleted},
		"out_of_credits": {exit: backend.Exit{Code: 1}, wantOutcome: backend.OutcomeFailed},
		"killed":         {exit: backend.Exit{Code: -1, Cancelled: true}, wantOutcome: backend.OutcomeCancelled},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := backendtest.Golden(t, NewParser(backend.ParserOptions{}), name, tc.exit)
			if got.Summary.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q, want %q", got.Summary.Outcome, tc.wantOutcome)
			}
		})
	}
}

func TestSessionSumsUsageAndDropsEcho(t *testing.T) {
	got := backendtest.Golden(t, NewParser(backend.ParserOptions{}), "session", backend.Exit{})
	want := event.Usage{InputTokens: 12783 + 100 + 150, OutputTokens: 8 + 20 + 9,
		CacheReadTokens: 12416 + 100, CacheWriteTokens: 367}
	if got.Summary.Usage != want {
		t.Errorf("usage = %+v, want the sum over messages %+v", got.Summary.Usage, want)
	}
	if got.Summary.SessionID != "T-2775dc92-90ed-4f85-8b73-8f9a0e8b1c2d" || got.Summary.CostUSD != nil {
		t.Errorf("summary = %+v, want the thread id and no cost", got.Summary)
	}
	for _, e := range got.Events {
		if strings.Contains(e.Content, "count them") {
			t.Errorf("the echoed prompt became %s", e.Kind)
		}
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
