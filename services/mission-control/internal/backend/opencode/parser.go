package opencode

import (
	"encoding/json"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/event"
)

// Parser turns `opencode run --format json` lines into mission events. Run
// mode prints a text part only once it has ended and a tool part only once
// the tool finished, so there is no token streaming.
type Parser struct {
	em *backend.Emitter
}

// NewParser returns a parser for one run.
func NewParser(opts backend.ParserOptions) *Parser {
	return &Parser{em: backend.NewEmitter("opencode", opts)}
}

// Summary returns the session id, usage, cost and outcome seen so far.
func (p *Parser) Summary() backend.Summary { return p.em.Summary() }

// Finish ends the turn once the process has exited. Older builds print no
// "done" line, so exit status 0 completes the turn.
func (p *Parser) Finish(x backend.Exit) []event.Event { return p.em.Finish(x) }

type line struct {
	Type      string          `json:"type"`
	SessionID string          `json:"sessionID"`
	Part      *part           `json:"part"`
	Error     json.RawMessage `json:"error"`
	Reason    string          `json:"reason"`
}

type part struct {
	Type   string   `json:"type"`
	Text   string   `json:"text"`
	CallID string   `json:"callID"`
	Tool   string   `json:"tool"`
	State  *state   `json:"state"`
	Cost   *float64 `json:"cost"`
	Tokens *tokens  `json:"tokens"`
}

type state struct {
	Status string          `json:"status"`
	Input  json.RawMessage `json:"input"`
	Output string          `json:"output"`
	Error  string          `json:"error"`
}

type tokens struct {
	Input     int64 `json:"input"`
	Output    int64 `json:"output"`
	Reasoning int64 `json:"reasoning"`
	Cache     struct {
		Read  int64 `json:"read"`
		Write int64 `json:"write"`
	} `json:"cache"`
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
	if p.em.SessionID() == "" {
		p.em.SetSession(l.SessionID)
	}
	switch l.Type {
	case "step_start":
	case "text":
		if l.Part != nil {
			return p.em.TextBlock(l.Part.Text)
		}
	case "reasoning":
		if l.Part != nil {
			return p.em.ThinkingDone(l.Part.Text)
		}
	case "tool_use":
		return p.tool(l.Part)
	case "step_finish":
		p.stepFinish(l.Part)
	case "error":
		return p.error(l.Error)
	case "done":
		return p.em.Complete("")
	default:
		p.em.Unknown(l.Type)
	}
	return nil
}

func (p *Parser) tool(pt *part) []event.Event {
	if pt == nil || pt.State == nil {
		return nil
	}
	evs := p.em.ToolCall(pt.CallID, pt.Tool, pt.State.Input, "")
	switch pt.State.Status {
	case "completed":
		evs = append(evs, p.em.ToolResult(pt.CallID, pt.Tool, backend.String(pt.State.Output), false, nil)...)
	case "error":
		evs = append(evs, p.em.ToolResult(pt.CallID, pt.Tool, backend.String(pt.State.Error), true, nil)...)
	}
	return evs
}

// stepFinish adds a step's tokens and cost: run mode reports per step.
func (p *Parser) stepFinish(pt *part) {
	if pt == nil {
		return
	}
	if pt.Cost != nil {
		p.em.AddCost(*pt.Cost)
	}
	if t := pt.Tokens; t != nil {
		p.em.AddUsage(event.Usage{
			InputTokens: t.Input, OutputTokens: t.Output, ReasoningTokens: t.Reasoning,
			CacheReadTokens: t.Cache.Read, CacheWriteTokens: t.Cache.Write,
		})
	}
}

// error handles a session error, {"name": "...", "data": {"message": "..."}}.
// An aborted message is a cancellation, not a failure.
func (p *Parser) error(raw json.RawMessage) []event.Event {
	var e struct {
		Name string `json:"name"`
		Data struct {
			Message string `json:"message"`
		} `json:"data"`
	}
	_ = json.Unmarshal(raw, &e) // an odd shape still ends the turn
	if e.Name == "MessageAbortedError" {
		return p.em.Cancelled()
	}
	msg := e.Data.Message
	if msg == "" {
		msg = e.Name
	}
	return p.em.Fail(msg, e.Name)
}
