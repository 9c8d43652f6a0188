package backend

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/mission-control/internal/event"
)

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // several bufio buffers
	tests := map[string]struct {
		in   string
		max  int
		want []string
	}{
		"lines and CRLF":        {in: "a\r\nb\n\nc", max: 100, want: []string{"a", "b", "", "c"}},
		"long line kept whole":  {in: long + "\nend\n", max: MaxLine, want: []string{long, "end"}},
		"overlong line is cut":  {in: long + "\nend\n", max: 1000, want: []string{long[:1000], "end"}},
		"short line over max":   {in: "abcdef\n", max: 3, want: []string{"abcdef"}},
		"no trailing newline":   {in: "last", max: 10, want: []string{"last"}},
		"empty input":           {in: "", max: 10},
		"trailing newline only": {in: "a\n", max: 10, want: []string{"a"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			err := ReadLines(strings.NewReader(tc.in), tc.max, func(l []byte) { got = append(got, string(l)) })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClean(t *testing.T) {
	tests := map[string]struct {
		in       string
		want     string
		wantJSON bool
	}{
		"plain json":      {in: `{"a":1}`, want: `{"a":1}`, wantJSON: true},
		"ansi and cr":     {in: "\x1b[2K\x1b[32m{\"a\":1}\x1b[0m\r", want: `{"a":1}`, wantJSON: true},
		"osc title":       {in: "\x1b]0;claude\x07{}", want: `{}`, wantJSON: true},
		"nul bytes":       {in: "\x00{}\x00", want: `{}`, wantJSON: true},
		"stderr text":     {in: "Error: nope", want: "Error: nope"},
		"array not event": {in: `[1]`, want: `[1]`},
		"blank":           {in: "  \t", want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, isJSON := Clean([]byte(tc.in))
			if string(got) != tc.want || isJSON != tc.wantJSON {
				t.Errorf("Clean(%q) = %q, %v; want %q, %v", tc.in, got, isJSON, tc.want, tc.wantJSON)
			}
		})
	}
}

func TestParseEffortAndCheckID(t *testing.T) {
	for _, s := range []string{"", "low", "medium", "high"} {
		if _, err := ParseEffort(s); err != nil {
			t.Errorf("ParseEffort(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"xhigh", "HIGH", "max"} {
		if _, err := ParseEffort(s); !errors.Is(err, ErrInvalidEffort) {
			t.Errorf("ParseEffort(%q) = %v, want ErrInvalidEffort", s, err)
		}
	}
	for _, id := range []string{"-x", "a b", "a\nb", strings.Repeat("a", 300)} {
		if err := CheckID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("CheckID(%q) = %v, want ErrBadID", id, err)
		}
	}
	if err := CheckID("T-2775dc92-90ed"); err != nil {
		t.Error(err)
	}
}

func TestEmitterToolCalls(t *testing.T) {
	e := NewEmitter("x", ParserOptions{RunID: "r"})
	var evs []event.Event
	evs = append(evs, e.ToolCall("a", "Bash", json.RawMessage(`{"command":"ls -la\nmore"}`), "")...)
	evs = append(evs, e.ToolCall("a", "Bash", nil, "")...)                   // repeated: ignored
	evs = append(evs, e.ToolResult("b", "Read", String("x"), false, nil)...) // unannounced: synthetic call
	evs = append(evs, e.ToolResult("b", "Read", String("y"), false, nil)...) // second result: ignored
	evs = append(evs, e.ToolCall("", "odd", json.RawMessage(`not json`), "p")...)
	evs = append(evs, e.Complete("done")...)
	want := []event.Event{
		{Kind: event.KindToolCall, ToolCallID: "r:a", ToolName: "Bash", Args: json.RawMessage(`{"command":"ls -la\nmore"}`)},
		{Kind: event.KindMissionActivity, Label: "Running: ls -la", ToolName: "Bash"},
		{Kind: event.KindToolCall, ToolCallID: "r:b", ToolName: "Read", Args: json.RawMessage(`{}`)},
		{Kind: event.KindMissionActivity, Label: "Reading: Read", ToolName: "Read"},
		{Kind: event.KindToolResult, ToolCallID: "r:b", ToolName: "Read", Result: json.RawMessage(`"x"`)},
		{Kind: event.KindToolCall, ToolCallID: "r:x-call-1", ToolName: "odd", Args: json.RawMessage(`"not json"`), ParentToolCallID: "r:p"},
		{Kind: event.KindMissionActivity, Label: "Using: odd", ToolName: "odd"},
		// Complete closes the calls still open, in call order.
		{Kind: event.KindToolResult, ToolCallID: "r:a", ToolName: "Bash", Result: String("the tool did not finish: the agent stopped"), IsError: true},
		{Kind: event.KindToolResult, ToolCallID: "r:x-call-1", ToolName: "odd", Result: String("the tool did not finish: the agent stopped"), IsError: true},
		{Kind: event.KindAssistantMessage, Content: "done", Success: true},
	}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestEmitterFinish(t *testing.T) {
	tests := map[string]struct {
		prep        func(*Emitter) []event.Event
		exit        Exit
		wantOutcome Outcome
		wantContent string
	}{
		"exit 0 completes with the last text": {
			prep:        func(e *Emitter) []event.Event { return append(e.TextBlock("first"), e.TextBlock("second")...) },
			wantOutcome: OutcomeCompleted, wantContent: "second",
		},
		"cancel wins over the exit status": {
			exit: Exit{Code: 1, Cancelled: true}, wantOutcome: OutcomeCancelled, wantContent: "Cancelled",
		},
		"non-zero exit uses the last error": {
			prep:        func(e *Emitter) []event.Event { e.Noise([]byte("noise")); return e.Error("rate limited", "") },
			exit:        Exit{Code: 1},
			wantOutcome: OutcomeFailed, wantContent: "x exited with status 1: rate limited",
		},
		"non-zero exit uses stderr tail": {
			prep:        func(e *Emitter) []event.Event { e.Noise([]byte("line one")); return nil },
			exit:        Exit{Code: 2, Stderr: "boom\n"},
			wantOutcome: OutcomeFailed, wantContent: "x exited with status 2: line one\nboom",
		},
		"killed without output": {
			exit: Exit{Code: -1}, wantOutcome: OutcomeFailed, wantContent: "x was killed by a signal without output",
		},
		"terminal line wins over exit": {
			prep:        func(e *Emitter) []event.Event { return e.Complete("ok") },
			exit:        Exit{Code: 1},
			wantOutcome: OutcomeCompleted, wantContent: "ok",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := NewEmitter("x", ParserOptions{})
			var evs []event.Event
			if tc.prep != nil {
				evs = tc.prep(e)
			}
			evs = append(evs, e.Finish(tc.exit)...)
			if got := e.Summary().Outcome; got != tc.wantOutcome {
				t.Errorf("outcome = %q, want %q", got, tc.wantOutcome)
			}
			if e.Finish(tc.exit) != nil {
				t.Error("a second Finish emitted events")
			}
			var content string
			for _, ev := range evs {
				if ev.Kind == event.KindAssistantMessage {
					content = ev.Content
				}
			}
			if content != tc.wantContent {
				t.Errorf("answer = %q, want %q", content, tc.wantContent)
			}
		})
	}
}

// TestTextIsBuiltOnce checks that the accumulated Content of text deltas
// shares one buffer: copying the text so far for every delta would allocate
// the square of the text (here about 500 MB instead of a few).
func TestTextIsBuiltOnce(t *testing.T) {
	e := NewEmitter("x", ParserOptions{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var last event.Event
	for range 10000 {
		last = e.TextDelta("0123456789")[0]
	}
	runtime.ReadMemStats(&after)
	if len(last.Content) != 100000 {
		t.Fatalf("text is %d bytes", len(last.Content))
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 50<<20 {
		t.Errorf("%d bytes allocated for 100 kB of text", n)
	}
}

func TestActivity(t *testing.T) {
	tests := map[string]struct {
		tool, args string
		want       string
	}{
		"bash":        {"Bash", `{"command":"go test ./..."}`, "Running: go test ./..."},
		"codex shell": {"shell", `{"command":"bash -lc ls"}`, "Running: bash -lc ls"},
		"read":        {"Read", `{"file_path":"/w/internal/main.rs"}`, "Reading: main.rs"},
		"opencode":    {"read", `{"filePath":"/w/a.go"}`, "Reading: a.go"},
		"edit":        {"Edit", `{"file_path":"/w/b.go"}`, "Editing: b.go"},
		"patch":       {"apply_patch", `{"changes":[{"path":"x/README.md","kind":"update"}]}`, "Editing: README.md"},
		"mcp":         {"mcp__github__search_issues", `{}`, "mcp: github: search_issues"},
		"long":        {"Bash", `{"command":"` + strings.Repeat("a", 100) + `"}`, "Running: " + strings.Repeat("a", 79) + "…"},
		"unknown":     {"Frobnicate", `[]`, "Using: Frobnicate"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Activity(tc.tool, json.RawMessage(tc.args)); got.Label != tc.want || got.ToolName != tc.tool {
				t.Errorf("Activity = %q (%q), want %q", got.Label, got.ToolName, tc.want)
			}
		})
	}
}
