package event

import (
	"encoding/json"

	"sortie.dev/services/mission-control/internal/jsontrim"
)

// NameLimit bounds the identifiers and names an agent reports (message,
// tool call and parent ids, tool names, the model, error codes): they are
// keys and labels, never long text, so they are clipped without a marker.
const NameLimit = 256

// Truncated returns e with everything an agent can make long bounded, so
// that one runaway CLI cannot bloat Redis, every replay and every SSE
// client: each text (content, delta, message, summary, label) is cut to at
// most limit bytes plus a marker saying how much was dropped
// ("\n[truncated N bytes]"), the JSON of Args and Result is kept within
// limit bytes with its long strings cut the same way (its structure kept,
// so clients still read {"command": …}), and names are clipped to
// NameLimit. The store calls it before writing.
//
// A user_message is bounded where it is received (the message size limit)
// and is not cut here.
func (e Event) Truncated(limit int) Event {
	if e.Kind != KindUserMessage {
		e.Content = cut(e.Content, limit)
	}
	e.Delta = cut(e.Delta, limit)
	e.Message = cut(e.Message, limit)
	e.Summary = cut(e.Summary, limit)
	e.Label = cut(e.Label, limit)
	e.Args = fit(e.Args, limit)
	e.Result = fit(e.Result, limit)
	for _, s := range []*string{&e.ID, &e.ToolCallID, &e.ToolName, &e.ParentToolCallID, &e.Model, &e.Code, &e.Status, &e.State} {
		*s = jsontrim.Clip(*s, NameLimit)
	}
	return e
}

// fit keeps a JSON value within limit bytes: its strings cut when that is
// enough, else (a value that is mostly structure, or not JSON) a string
// holding the start of its text.
func fit(raw json.RawMessage, limit int) json.RawMessage {
	if len(raw) <= limit {
		return raw
	}
	if out, ok := jsontrim.Fit(raw, limit); ok {
		return out
	}
	b, _ := json.Marshal(cut(string(raw), limit)) // Marshal cannot fail on a string
	if out, ok := jsontrim.Fit(b, limit); ok {
		return out
	}
	b, _ = json.Marshal(jsontrim.Marker(int64(len(raw))))
	return b
}

// cut shortens s to at most limit bytes and a marker.
func cut(s string, limit int) string { return jsontrim.Cut(s, limit) }
