// Package event defines the mission events that mission-control stores and
// streams over SSE. The event names and the JSON payloads are a public
// contract: they follow seed-api.md ("Stream Events") and the reference
// behaviour (openagent-behaviour.md §3.5), with a few additive fields that old
// clients ignore (delta, usage, cost_usd, is_error, sequence, ...).
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Kind names an event; it is the SSE "event:" name and the "type" field of
// the payload.
type Kind string

// The event kinds. The first seven are the seed's; the last three are the
// reference's extras that its clients rely on.
const (
	KindStatus               Kind = "status"
	KindUserMessage          Kind = "user_message"
	KindAssistantMessage     Kind = "assistant_message"
	KindThinking             Kind = "thinking"
	KindToolCall             Kind = "tool_call"
	KindToolResult           Kind = "tool_result"
	KindError                Kind = "error"
	KindMissionStatusChanged Kind = "mission_status_changed"
	KindTextDelta            Kind = "text_delta"
	KindMissionActivity      Kind = "mission_activity"
)

// Kinds lists every kind, in the order above.
func Kinds() []Kind {
	return []Kind{
		KindStatus, KindUserMessage, KindAssistantMessage, KindThinking,
		KindToolCall, KindToolResult, KindError, KindMissionStatusChanged,
		KindTextDelta, KindMissionActivity,
	}
}

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	for _, v := range Kinds() {
		if k == v {
			return true
		}
	}
	return false
}

// Usage counts the tokens of a turn.
type Usage struct {
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
	CacheReadTokens  int64 `json:"cache_read_tokens,omitempty"`
	CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
	ReasoningTokens  int64 `json:"reasoning_tokens,omitempty"`
}

// Add returns u + o.
func (u Usage) Add(o Usage) Usage {
	return Usage{
		InputTokens:      u.InputTokens + o.InputTokens,
		OutputTokens:     u.OutputTokens + o.OutputTokens,
		CacheReadTokens:  u.CacheReadTokens + o.CacheReadTokens,
		CacheWriteTokens: u.CacheWriteTokens + o.CacheWriteTokens,
		ReasoningTokens:  u.ReasoningTokens + o.ReasoningTokens,
	}
}

// Sub returns u - o, never below zero. Codex reports thread totals, so a
// resumed thread's turn is its total minus the previous total.
func (u Usage) Sub(o Usage) Usage {
	sub := func(a, b int64) int64 { return max(a-b, 0) }
	return Usage{
		InputTokens:      sub(u.InputTokens, o.InputTokens),
		OutputTokens:     sub(u.OutputTokens, o.OutputTokens),
		CacheReadTokens:  sub(u.CacheReadTokens, o.CacheReadTokens),
		CacheWriteTokens: sub(u.CacheWriteTokens, o.CacheWriteTokens),
		ReasoningTokens:  sub(u.ReasoningTokens, o.ReasoningTokens),
	}
}

// IsZero reports whether no tokens were counted.
func (u Usage) IsZero() bool { return u == Usage{} }

// Event is one mission event. It is a flat struct rather than one type per
// kind so that the store, the SSE writer and the parsers handle a single
// value; which fields a kind carries is documented on each field and enforced
// by Validate and by the JSON encoding, which writes only the kind's fields.
type Event struct {
	Kind Kind

	// Set by the store: the mission, the per-mission sequence number
	// (strictly increasing, the SSE id) and the time it was stored.
	MissionID string
	Sequence  int64
	Time      time.Time

	// ID is the message id of user_message and assistant_message.
	ID string
	// Content is the text of user_message, assistant_message, thinking and
	// text_delta. For text_delta it is the turn's text so far and for
	// thinking the block's text so far (the reference's accumulated form,
	// which existing clients render by replacing).
	Content string
	// Delta is what a text_delta or a not-done thinking event added to
	// Content, so a client or a store can append instead of replacing.
	Delta string
	// Done marks the complete text of a thinking block.
	Done bool
	// Queued is true on a user_message that waits behind a running turn.
	Queued bool

	// Success, Model, CostCents, CostUSD and Usage describe the turn an
	// assistant_message ends. Model empty means unknown (JSON null).
	Success   bool
	Model     string
	CostCents int64
	CostUSD   *float64
	Usage     *Usage

	// Resumable is set on assistant_message and error when the mission can
	// be resumed after the failure.
	Resumable bool

	// ToolCallID and ToolName identify the tool of tool_call, tool_result
	// and (name only) mission_activity.
	ToolCallID string
	ToolName   string
	// ParentToolCallID is set on a tool_call made inside a subagent.
	ParentToolCallID string
	// Args is the JSON input of a tool_call.
	Args json.RawMessage
	// Result is the JSON output of a tool_result: a string, or an object for
	// tools with structured results.
	Result json.RawMessage
	// IsError marks a failed tool_result.
	IsError bool
	// ExitCode is the exit status of a shell tool, when known.
	ExitCode *int

	// Message, Fatal and Code describe an error. A fatal error ends the turn.
	Message string
	Fatal   bool
	Code    string

	// State and QueueLen are the control-session snapshot of a status event.
	State    string
	QueueLen int

	// Status and Summary belong to mission_status_changed; Summary empty
	// means none (JSON null).
	Status  string
	Summary string

	// Label is the human line of a mission_activity ("Running: ls -la").
	Label string
}

// Validate checks that e carries what its kind needs.
func (e Event) Validate() error {
	var missing []string
	need := func(ok bool, field string) {
		if !ok {
			missing = append(missing, field)
		}
	}
	switch e.Kind {
	case KindStatus:
		need(e.State != "", "state")
	case KindUserMessage:
		need(e.ID != "", "id")
	case KindAssistantMessage, KindThinking, KindTextDelta:
	case KindToolCall:
		need(e.ToolCallID != "", "tool_call_id")
		need(e.ToolName != "", "name")
		need(e.Args == nil || json.Valid(e.Args), "valid args")
	case KindToolResult:
		need(e.ToolCallID != "", "tool_call_id")
		need(e.Result == nil || json.Valid(e.Result), "valid result")
	case KindError:
		need(e.Message != "", "message")
	case KindMissionStatusChanged:
		need(e.MissionID != "", "mission_id")
		need(e.Status != "", "status")
	case KindMissionActivity:
		need(e.Label != "", "label")
	default:
		return fmt.Errorf("unknown event kind %q", e.Kind)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s event: missing %v", e.Kind, missing)
	}
	return nil
}

// ErrUnknownKind is returned when decoding an event of an unknown type.
var ErrUnknownKind = errors.New("unknown event kind")
