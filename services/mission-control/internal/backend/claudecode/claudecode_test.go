package claudecode

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
	base := backend.Request{
		Prompt: "list the files", WorkDir: "/workspace/m1", Home: "/workspace/.home/m1",
		Credentials: map[string]string{"ANTHROPIC_API_KEY": "sk-ant-api-SECRET"},
		Env:         map[string]string{"CLAUDECODE": "1", "CLAUDE_CODE_ENTRYPOINT": "cli", "GOFLAGS": "-mod=mod"},
	}
	head := []string{"claude", "-p", "--output-format=stream-json", "--verbose",
		"--include-partial-messages", "--permission-mode=bypassPermissions"}
	tests := map[string]struct {
		edit     func(*backend.Request)
		wantTail []string
		wantErr  error
	}{
		"new session": {
			edit:     func(r *backend.Request) { r.NewSessionID = "0b5c9f5e-1111-4222-8333-944455556666" },
			wantTail: []string{"--session-id=0b5c9f5e-1111-4222-8333-944455556666"},
		},
		"resume wins over new id": {
			edit: func(r *backend.Request) {
				r.Resume, r.NewSessionID = "9f1c", "other"
				r.Model, r.Effort, r.Agent = "opus", backend.EffortHigh, "reviewer"
			},
			wantTail: []string{"--model=opus", "--effort=high", "--agent=reviewer", "--resume=9f1c"},
		},
		"flag-like resume id": {edit: func(r *backend.Request) { r.Resume = "--dangerously" }, wantErr: backend.ErrBadID},
		"bad effort":          {edit: func(r *backend.Request) { r.Effort = "max" }, wantErr: backend.ErrInvalidEffort},
		"no home":             {edit: func(r *backend.Request) { r.Home = "" }, wantErr: backend.ErrNoHome},
		"blank prompt":        {edit: func(r *backend.Request) { r.Prompt = " \n" }, wantErr: backend.ErrEmptyPrompt},
		"bad credential name": {edit: func(r *backend.Request) { r.Credentials = map[string]string{"A=B": "x"} }, wantErr: backend.ErrBadEnvName},
		"custom executable":   {edit: func(r *backend.Request) { r.Executable = "/opt/bin/claude" }},
		"huge prompt is fine": {edit: func(r *backend.Request) { r.Prompt = strings.Repeat("x", 1<<20) }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := base
			if tc.edit != nil {
				tc.edit(&r)
			}
			cmd, err := Command(r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Command() err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			want := append(append([]string{}, head...), tc.wantTail...)
			if r.Executable != "" {
				want[0] = r.Executable
			}
			if diff := cmp.Diff(want, cmd.Argv); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
			if cmd.Stdin != r.Prompt || cmd.Dir != r.WorkDir {
				t.Errorf("stdin/dir = %.20q/%q, want the prompt and %q", cmd.Stdin, cmd.Dir, r.WorkDir)
			}
			for _, a := range cmd.Argv {
				if strings.Contains(a, "SECRET") || strings.Contains(a, r.Prompt) {
					t.Errorf("argv carries a secret or the prompt: %q", a)
				}
			}
			wantEnv := map[string]string{
				"ANTHROPIC_API_KEY": "sk-ant-api-SECRET", "GOFLAGS": "-mod=mod",
				"HOME": r.Home, "CLAUDE_CONFIG_DIR": r.Home + "/.claude", "IS_SANDBOX": "1",
				"XDG_CONFIG_HOME": r.Home + "/.config", "XDG_DATA_HOME": r.Home + "/.local/share",
				"XDG_STATE_HOME": r.Home + "/.local/state", "XDG_CACHE_HOME": r.Home + "/.cache",
				"NO_COLOR": "1", "TERM": "dumb",
			}
			if diff := cmp.Diff(wantEnv, cmd.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCredentialEnv(t *testing.T) {
	if got := CredentialEnv("sk-ant-oat01-x"); got["CLAUDE_CODE_OAUTH_TOKEN"] != "sk-ant-oat01-x" {
		t.Errorf("OAuth token: %v", got)
	}
	if got := CredentialEnv("sk-ant-api03-x"); got["ANTHROPIC_API_KEY"] != "sk-ant-api03-x" {
		t.Errorf("API key: %v", got)
	}
}

func TestParseGolden(t *testing.T) {
	tests := map[string]struct {
		exit        backend.Exit
		wantOutcome backend.Outcome
		wantKinds   []event.Kind // nil: not checked beyond the golden file
	}{
		"session":     {exit: backend.Exit{Code: 0}, wantOutcome: backend.OutcomeCompleted},
		"api_error":   {exit: backend.Exit{Code: 1}, wantOutcome: backend.OutcomeFailed, wantKinds: []event.Kind{event.KindError, event.KindAssistantMessage}},
		"interrupted": {exit: backend.Exit{Code: 1, Cancelled: true}, wantOutcome: backend.OutcomeCancelled},
		"max_turns":   {exit: backend.Exit{Code: 1}, wantOutcome: backend.OutcomeFailed},
		"stderr_only": {exit: backend.Exit{Code: 1}, wantOutcome: backend.OutcomeFailed, wantKinds: []event.Kind{event.KindError, event.KindAssistantMessage}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := backendtest.Golden(t, NewParser(backend.ParserOptions{}), name, tc.exit)
			if got.Summary.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q, want %q", got.Summary.Outcome, tc.wantOutcome)
			}
			if tc.wantKinds != nil {
				if diff := cmp.Diff(tc.wantKinds, backendtest.Kinds(got.Events)); diff != "" {
					t.Errorf("kinds (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestSessionDetails pins what the acceptance flow relies on, independent of
// the golden file's exact text.
func TestSessionDetails(t *testing.T) {
	got := backendtest.Golden(t, NewParser(backend.ParserOptions{}), "session", backend.Exit{})
	s := got.Summary
	if s.SessionID != "9f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b" || s.Model != "claude-sonnet-4-5" {
		t.Errorf("session/model = %q/%q", s.SessionID, s.Model)
	}
	if s.Unknown["brand_new_event"] != 1 || s.NonJSON != 1 {
		t.Errorf("unknown = %v, non-JSON = %d; want the unknown type counted and one noise line", s.Unknown, s.NonJSON)
	}
	if want := (event.Usage{InputTokens: 42, OutputTokens: 55, CacheReadTokens: 18040}); s.Usage != want {
		t.Errorf("usage = %+v, want the result's totals %+v", s.Usage, want)
	}
	last := got.Events[len(got.Events)-1]
	if last.Kind != event.KindAssistantMessage || !last.Success || last.CostCents != 4 ||
		last.Content != "There are two Go files: a.go and b.go." {
		t.Errorf("final event = %+v", last)
	}
	// Streamed text is not repeated when the complete block arrives.
	var deltas []string
	for _, e := range got.Events {
		if e.Kind == event.KindTextDelta {
			deltas = append(deltas, e.Delta)
		}
	}
	want := []string{"I'll list ", "the files.", "\n\nThere are two Go files: ", "a.go and b.go."}
	if diff := cmp.Diff(want, deltas); diff != "" {
		t.Errorf("text deltas (-want +got):\n%s", diff)
	}
}

func TestFeedPieces(t *testing.T) {
	tests := map[string]struct {
		lines []string
		want  []event.Event
	}{
		"unstreamed text block becomes one delta": {
			lines: []string{`{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"Hi"}]}}`},
			want:  []event.Event{{Kind: event.KindTextDelta, Content: "Hi", Delta: "Hi"}},
		},
		"redacted thinking gets a placeholder": {
			lines: []string{`{"type":"assistant","message":{"id":"m","content":[{"type":"redacted_thinking","data":"xx"}]}}`},
			want:  []event.Event{{Kind: event.KindThinking, Content: "[redacted thinking]", Done: true}},
		},
		"garbage and odd shapes are skipped": {
			lines: []string{``, `not json`, `{"type":`, `[1,2]`, `{"type":"assistant","message":{"content":42}}`,
				`{"type":"user","message":{"content":"echoed prompt"}}`, `{"type":"stream_event"}`},
		},
		"ANSI and CR around a line": {
			lines: []string{"\x1b[2K\x1b[1G" + `{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"ok"}]}}` + "\r"},
			want:  []event.Event{{Kind: event.KindTextDelta, Content: "ok", Delta: "ok"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := NewParser(backend.ParserOptions{})
			var got []event.Event
			for _, l := range tc.lines {
				got = append(got, p.Feed([]byte(l))...)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLargeToolOutput(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 5<<16) // 5 MiB
	line := `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"` + big + `"}]}}`
	p := NewParser(backend.ParserOptions{})
	evs := p.Feed([]byte(line))
	if got := backendtest.Kinds(evs); !cmp.Equal(got, []event.Kind{event.KindToolCall, event.KindMissionActivity, event.KindToolResult}) {
		t.Fatalf("kinds = %v", got)
	}
	if n := len(evs[2].Result); n != len(big)+2 {
		t.Errorf("result is %d bytes, want %d", n, len(big)+2)
	}
}

func FuzzParse(f *testing.F) {
	for _, b := range backendtest.Fixtures(f) {
		f.Add(b, 0)
		f.Add(b, 1)
	}
	f.Fuzz(func(t *testing.T, data []byte, code int) {
		backendtest.Fuzz(t, NewParser(backend.ParserOptions{RunID: "r"}), data, code)
	})
}
