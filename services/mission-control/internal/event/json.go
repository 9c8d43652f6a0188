package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// wire is the SSE data payload. Every field is a pointer with omitempty so
// that MarshalJSON decides, per kind, which fields appear: a field a kind
// always carries (content, done, success, ...) is written even when it is
// the zero value, and fields of other kinds never appear.
type wire struct {
	Type      Kind       `json:"type"`
	MissionID *string    `json:"mission_id,omitempty"`
	Sequence  *int64     `json:"sequence,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"`

	// status
	State    *string `json:"state,omitempty"`
	QueueLen *int    `json:"queue_len,omitempty"`

	// messages, thinking, text
	ID        *string   `json:"id,omitempty"`
	Content   *string   `json:"content,omitempty"`
	Delta     *string   `json:"delta,omitempty"`
	Done      *bool     `json:"done,omitempty"`
	Queued    *bool     `json:"queued,omitempty"`
	Success   *bool     `json:"success,omitempty"`
	CostCents *int64    `json:"cost_cents,omitempty"`
	Model     *nullable `json:"model,omitempty"`
	CostUSD   *float64  `json:"cost_usd,omitempty"`
	Usage     *Usage    `json:"usage,omitempty"`

	// tools
	ToolCallID *string          `json:"tool_call_id,omitempty"`
	Name       *string          `json:"name,omitempty"`
	Parent     *string          `json:"parent_tool_call_id,omitempty"`
	Args       *json.RawMessage `json:"args,omitempty"`
	Result     *json.RawMessage `json:"result,omitempty"`
	IsError    *bool            `json:"is_error,omitempty"`
	ExitCode   *int             `json:"exit_code,omitempty"`

	// error
	Message *string `json:"message,omitempty"`
	Fatal   *bool   `json:"fatal,omitempty"`
	Code    *string `json:"code,omitempty"`

	Resumable *bool `json:"resumable,omitempty"`

	// mission_status_changed
	Status  *string   `json:"status,omitempty"`
	Summary *nullable `json:"summary,omitempty"`

	// mission_activity
	Label    *string `json:"label,omitempty"`
	ToolName *string `json:"tool_name,omitempty"`
}

// nullable is a string written as null when empty, for the reference's
// always-present-but-nullable fields (assistant_message.model,
// mission_status_changed.summary).
type nullable string

func (n nullable) MarshalJSON() ([]byte, error) {
	if n == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(n))
}

func (n *nullable) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s != nil {
		*n = nullable(*s)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// ifSet returns a pointer to v, or nil when v is the zero value, for the
// optional fields.
func ifSet[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

func rawOr(raw json.RawMessage, def string) *json.RawMessage {
	if len(raw) == 0 {
		raw = json.RawMessage(def)
	}
	return &raw
}

// MarshalJSON writes the SSE data payload of e.
func (e Event) MarshalJSON() ([]byte, error) {
	if !e.Kind.Valid() {
		return nil, fmt.Errorf("marshal event: %w %q", ErrUnknownKind, e.Kind)
	}
	w := wire{Type: e.Kind, MissionID: ifSet(e.MissionID), Sequence: ifSet(e.Sequence)}
	if !e.Time.IsZero() {
		w.Timestamp = ptr(e.Time.UTC())
	}
	switch e.Kind {
	case KindStatus:
		w.State, w.QueueLen = ptr(e.State), ptr(e.QueueLen)
	case KindUserMessage:
		w.ID, w.Content, w.Queued = ptr(e.ID), ptr(e.Content), ptr(e.Queued)
	case KindAssistantMessage:
		w.ID, w.Content, w.Success = ptr(e.ID), ptr(e.Content), ptr(e.Success)
		w.CostCents, w.Model = ptr(e.CostCents), ptr(nullable(e.Model))
		w.CostUSD, w.Usage, w.Resumable = e.CostUSD, e.Usage, ifSet(e.Resumable)
	case KindThinking:
		w.Content, w.Done, w.Delta = ptr(e.Content), ptr(e.Done), ifSet(e.Delta)
	case KindTextDelta:
		w.Content, w.Delta = ptr(e.Content), ptr(e.Delta)
	case KindToolCall:
		w.ToolCallID, w.Name = ptr(e.ToolCallID), ptr(e.ToolName)
		w.Args, w.Parent = rawOr(e.Args, "{}"), ifSet(e.ParentToolCallID)
	case KindToolResult:
		w.ToolCallID, w.Name = ptr(e.ToolCallID), ptr(e.ToolName)
		w.Result, w.IsError, w.ExitCode = rawOr(e.Result, "null"), ptr(e.IsError), e.ExitCode
	case KindError:
		w.Message, w.Resumable = ptr(e.Message), ifSet(e.Resumable)
		w.Fatal, w.Code = ifSet(e.Fatal), ifSet(e.Code)
	case KindMissionStatusChanged:
		w.MissionID, w.Status, w.Summary = ptr(e.MissionID), ptr(e.Status), ptr(nullable(e.Summary))
	case KindMissionActivity:
		w.Label, w.ToolName = ptr(e.Label), ptr(e.ToolName)
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads a payload written by MarshalJSON.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	if !w.Type.Valid() {
		return fmt.Errorf("decode event: %w %q", ErrUnknownKind, w.Type)
	}
	*e = Event{
		Kind:             w.Type,
		MissionID:        deref(w.MissionID),
		Sequence:         deref(w.Sequence),
		Time:             deref(w.Timestamp),
		State:            deref(w.State),
		QueueLen:         deref(w.QueueLen),
		ID:               deref(w.ID),
		Content:          deref(w.Content),
		Delta:            deref(w.Delta),
		Done:             deref(w.Done),
		Queued:           deref(w.Queued),
		Success:          deref(w.Success),
		CostCents:        deref(w.CostCents),
		Model:            string(deref(w.Model)),
		CostUSD:          w.CostUSD,
		Usage:            w.Usage,
		ToolCallID:       deref(w.ToolCallID),
		ToolName:         deref(w.Name),
		ParentToolCallID: deref(w.Parent),
		Args:             deref(w.Args),
		Result:           deref(w.Result),
		IsError:          deref(w.IsError),
		ExitCode:         w.ExitCode,
		Message:          deref(w.Message),
		Fatal:            deref(w.Fatal),
		Code:             deref(w.Code),
		Resumable:        deref(w.Resumable),
		Status:           deref(w.Status),
		Summary:          string(deref(w.Summary)),
		Label:            deref(w.Label),
	}
	if e.Kind == KindMissionActivity {
		e.ToolName = deref(w.ToolName)
	}
	return nil
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
