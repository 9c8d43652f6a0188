// Package streamjson parses the stream-json output that Claude Code
// (`claude -p --output-format stream-json --verbose`) and Amp
// (`amp --execute … --stream-json`) share (agent-clis.md §2.2, §5.2).
//
// The two differ only in what they leave out: Amp echoes the prompt as a user
// line, sends no stream_event partials and no cost, and reports usage per
// assistant message only. The parser handles the union, so one type serves
// both.
package streamjson

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/event"
)

// Parser turns stream-json lines into mission events. Feed it every output
// line in order, then call Finish once with the exit status.
type Parser struct {
	em *backend.Emitter

	// message ids whose text arrived as stream_event deltas: their complete
	// assistant text blocks must not be streamed again.
	streamed  map[string]bool
	current   string         // id of the message being streamed
	blocks    map[int]string // content block index → type, for current
	perMsg    map[string]event.Usage
	perMsgSum event.Usage
	anonMsgs  int
	errCode   string
}

// New returns a parser for the CLI named cli ("claude" or "amp").
func New(cli string, opts backend.ParserOptions) *Parser {
	return &Parser{
		em:       backend.NewEmitter(cli, opts),
		streamed: map[string]bool{},
		blocks:   map[int]string{},
		perMsg:   map[string]event.Usage{},
	}
}

// Summary returns the session id, usage and outcome seen so far.
func (p *Parser) Summary() backend.Summary { return p.em.Summary() }

// Finish ends the turn once the process has exited.
func (p *Parser) Finish(x backend.Exit) []event.Event { return p.em.Finish(x) }

// line is the union of the top-level objects. Fields whose type varies
// between versions stay raw so that one odd field cannot drop a whole line.
type line struct {
	Type            string          `json:"type"`
	Subtype         string          `json:"subtype"`
	SessionID       string          `json:"session_id"`
	Model           string          `json:"model"`
	ParentToolUseID *string         `json:"parent_tool_use_id"`
	Event           *streamEvent    `json:"event"`
	Message         *message        `json:"message"`
	Error           json.RawMessage `json:"error"`
	ToolUseResult   json.RawMessage `json:"tool_use_result"`
	IsError         bool            `json:"is_error"`
	Result          json.RawMessage `json:"result"`
	TotalCostUSD    *float64        `json:"total_cost_usd"`
	Usage           *usage          `json:"usage"`
	ModelUsage      map[string]any  `json:"modelUsage"`
	TerminalReason  string          `json:"terminal_reason"`
	Errors          json.RawMessage `json:"errors"`
	APIErrorStatus  json.RawMessage `json:"api_error_status"`
}

type streamEvent struct {
	Type         string   `json:"type"`
	Index        int      `json:"index"`
	Message      *message `json:"message"`
	ContentBlock *block   `json:"content_block"`
	Delta        *delta   `json:"delta"`
}

type delta struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Thinking string `json:"thinking"`
}

type message struct {
	ID      string          `json:"id"`
	Model   string          `json:"model"`
	Content json.RawMessage `json:"content"` // a string or a list of blocks
	Usage   *usage          `json:"usage"`
}

type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"` // tool_result: a string or blocks
	IsError   bool            `json:"is_error"`
}

type usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
}

func (u *usage) event() event.Usage {
	return event.Usage{
		InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheReadTokens: u.CacheReadInputTokens, CacheWriteTokens: u.CacheCreationInputTokens,
	}
}

// Feed parses one output line. Lines that are not JSON objects are kept as
// noise for the error message; unknown types are counted and skipped.
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
	if l.SessionID != "" && p.em.SessionID() == "" {
		p.em.SetSession(l.SessionID)
	}
	switch l.Type {
	case "system":
		if l.Subtype == "init" {
			p.em.SetSession(l.SessionID)
			p.em.SetModel(l.Model)
		}
		return nil
	case "stream_event":
		return p.streamEvent(&l)
	case "assistant":
		return p.assistant(&l)
	case "user":
		return p.user(&l)
	case "result":
		return p.result(&l)
	case "rate_limit_event", "control_request", "control_response", "control_cancel_request",
		"conversation_reset", "keep_alive":
		return nil
	default:
		p.em.Unknown(l.Type)
		return nil
	}
}

func (p *Parser) streamEvent(l *line) []event.Event {
	ev := l.Event
	if ev == nil || l.ParentToolUseID != nil && *l.ParentToolUseID != "" {
		// A subagent's partial text belongs to its Task call, not the turn.
		return nil
	}
	switch ev.Type {
	case "message_start":
		if ev.Message != nil {
			p.current = ev.Message.ID
			p.em.SetModel(ev.Message.Model)
		}
		clear(p.blocks)
	case "content_block_start":
		if ev.ContentBlock != nil {
			p.blocks[ev.Index] = ev.ContentBlock.Type
		}
	case "content_block_delta":
		if ev.Delta == nil {
			return nil
		}
		switch ev.Delta.Type {
		case "text_delta":
			p.streamed[p.current] = true
			return p.em.TextDelta(ev.Delta.Text)
		case "thinking_delta":
			return p.em.ThinkingDelta(ev.Delta.Thinking)
		}
	case "content_block_stop":
		if p.blocks[ev.Index] == "text" {
			p.em.EndText("")
		}
	}
	return nil
}

func (p *Parser) assistant(l *line) []event.Event {
	m := l.Message
	if m == nil {
		return nil
	}
	p.em.SetModel(m.Model)
	p.countUsage(m)
	parent := ""
	if l.ParentToolUseID != nil {
		parent = *l.ParentToolUseID
	}
	if kind := rawString(l.Error); kind != "" && parent == "" {
		// A synthetic message explaining a failure (authentication,
		// rate limit): the result line that follows reports it; keep it in
		// case the process dies first.
		p.errCode = kind
		for _, b := range blocks(m.Content) {
			p.em.NoteError(b.Text)
		}
		return nil
	}
	var evs []event.Event
	for _, b := range blocks(m.Content) {
		switch b.Type {
		case "text":
			if parent != "" {
				continue
			}
			if p.streamed[m.ID] && m.ID != "" {
				p.em.EndText(b.Text)
			} else {
				evs = append(evs, p.em.TextBlock(b.Text)...)
			}
		case "thinking":
			if parent == "" {
				evs = append(evs, p.em.ThinkingDone(b.Thinking)...)
			}
		case "redacted_thinking":
			if parent == "" {
				evs = append(evs, p.em.ThinkingDone("[redacted thinking]")...)
			}
		case "tool_use", "server_tool_use", "mcp_tool_use":
			evs = append(evs, p.em.ToolCall(b.ID, b.Name, b.Input, parent)...)
		}
	}
	return evs
}

// countUsage sums usage per message: a message split over several lines
// repeats its usage on each, so the last value per id counts once.
func (p *Parser) countUsage(m *message) {
	if m.Usage == nil {
		return
	}
	id := m.ID
	if id == "" {
		p.anonMsgs++
		id = fmt.Sprintf("anonymous-%d", p.anonMsgs)
	}
	p.perMsgSum = p.perMsgSum.Sub(p.perMsg[id]).Add(m.Usage.event())
	p.perMsg[id] = m.Usage.event()
	p.em.SetUsage(p.perMsgSum)
}

func (p *Parser) user(l *line) []event.Event {
	if l.Message == nil {
		return nil
	}
	var evs []event.Event
	for _, b := range blocks(l.Message.Content) {
		if b.Type != "tool_result" {
			// The prompt echo (Amp) and text the CLI injects: the runner
			// stored the user's message itself.
			continue
		}
		out := contentText(b.Content)
		if out == "" {
			out = rawString(l.ToolUseResult)
		}
		evs = append(evs, p.em.ToolResult(b.ToolUseID, "", backend.String(out), b.IsError, nil)...)
	}
	return evs
}

func (p *Parser) result(l *line) []event.Event {
	p.em.SetSession(l.SessionID)
	if l.Usage != nil && *l.Usage != (usage{}) {
		p.em.SetUsage(l.Usage.event()) // the turn's totals (Claude)
	}
	if l.TotalCostUSD != nil {
		p.em.SetCost(*l.TotalCostUSD)
	}
	if len(l.ModelUsage) > 0 && p.em.Summary().Model == "" {
		p.em.SetModel(slices.Sorted(maps.Keys(l.ModelUsage))[0])
	}
	text := rawString(l.Result)
	switch {
	case strings.HasPrefix(l.TerminalReason, "aborted"):
		return p.em.Cancelled()
	case l.IsError || strings.HasPrefix(l.Subtype, "error"):
		msg := text
		if msg == "" {
			msg = errorsText(l.Errors)
		}
		if msg == "" {
			msg = apiErrorText(rawString(l.Error))
		}
		if msg == "" {
			msg = strings.ReplaceAll(l.Subtype, "_", " ")
		}
		code := l.Subtype
		if status := strings.Trim(string(l.APIErrorStatus), `"`); status != "" && status != "null" {
			code = "api_error_" + status
		} else if p.errCode != "" && (code == "" || code == "success") {
			code = p.errCode
		}
		return p.em.Fail(msg, code)
	default:
		return p.em.Complete(text)
	}
}

// blocks decodes a content field: a list of blocks, or a plain string (taken
// as one text block).
func blocks(raw json.RawMessage) []block {
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '"' {
		return []block{{Type: "text", Text: rawString(raw)}}
	}
	var bs []block
	if json.Unmarshal(raw, &bs) != nil {
		return nil
	}
	return bs
}

// contentText flattens a tool_result content: a string, or text and image
// blocks.
func contentText(raw json.RawMessage) string {
	var parts []string
	for _, b := range blocks(raw) {
		switch b.Type {
		case "text":
			parts = append(parts, b.Text)
		case "image":
			parts = append(parts, "[image]")
		}
	}
	return strings.Join(parts, "\n")
}

// rawString returns raw as a string if it is a JSON string, else "".
func rawString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// errorsText joins the result's errors, which are strings or objects with a
// message.
func errorsText(raw json.RawMessage) string {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return ""
	}
	var msgs []string
	for _, it := range items {
		if s := rawString(it); s != "" {
			msgs = append(msgs, s)
			continue
		}
		var o struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(it, &o) == nil && o.Message != "" {
			msgs = append(msgs, o.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

// apiErrorText turns Amp's `402 {"type":"error","error":{"message":"…"}}`
// into "Out of credits (HTTP 402)"; other text is returned as is.
func apiErrorText(s string) string {
	status, body, ok := strings.Cut(s, " ")
	if !ok || len(status) != 3 || strings.Trim(status, "0123456789") != "" {
		return s
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || e.Error.Message == "" {
		return s
	}
	return e.Error.Message + " (HTTP " + status + ")"
}
