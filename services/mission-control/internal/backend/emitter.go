package backend

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/jsontrim"
)

// Emitter turns the facts a parser reads from a CLI's output (a piece of
// text, a tool call, the final result) into mission events, and keeps the
// per-turn state every backend needs: the turn's text, open thinking, which
// tool calls are open, the resume key, usage and the tail of non-JSON output.
//
// It guarantees, whatever the CLI prints:
//   - a text_delta's Content is the previous Content plus its Delta, so the
//     turn's text is built once (strings.Builder shares its buffer with the
//     Content strings; nothing is copied per delta);
//   - every tool_result follows a tool_call with the same id (one is
//     synthesised if the CLI never announced the call), and each call gets
//     at most one result;
//   - after Finish, exactly one assistant_message ended the turn.
//
// An Emitter is not safe for concurrent use.
type Emitter struct {
	cli  string
	opts ParserOptions

	text     strings.Builder
	textOpen bool
	textCut  bool   // the turn's text reached the limit
	last     string // the last complete text block: the answer by default

	thinking     strings.Builder
	thinkingOpen bool
	thinkingCut  bool

	calls   map[string]*call
	open    []string // ids of calls without a result, in call order
	nextID  int
	summary Summary

	terminal bool
	lastErr  string
	tail     tail
}

type call struct {
	name     string
	finished bool
}

// NewEmitter returns an Emitter for the CLI named cli ("claude", ...), which
// appears in error messages.
func NewEmitter(cli string, opts ParserOptions) *Emitter {
	if opts.TextLimit <= 0 {
		opts.TextLimit = DefaultFieldLimit
	}
	return &Emitter{
		cli:     cli,
		opts:    opts,
		calls:   make(map[string]*call),
		summary: Summary{Model: opts.Model, Unknown: map[string]int{}},
	}
}

// Summary returns what the turn reported so far.
func (e *Emitter) Summary() Summary {
	s := e.summary
	s.Unknown = make(map[string]int, len(e.summary.Unknown))
	for k, v := range e.summary.Unknown {
		s.Unknown[k] = v
	}
	return s
}

// SessionID returns the session id recorded so far.
func (e *Emitter) SessionID() string { return e.summary.SessionID }

// Terminal reports whether the turn has ended (an assistant_message was
// emitted).
func (e *Emitter) Terminal() bool { return e.terminal }

// SetSession records the CLI's session id, the resume key.
func (e *Emitter) SetSession(id string) {
	if id != "" && CheckID(id) == nil {
		e.summary.SessionID = id
	}
}

// SetModel records the model the CLI reports.
func (e *Emitter) SetModel(m string) {
	// Claude labels its own synthetic error messages "<synthetic>".
	if m != "" && !strings.HasPrefix(m, "<") {
		e.summary.Model = m
	}
}

// SetUsage replaces the turn's usage (for CLIs that report totals).
func (e *Emitter) SetUsage(u event.Usage) { e.summary.Usage = u }

// AddUsage adds to the turn's usage (for CLIs that report per step).
func (e *Emitter) AddUsage(u event.Usage) { e.summary.Usage = e.summary.Usage.Add(u) }

// SetCost records the turn's total cost in US dollars.
func (e *Emitter) SetCost(usd float64) { e.summary.CostUSD = &usd }

// AddCost adds to the turn's cost.
func (e *Emitter) AddCost(usd float64) {
	if e.summary.CostUSD == nil {
		e.summary.CostUSD = new(float64)
	}
	*e.summary.CostUSD += usd
}

// Unknown counts a line of an unknown type.
func (e *Emitter) Unknown(typ string) {
	if len(typ) > 64 {
		typ = typ[:64]
	}
	e.summary.Unknown[typ]++
}

// Noise records a line that is not JSON; the tail ends up in the error of a
// run that exits without a result.
func (e *Emitter) Noise(line []byte) {
	if len(line) == 0 {
		return
	}
	e.summary.NonJSON++
	e.tail.add(string(line))
}

// CutMarker ends streamed text (a turn's text, a thinking block) that
// reached the limit: what follows is not kept.
func CutMarker(limit int) string {
	return fmt.Sprintf("\n[truncated: the text goes on past %d bytes; the rest is not stored]", limit)
}

// capped returns the part of delta that fits after have bytes, with the
// marker if it does not all fit; cut reports that.
func capped(delta string, have, limit int) (kept string, cut bool) {
	if have+len(delta) <= limit {
		return delta, false
	}
	return jsontrim.Clip(delta, limit-have) + CutMarker(limit), true
}

// TextDelta appends streamed assistant text. Past the text limit it is
// cut once with a marker and then dropped.
func (e *Emitter) TextDelta(delta string) []event.Event {
	if delta == "" || e.textCut {
		return nil
	}
	if !e.textOpen {
		if e.text.Len() > 0 {
			// A new block after a tool call: keep blocks apart in the
			// turn's text.
			delta = "\n\n" + delta
		}
		e.textOpen = true
	}
	delta, e.textCut = capped(delta, e.text.Len(), e.opts.TextLimit)
	e.text.WriteString(delta)
	return []event.Event{{Kind: event.KindTextDelta, Content: e.text.String(), Delta: delta}}
}

// EndText closes the current text block; full is its complete text when the
// CLI gives it (it becomes the default answer).
func (e *Emitter) EndText(full string) {
	e.textOpen = false
	if full != "" {
		e.last = full
	}
}

// TextBlock handles a complete text block from a CLI that does not stream:
// it is streamed as one delta, then closed.
func (e *Emitter) TextBlock(text string) []event.Event {
	evs := e.TextDelta(text)
	e.EndText(text)
	return evs
}

// ThinkingDelta appends streamed reasoning; a block past the text limit
// is cut like the turn's text.
func (e *Emitter) ThinkingDelta(delta string) []event.Event {
	if delta == "" || e.thinkingCut {
		return nil
	}
	e.thinkingOpen = true
	delta, e.thinkingCut = capped(delta, e.thinking.Len(), e.opts.TextLimit)
	e.thinking.WriteString(delta)
	return []event.Event{{Kind: event.KindThinking, Content: e.thinking.String(), Delta: delta}}
}

// ThinkingDone ends a reasoning block. full is its complete text; when empty
// the streamed text is used.
func (e *Emitter) ThinkingDone(full string) []event.Event {
	if full == "" {
		full = e.thinking.String()
	}
	e.thinking.Reset()
	e.thinkingOpen, e.thinkingCut = false, false
	if strings.TrimSpace(full) == "" {
		return nil
	}
	return []event.Event{{Kind: event.KindThinking, Content: full, Done: true}}
}

// ToolCall announces a tool call. A repeated id is ignored. args must be JSON
// (anything else is wrapped in a JSON string). The call is followed by the
// mission_activity the reference derives from each call.
func (e *Emitter) ToolCall(id, name string, args json.RawMessage, parent string) []event.Event {
	return e.toolCall(e.callID(id), name, args, parent)
}

// toolCall announces the call with the already scoped id.
func (e *Emitter) toolCall(id, name string, args json.RawMessage, parent string) []event.Event {
	if _, seen := e.calls[id]; seen {
		return nil
	}
	if name == "" {
		name = "unknown"
	}
	args = asJSON(args, "{}")
	e.calls[id] = &call{name: name}
	e.open = append(e.open, id)
	return []event.Event{
		{Kind: event.KindToolCall, ToolCallID: id, ToolName: name, Args: args, ParentToolCallID: e.scoped(parent)},
		Activity(name, args),
	}
}

// ToolResult reports a tool's output. A result for an unknown call gets a
// synthetic tool_call first; a second result for a call is ignored.
func (e *Emitter) ToolResult(id, name string, result json.RawMessage, isError bool, exitCode *int) []event.Event {
	var evs []event.Event
	sid := e.callID(id)
	c, seen := e.calls[sid]
	if !seen {
		evs = e.toolCall(sid, name, nil, "")
		c = e.calls[sid]
	}
	if c.finished {
		return evs
	}
	c.finished = true
	e.closeCall(sid)
	if name == "" {
		name = c.name
	}
	return append(evs, event.Event{
		Kind: event.KindToolResult, ToolCallID: sid, ToolName: name,
		Result: asJSON(result, "null"), IsError: isError, ExitCode: exitCode,
	})
}

// callID namespaces id by run, or makes one up for a CLI that gave none.
func (e *Emitter) callID(id string) string {
	if id == "" {
		e.nextID++
		id = fmt.Sprintf("%s-call-%d", e.cli, e.nextID)
	}
	return e.scoped(id)
}

func (e *Emitter) scoped(id string) string {
	if id == "" || e.opts.RunID == "" {
		return id
	}
	return e.opts.RunID + ":" + id
}

func (e *Emitter) closeCall(id string) {
	for i, o := range e.open {
		if o == id {
			e.open = append(e.open[:i], e.open[i+1:]...)
			return
		}
	}
}

// Error reports a non-fatal error; its message is also kept as the reason
// should the process then exit without a result.
func (e *Emitter) Error(msg, code string) []event.Event {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return nil
	}
	e.lastErr = msg
	return []event.Event{{Kind: event.KindError, Message: msg, Code: code}}
}

// NoteError keeps msg as the reason to report should the process exit
// without a result, without emitting anything now (the CLI's own result line
// usually repeats it).
func (e *Emitter) NoteError(msg string) {
	if msg = strings.TrimSpace(msg); msg != "" {
		e.lastErr = msg
	}
}

// Complete ends the turn successfully. answer is the final text; when empty,
// the last text block is used.
func (e *Emitter) Complete(answer string) []event.Event {
	if e.terminal {
		return nil
	}
	evs := e.closeBlocks()
	if answer == "" {
		answer = e.last
	}
	e.terminal = true
	e.summary.Outcome = OutcomeCompleted
	msg := event.Event{Kind: event.KindAssistantMessage, Content: answer, Success: true, Model: e.summary.Model}
	e.addCost(&msg)
	return append(evs, msg)
}

// Fail ends the turn with an error.
func (e *Emitter) Fail(msg, code string) []event.Event {
	if e.terminal {
		return nil
	}
	evs := e.closeBlocks()
	msg = strings.TrimSpace(msg)
	if msg == "" {
		msg = e.cli + " failed"
	}
	e.terminal = true
	e.summary.Outcome = OutcomeFailed
	am := event.Event{Kind: event.KindAssistantMessage, Content: msg, Model: e.summary.Model, Resumable: true}
	e.addCost(&am)
	return append(evs,
		event.Event{Kind: event.KindError, Message: msg, Fatal: true, Code: code, Resumable: true},
		am)
}

// Cancelled ends the turn as stopped by the user; the reference reports it as
// an unsuccessful, resumable "Cancelled" answer.
func (e *Emitter) Cancelled() []event.Event {
	if e.terminal {
		return nil
	}
	evs := e.closeBlocks()
	e.terminal = true
	e.summary.Outcome = OutcomeCancelled
	am := event.Event{Kind: event.KindAssistantMessage, Content: "Cancelled", Model: e.summary.Model, Resumable: true}
	e.addCost(&am)
	return append(evs, am)
}

// Finish ends the turn when the process has exited. Calls still open get an
// error result. If the CLI printed
// no terminal line, the exit decides: cancelled, success on 0, otherwise a
// failure explained by the last error or the tail of non-JSON output.
//
// A runner's Failure (a watchdog stopped the CLI) fails the turn with that
// reason; if the CLI answered its interrupt with an unsuccessful terminal
// line of its own, the reason still follows as a fatal error event.
func (e *Emitter) Finish(x Exit) []event.Event {
	evs := e.closeCalls()
	switch {
	case x.Failure != "" && !e.terminal:
		evs = append(evs, e.Fail(x.Failure, x.FailureCode)...)
	case x.Failure != "" && e.summary.Outcome != OutcomeCompleted:
		e.summary.Outcome = OutcomeFailed
		evs = append(evs, event.Event{Kind: event.KindError, Message: x.Failure, Fatal: true, Code: x.FailureCode, Resumable: true})
	case e.terminal:
	case x.Cancelled:
		evs = append(evs, e.Cancelled()...)
	case x.Code == 0:
		evs = append(evs, e.Complete("")...)
	default:
		evs = append(evs, e.Fail(e.exitMessage(x), "exit_status")...)
	}
	return evs
}

func (e *Emitter) exitMessage(x Exit) string {
	how := fmt.Sprintf("exited with status %d", x.Code)
	if x.Code < 0 {
		how = "was killed by a signal"
	}
	detail := e.lastErr
	if detail == "" {
		e.tail.add(strings.TrimSpace(x.Stderr))
		detail = e.tail.String()
	}
	if detail == "" {
		return fmt.Sprintf("%s %s without output", e.cli, how)
	}
	return fmt.Sprintf("%s %s: %s", e.cli, how, detail)
}

// closeBlocks ends open text, thinking and tool calls at the end of a turn.
func (e *Emitter) closeBlocks() []event.Event {
	var evs []event.Event
	e.textOpen = false
	if e.thinkingOpen {
		evs = e.ThinkingDone("")
	}
	return append(evs, e.closeCalls()...)
}

// closeCalls gives every open call an error result, so that no client waits
// on it forever.
func (e *Emitter) closeCalls() []event.Event {
	var evs []event.Event
	for _, id := range e.open {
		c := e.calls[id]
		c.finished = true
		evs = append(evs, event.Event{
			Kind: event.KindToolResult, ToolCallID: id, ToolName: c.name,
			Result: mustString("the tool did not finish: the agent stopped"), IsError: true,
		})
	}
	e.open = e.open[:0]
	return evs
}

func (e *Emitter) addCost(m *event.Event) {
	if u := e.summary.Usage; !u.IsZero() {
		m.Usage = &u
	}
	if c := e.summary.CostUSD; c != nil {
		usd := *c
		m.CostUSD = &usd
		m.CostCents = int64(math.Round(usd * 100))
	}
}

// asJSON returns raw when it is valid JSON, def when empty, and raw as a JSON
// string otherwise.
func asJSON(raw json.RawMessage, def string) json.RawMessage {
	switch {
	case len(raw) == 0:
		return json.RawMessage(def)
	case json.Valid(raw):
		return raw
	default:
		return mustString(string(raw))
	}
}

func mustString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // cannot fail on a string
	return b
}

// String returns s as a JSON string, for tool outputs.
func String(s string) json.RawMessage { return mustString(s) }

// tail keeps the last lines of non-JSON output, bounded in count and size.
type tail struct {
	lines []string
}

const (
	tailLines   = 20
	tailLineMax = 512
)

func (t *tail) add(s string) {
	if s == "" {
		return
	}
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if len(l) > tailLineMax {
			l = l[:tailLineMax] + "…"
		}
		if len(t.lines) == tailLines {
			t.lines = append(t.lines[:0], t.lines[1:]...)
		}
		t.lines = append(t.lines, l)
	}
}

func (t *tail) String() string { return strings.Join(t.lines, "\n") }
