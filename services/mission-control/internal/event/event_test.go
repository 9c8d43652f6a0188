package event

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMarshalPayloads(t *testing.T) {
	usd := 0.0412
	exit := 2
	tests := map[string]struct {
		ev   Event
		want string
	}{
		"status snapshot": {
			ev:   Event{Kind: KindStatus, State: "idle"},
			want: `{"type":"status","state":"idle","queue_len":0}`,
		},
		"user message keeps queued false": {
			ev:   Event{Kind: KindUserMessage, MissionID: "m1", Sequence: 3, ID: "u1", Content: "hi"},
			want: `{"type":"user_message","mission_id":"m1","sequence":3,"id":"u1","content":"hi","queued":false}`,
		},
		"assistant message with null model": {
			ev:   Event{Kind: KindAssistantMessage, ID: "a1", Content: "Cancelled", Resumable: true},
			want: `{"type":"assistant_message","id":"a1","content":"Cancelled","success":false,"cost_cents":0,"model":null,"resumable":true}`,
		},
		"assistant message with usage": {
			ev: Event{Kind: KindAssistantMessage, ID: "a2", Content: "Done.", Success: true, Model: "m",
				CostCents: 4, CostUSD: &usd, Usage: &Usage{InputTokens: 1, OutputTokens: 2}},
			want: `{"type":"assistant_message","id":"a2","content":"Done.","success":true,"cost_cents":4,"model":"m","cost_usd":0.0412,"usage":{"input_tokens":1,"output_tokens":2}}`,
		},
		"thinking done": {
			ev:   Event{Kind: KindThinking, Content: "hmm", Done: true},
			want: `{"type":"thinking","content":"hmm","done":true}`,
		},
		"thinking delta": {
			ev:   Event{Kind: KindThinking, Content: "hmm", Delta: "m"},
			want: `{"type":"thinking","content":"hmm","delta":"m","done":false}`,
		},
		"text delta": {
			ev:   Event{Kind: KindTextDelta, Content: "Hello", Delta: "lo"},
			want: `{"type":"text_delta","content":"Hello","delta":"lo"}`,
		},
		"tool call defaults args": {
			ev:   Event{Kind: KindToolCall, ToolCallID: "t1", ToolName: "Bash"},
			want: `{"type":"tool_call","tool_call_id":"t1","name":"Bash","args":{}}`,
		},
		"tool result": {
			ev:   Event{Kind: KindToolResult, ToolCallID: "t1", ToolName: "shell", Result: json.RawMessage(`"x"`), IsError: true, ExitCode: &exit},
			want: `{"type":"tool_result","tool_call_id":"t1","name":"shell","result":"x","is_error":true,"exit_code":2}`,
		},
		"error": {
			ev:   Event{Kind: KindError, Message: "boom", Fatal: true, Code: "auth"},
			want: `{"type":"error","message":"boom","fatal":true,"code":"auth"}`,
		},
		"mission status changed with null summary": {
			ev:   Event{Kind: KindMissionStatusChanged, MissionID: "m1", Status: "active"},
			want: `{"type":"mission_status_changed","mission_id":"m1","status":"active","summary":null}`,
		},
		"activity": {
			ev:   Event{Kind: KindMissionActivity, Label: "Running: ls", ToolName: "Bash"},
			want: `{"type":"mission_activity","label":"Running: ls","tool_name":"Bash"}`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := json.Marshal(tc.ev)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Marshal =\n%s\nwant\n%s", got, tc.want)
			}
			var back Event
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			again, _ := json.Marshal(back)
			if string(again) != tc.want {
				t.Errorf("round trip =\n%s\nwant\n%s", again, tc.want)
			}
		})
	}
}

func TestRoundTripKeepsStoreFields(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := Event{Kind: KindToolCall, MissionID: "m", Sequence: 9, Time: at, ToolCallID: "c", ToolName: "n",
		Args: json.RawMessage(`{"a":1}`), ParentToolCallID: "p"}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var got Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ev, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestUnknownKind(t *testing.T) {
	if _, err := json.Marshal(Event{Kind: "nope"}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Marshal unknown kind: err = %v, want ErrUnknownKind", err)
	}
	var e Event
	if err := json.Unmarshal([]byte(`{"type":"agent_tree"}`), &e); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Unmarshal unknown kind: err = %v, want ErrUnknownKind", err)
	}
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		ev      Event
		wantErr bool
	}{
		"ok tool call":        {ev: Event{Kind: KindToolCall, ToolCallID: "1", ToolName: "x"}},
		"tool call no id":     {ev: Event{Kind: KindToolCall, ToolName: "x"}, wantErr: true},
		"tool call bad args":  {ev: Event{Kind: KindToolCall, ToolCallID: "1", ToolName: "x", Args: json.RawMessage("{")}, wantErr: true},
		"error no message":    {ev: Event{Kind: KindError}, wantErr: true},
		"status change no id": {ev: Event{Kind: KindMissionStatusChanged, Status: "active"}, wantErr: true},
		"unknown":             {ev: Event{Kind: "x"}, wantErr: true},
		"ok text":             {ev: Event{Kind: KindTextDelta, Content: "a", Delta: "a"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tc.ev.Validate(); (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	const limit = 64
	big := strings.Repeat("é", 100) // 200 bytes
	odd := "x" + big                // forces a cut inside a rune
	long := strings.Repeat("y", 500)
	tests := map[string]struct {
		ev   Event
		want Event
	}{
		"short untouched": {
			ev:   Event{Kind: KindToolResult, Content: "abc", Result: json.RawMessage(`"abc"`)},
			want: Event{Kind: KindToolResult, Content: "abc", Result: json.RawMessage(`"abc"`)},
		},
		"cuts on rune boundary": {
			ev:   Event{Kind: KindThinking, Content: big},
			want: Event{Kind: KindThinking, Content: strings.Repeat("é", 32) + "\n[truncated 136 bytes]"},
		},
		"never splits a rune": {
			ev:   Event{Kind: KindAssistantMessage, Content: odd},
			want: Event{Kind: KindAssistantMessage, Content: "x" + strings.Repeat("é", 31) + "\n[truncated 138 bytes]"},
		},
		"delta, message, summary and label": {
			ev:   Event{Kind: KindError, Delta: long, Message: long, Summary: long, Label: long},
			want: Event{Kind: KindError, Delta: long[:64] + "\n[truncated 436 bytes]", Message: long[:64] + "\n[truncated 436 bytes]", Summary: long[:64] + "\n[truncated 436 bytes]", Label: long[:64] + "\n[truncated 436 bytes]"},
		},
		"string result": {
			ev:   Event{Kind: KindToolResult, Result: mustJSON(t, long)},
			want: Event{Kind: KindToolResult, Result: json.RawMessage(`"` + long[:39] + `\n[truncated 461 bytes]"`)},
		},
		"args keep their shape": {
			ev:   Event{Kind: KindToolCall, Args: json.RawMessage(`{"command":"` + long + `","timeout":5}`)},
			want: Event{Kind: KindToolCall, Args: json.RawMessage(`{"command":"` + long[:15] + `\n[truncated 485 bytes]","timeout":5}`)},
		},
		"structure becomes a string": {
			ev:   Event{Kind: KindToolResult, Result: json.RawMessage(`[` + strings.Repeat("1,", 100) + `1]`)},
			want: Event{Kind: KindToolResult, Result: json.RawMessage(`"[` + strings.Repeat("1,", 19) + `\n[truncated 164 bytes]"`)},
		},
		"names clipped": {
			ev:   Event{Kind: KindToolCall, ToolCallID: strings.Repeat("i", 300), ToolName: strings.Repeat("n", 300), Model: strings.Repeat("m", 300)},
			want: Event{Kind: KindToolCall, ToolCallID: strings.Repeat("i", NameLimit), ToolName: strings.Repeat("n", NameLimit), Model: strings.Repeat("m", NameLimit)},
		},
		"user message untouched": {
			ev:   Event{Kind: KindUserMessage, ID: "m1", Content: long},
			want: Event{Kind: KindUserMessage, ID: "m1", Content: long},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tc.ev.Truncated(limit)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			for _, raw := range []json.RawMessage{got.Args, got.Result} {
				if raw != nil && (len(raw) > limit || !json.Valid(raw)) {
					t.Errorf("JSON field of %d bytes (valid %v): %s", len(raw), json.Valid(raw), raw)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
