package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

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
		"lines and CRLF":          {in: "a\r\nb\n\nc", max: 100, want: []string{"a", "b", "", "c"}},
		"long line kept whole":    {in: long + "\nend\n", max: DefaultMaxLine, want: []string{long, "end"}},
		"overlong line is cut":    {in: long + "\nend\n", max: 1000, want: []string{long[:1000], "end"}},
		"short line over max":     {in: "abcdef\n", max: 3, want: []string{"abc"}},
		"overlong json is shrunk": {in: `{"a":"` + long + `"}` + "\nend\n", max: 1000, want: []string{`{"a":"` + long[:500] + `\n[truncated 204300 bytes]"}`, "end"}},
		"no trailing newline":     {in: "last", max: 10, want: []string{"last"}},
		"empty input":             {in: "", max: 10},
		"trailing newline only":   {in: "a\n", max: 10, want: []string{"a"}},
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
	e := NewEmitter("x", ParserOptions{TextLimit: 1 << 20})
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

// A turn's streamed text and each thinking block stop at the text limit:
// cut once, with a marker, and nothing after it; the next thinking block
// starts afresh.
func TestStreamedTextIsCapped(t *testing.T) {
	e := NewEmitter("x", ParserOptions{TextLimit: 1000})
	var evs []event.Event
	for range 300 {
		evs = append(evs, e.TextDelta("é123456789")...) // 11 bytes
		evs = append(evs, e.ThinkingDelta("0123456789")...)
	}
	evs = append(evs, e.ThinkingDone("")...)
	evs = append(evs, e.ThinkingDelta("again")...)
	var text, thinking []event.Event
	for _, ev := range evs {
		if ev.Kind == event.KindTextDelta {
			text = append(text, ev)
		} else {
			thinking = append(thinking, ev)
		}
	}
	last := text[len(text)-1]
	if len(text) != 91 || !strings.HasSuffix(last.Content, CutMarker(1000)) || len(last.Content) > 1000+len(CutMarker(1000)) || !utf8.ValidString(last.Content) {
		t.Errorf("%d text events, the last %d bytes: %q", len(text), len(last.Content), last.Content[max(len(last.Content)-80, 0):])
	}
	if n := len(thinking); n != 103 || !strings.HasSuffix(thinking[100].Content, CutMarker(1000)) || thinking[101].Content != thinking[100].Content || !thinking[101].Done || thinking[102].Content != "again" {
		t.Errorf("%d thinking events", n)
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

// Lines passes each line with its end offset and says which were cut; a
// 30 MB JSON line arrives shrunk without the splitter ever holding it.
func TestLines(t *testing.T) {
	huge := 30 << 20
	var got []Line
	l := NewLines(1<<20, 64<<10, func(line Line) error {
		line.Bytes = append([]byte(nil), line.Bytes...)
		got = append(got, line)
		return nil
	})
	write := func(s string) {
		if _, err := l.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("first\r\n")
	write(`{"type":"tool_use","input":{"content":"`)
	chunk := strings.Repeat("z", 64<<10)
	for n := 0; n < huge; n += len(chunk) {
		write(chunk)
		if len(l.buf) > 1<<20 {
			t.Fatalf("the splitter holds %d bytes", len(l.buf))
		}
	}
	write(`"}}` + "\n")
	write(strings.Repeat("not json ", 200000) + "\n")
	write("last")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d lines", len(got))
	}
	if string(got[0].Bytes) != "first" || got[0].End != 7 || got[0].Cut {
		t.Errorf("first line: %+v", got[0])
	}
	var v struct {
		Input struct{ Content string } `json:"input"`
	}
	if err := json.Unmarshal(got[1].Bytes, &v); err != nil || !got[1].Cut || got[1].Lost || got[1].Size != int64(huge+42) {
		t.Fatalf("huge JSON line: %v, %+v", err, got[1].Size)
	}
	if want := strings.Repeat("z", 64<<10) + "\n[truncated 31391744 bytes]"; v.Input.Content != want {
		t.Errorf("content of %d bytes ending %q", len(v.Input.Content), v.Input.Content[len(v.Input.Content)-30:])
	}
	if !got[2].Cut || !got[2].Lost || len(got[2].Bytes) != 1<<20 || got[2].Size != 1800000 {
		t.Errorf("long text line: cut %v lost %v, %d bytes of %d", got[2].Cut, got[2].Lost, len(got[2].Bytes), got[2].Size)
	}
	if string(got[3].Bytes) != "last" || got[3].End != got[2].End+4 {
		t.Errorf("last line: %q at %d", got[3].Bytes, got[3].End)
	}
}

// FuzzLines: however output is split into pieces, Lines passes the same
// lines as splitting it whole, never a line over the bound, and the offsets
// add up.
func FuzzLines(f *testing.F) {
	f.Add([]byte("a\r\nb\n\nc"), uint16(3), uint8(4))
	f.Add([]byte(`{"a":"`+strings.Repeat("x", 100)+`"}`+"\nnext"), uint16(10), uint8(32))
	f.Add([]byte(`  [1,2,3,4,5,6,7,8,9,10]`+"\n"), uint16(5), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint16, max uint8) {
		limit := int(max%64) + 2
		var lines []Line
		l := NewLines(limit, limit/2, func(line Line) error {
			if len(line.Bytes) > limit {
				t.Fatalf("line of %d bytes passed, limit %d", len(line.Bytes), limit)
			}
			if line.Cut && !line.Lost && !json.Valid(line.Bytes) {
				t.Fatalf("a shrunk line is not JSON: %q", line.Bytes)
			}
			line.Bytes = append([]byte(nil), line.Bytes...)
			lines = append(lines, line)
			return nil
		})
		cut := int(split) % (len(data) + 1)
		_, _ = l.Write(data[:cut])
		_, _ = l.Write(data[cut:])
		_ = l.Close()
		want := bytes.Split(data, []byte("\n"))
		if len(want[len(want)-1]) == 0 {
			want = want[:len(want)-1]
		}
		if len(lines) != len(want) {
			t.Fatalf("%d lines, want %d", len(lines), len(want))
		}
		var end int64
		for i, line := range lines {
			end += int64(len(want[i]))
			if i < len(want)-1 || bytes.HasSuffix(data, []byte("\n")) {
				end++
			}
			if line.End != end || line.Size != int64(len(want[i])) {
				t.Fatalf("line %d ends at %d (size %d), want %d (size %d)", i, line.End, line.Size, end, len(want[i]))
			}
			if w := bytes.TrimRight(want[i], "\r"); !line.Cut && !bytes.Equal(line.Bytes, w) {
				t.Fatalf("line %d: %q, want %q", i, line.Bytes, w)
			}
		}
	})
}

// FuzzClean: whatever a line holds, Clean never panics, leaves no control
// character, never grows the line, and calls JSON exactly what starts with {.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"\x1b[2K\x1b[32m{\"a\":1}\x1b[0m\r", "\x1b]0;claude\x07{}", "\x00{}\x00", "Error: nope", "\x1b[", "\x1b]", "\x1b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		out, isJSON := Clean(line)
		if len(out) > len(line) || bytes.ContainsFunc(out, isJunk) {
			t.Fatalf("Clean(%q) = %q", line, out)
		}
		if isJSON != (len(out) > 0 && out[0] == '{') {
			t.Fatalf("Clean(%q): isJSON %v for %q", line, isJSON, out)
		}
	})
}

// BenchmarkLines30MB splits a 30 MB JSON line (a tool call writing a huge
// file) arriving in 64 KiB pieces: B/op is what a run holds for it.
func BenchmarkLines30MB(b *testing.B) {
	head := []byte(`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t","name":"Write","input":{"content":"`)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	b.SetBytes(30 << 20)
	b.ReportAllocs()
	for b.Loop() {
		l := NewLines(DefaultMaxLine, DefaultFieldLimit, func(Line) error { return nil })
		_, _ = l.Write(head)
		for n := 0; n < 30<<20; n += len(chunk) {
			_, _ = l.Write(chunk)
		}
		_, _ = l.Write([]byte("\"}}]}}\n"))
	}
}
