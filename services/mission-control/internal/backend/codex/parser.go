package codex

import (
	"encoding/json"
	"strings"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/event"
)

// Parser turns `codex exec --json` lines into mission events. exec mode
// reports items only when they complete (no token deltas), so each agent
// message becomes one text_delta and the last one is the turn's answer.
type Parser struct {
	em    *backend.Emitter
	prior event.Usage
}

// NewParser returns a parser for one run. Give opts.RunID: Codex restarts
// its item ids (item_0, …) in every process.
func NewParser(opts backend.ParserOptions) *Parser {
	return &Parser{em: backend.NewEmitter("codex", opts), prior: opts.PriorUsage}
}

// Summary returns the thread id, usage and outcome seen so far.
func (p *Parser) Summary() backend.Summary { return p.em.Summary() }

// Finish ends the turn once the process has exited. An interrupted exec
// prints no terminal line, so the exit status decides.
func (p *Parser) Finish(x backend.Exit) []event.Event { return p.em.Finish(x) }

type line struct {
	Type     string          `json:"type"`
	ThreadID string          `json:"thread_id"`
	Usage    *usage          `json:"usage"`
	Error    json.RawMessage `json:"error"`
	Message  string          `json:"message"`
	Item     *item           `json:"item"`
}

type usage struct {
	InputTokens       int64 `json:"input_tokens"`
	CachedInputTokens int64 `json:"cached_input_tokens"`
	OutputTokens      int64 `json:"output_tokens"`
	ReasoningTokens   int64 `json:"reasoning_output_tokens"`
}

type item struct {
	ID               string          `json:"id"`
	Type             string          `json:"type"`
	Text             string          `json:"text"`
	Command          string          `json:"command"`
	AggregatedOutput string          `json:"aggregated_output"`
	ExitCode         *int            `json:"exit_code"`
	Status           string          `json:"status"`
	Changes          json.RawMessage `json:"changes"`
	Server           string          `json:"server"`
	Tool             string          `json:"tool"`
	Arguments        json.RawMessage `json:"arguments"`
	Result           json.RawMessage `json:"result"`
	Error            json.RawMessage `json:"error"`
	Query            string          `json:"query"`
	Action           json.RawMessage `json:"action"`
	Prompt           string          `json:"prompt"`
	AgentsStates     json.RawMessage `json:"agents_states"`
	Message          string          `json:"message"`
}

// Feed parses one output line.
func (p *Parser) Feed(raw []byte) []event.Event {
	b, ok := backend.Clean(raw)
	if !ok {
		p.em.Noise(b)
		return nil
	}
	var l line
	if err := json.Unmarshal(b, &l); err != nil {
		p.em.Noise(b)
		return nil
	}
	switch l.Type {
	case "thread.started":
		p.em.SetSession(l.ThreadID)
	case "turn.started", "item.updated", "item.plan.delta":
	case "item.started":
		if l.Item != nil {
			return p.started(l.Item)
		}
	case "item.completed":
		if l.Item != nil {
			return p.completed(l.Item)
		}
	case "turn.completed":
		if l.Usage != nil {
			// exec reports the thread's running total.
			p.em.SetUsage(l.Usage.event().Sub(p.prior))
		}
		return p.em.Complete("")
	case "turn.failed":
		return p.em.Fail(errorMessage(l.Error), "turn_failed")
	case "error":
		// An unrecoverable stream error; retries arrive as error items.
		return p.em.Fail(l.Message, "error")
	case "request_user_input":
		return p.em.Error("the agent asked for input, which codex exec cannot answer", "input_requested")
	default:
		p.em.Unknown(l.Type)
	}
	return nil
}

func (u *usage) event() event.Usage {
	return event.Usage{
		InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheReadTokens: u.CachedInputTokens, ReasoningTokens: u.ReasoningTokens,
	}
}

// call returns the tool_call form of a tool item; ok is false for items
// that are not tool calls.
func call(it *item) (name string, args json.RawMessage, ok bool) {
	obj := func(kv map[string]any) json.RawMessage {
		b, _ := json.Marshal(kv) // plain values only
		return b
	}
	switch it.Type {
	case "command_execution":
		return "shell", obj(map[string]any{"command": it.Command}), true
	case "file_change":
		return "apply_patch", obj(map[string]any{"changes": it.Changes}), true
	case "mcp_tool_call":
		return "mcp__" + it.Server + "__" + it.Tool, it.Arguments, true
	case "web_search":
		return "web_search", obj(map[string]any{"query": it.Query}), true
	case "collab_tool_call":
		return it.Tool, obj(map[string]any{"prompt": it.Prompt}), true
	}
	return "", nil, false
}

func (p *Parser) started(it *item) []event.Event {
	if name, args, ok := call(it); ok {
		return p.em.ToolCall(it.ID, name, args, "")
	}
	switch it.Type {
	case "agent_message", "reasoning", "todo_list", "plan", "error":
	default:
		p.em.Unknown("item:" + it.Type)
	}
	return nil
}

func (p *Parser) completed(it *item) []event.Event {
	if name, args, ok := call(it); ok {
		// File changes are reported completed only; announce the call first.
		evs := p.em.ToolCall(it.ID, name, args, "")
		out, isErr := result(it)
		return append(evs, p.em.ToolResult(it.ID, name, out, isErr, it.ExitCode)...)
	}
	switch it.Type {
	case "agent_message":
		return p.em.TextBlock(it.Text)
	case "reasoning":
		return p.em.ThinkingDone(it.Text)
	case "error":
		return p.em.Error(it.Message, "")
	case "todo_list", "plan":
	default:
		p.em.Unknown("item:" + it.Type)
	}
	return nil
}

// result is a tool item's output and whether it failed.
func result(it *item) (json.RawMessage, bool) {
	failed := it.Status == "failed" || it.Status == "declined"
	switch it.Type {
	case "command_execution":
		return backend.String(it.AggregatedOutput), it.Status != "completed"
	case "file_change":
		return backend.String(changeSummary(it.Changes)), failed
	case "mcp_tool_call":
		if msg := errorMessage(it.Error); msg != "" {
			return backend.String(msg), true
		}
		return mcpResult(it.Result), failed
	case "web_search":
		if len(it.Action) > 0 && string(it.Action) != "null" {
			return it.Action, failed
		}
		return backend.String(it.Query), failed
	default:
		return it.AgentsStates, failed
	}
}

// changeSummary lists a file_change as "update a.go" lines.
func changeSummary(raw json.RawMessage) string {
	var changes []struct {
		Path string `json:"path"`
		Kind string `json:"kind"`
	}
	if json.Unmarshal(raw, &changes) != nil {
		return string(raw)
	}
	var b strings.Builder
	for _, c := range changes {
		b.WriteString(c.Kind + " " + c.Path + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// mcpResult flattens an MCP result's text content; other results stay JSON.
func mcpResult(raw json.RawMessage) json.RawMessage {
	var r struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal(raw, &r) != nil || len(r.Content) == 0 {
		return raw
	}
	var texts []string
	for _, c := range r.Content {
		if c.Type != "text" {
			return raw
		}
		texts = append(texts, c.Text)
	}
	return backend.String(strings.Join(texts, "\n"))
}

// errorMessage reads {"message": "..."} or a plain string.
func errorMessage(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return o.Message
	}
	return ""
}
