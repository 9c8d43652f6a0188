package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// claude speaks `claude -p --output-format stream-json --verbose`.
type claude struct {
	*out
	inv     invocation
	msgN    int
	partial bool
}

func (c *claude) parse(args []string, stdin io.Reader) (invocation, error) {
	var inv invocation
	var print, verbose, streamJSON bool
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if v, ok := flagValue(a, "--resume"); ok {
			inv.session, inv.resume = v, true
			continue
		}
		if v, ok := flagValue(a, "--session-id"); ok {
			inv.session = v
			continue
		}
		if v, ok := flagValue(a, "--model"); ok {
			inv.model = v
			continue
		}
		if v, ok := flagValue(a, "--effort"); ok && v != "low" && v != "medium" && v != "high" && v != "xhigh" && v != "max" {
			return inv, usageError{"invalid --effort " + v}
		}
		switch a {
		case "-p", "--print":
			print = true
		case "--verbose":
			verbose = true
		case "--include-partial-messages":
			inv.partial = true
		case "--output-format=stream-json":
			streamJSON = true
		default:
			if !strings.HasPrefix(a, "--") {
				positional = append(positional, a)
			}
		}
	}
	if !print || !streamJSON {
		return inv, usageError{"this fake only supports -p --output-format=stream-json"}
	}
	if !verbose {
		return inv, fmt.Errorf("when using --print, --output-format=stream-json requires --verbose")
	}
	if inv.resume && !exists(sessionFile("CLAUDE_CONFIG_DIR", ".claude", inv.session)) {
		return inv, fmt.Errorf("no conversation found with session ID: %s", inv.session)
	}
	inv.prompt = strings.Join(positional, " ")
	if inv.prompt == "" {
		p, err := readPrompt(stdin)
		if err != nil {
			return inv, err
		}
		inv.prompt = p
	}
	if inv.prompt == "" {
		return inv, fmt.Errorf("input must be provided either through stdin or as a prompt argument when using --print")
	}
	if inv.session == "" {
		inv.session = newUUID()
	}
	if inv.model == "" {
		inv.model = "claude-sonnet-4-5"
	}
	return inv, nil
}

func (c *claude) authorised() bool {
	return os.Getenv("ANTHROPIC_API_KEY") != "" || os.Getenv("CLAUDE_CODE_OAUTH_TOKEN") != ""
}

func (c *claude) start(inv invocation) {
	c.inv, c.partial = inv, inv.partial
	saveSession(sessionFile("CLAUDE_CONFIG_DIR", ".claude", inv.session))
	cwd, _ := os.Getwd()
	c.line(obj{"type": "system", "subtype": "init", "session_id": inv.session, "cwd": cwd, "model": inv.model,
		"tools": []string{"Bash", "Read", "Edit"}, "mcp_servers": []any{}, "permissionMode": "bypassPermissions",
		"apiKeySource": "ANTHROPIC_API_KEY"})
}

func (c *claude) msg(blocks ...obj) obj {
	return obj{"type": "assistant", "session_id": c.inv.session, "parent_tool_use_id": nil, "uuid": randomHex(8),
		"message": obj{"id": fmt.Sprintf("msg_%02d", c.msgN), "model": c.inv.model, "role": "assistant",
			"content": blocks, "usage": obj{"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 900}}}
}

func (c *claude) stream(ev obj) {
	c.line(obj{"type": "stream_event", "session_id": c.inv.session, "parent_tool_use_id": nil, "uuid": randomHex(8), "event": ev})
}

// streamBlock streams text in small pieces, as the API does.
func (c *claude) streamBlock(kind, field, text string) {
	c.stream(obj{"type": "content_block_start", "index": 0, "content_block": obj{"type": kind, field: ""}})
	for _, piece := range chunks(text, 8) {
		c.stream(obj{"type": "content_block_delta", "index": 0, "delta": obj{"type": kind + "_delta", field: piece}})
	}
	c.stream(obj{"type": "content_block_stop", "index": 0})
}

func (c *claude) thinking(text string) {
	c.msgN++
	if c.partial {
		c.stream(obj{"type": "message_start", "message": obj{"id": fmt.Sprintf("msg_%02d", c.msgN), "model": c.inv.model, "content": []any{}}})
		c.streamBlock("thinking", "thinking", text)
	}
	c.line(c.msg(obj{"type": "thinking", "thinking": text, "signature": "c2ln"}))
}

func (c *claude) text(text string) {
	c.msgN++
	if c.partial {
		c.stream(obj{"type": "message_start", "message": obj{"id": fmt.Sprintf("msg_%02d", c.msgN), "model": c.inv.model, "content": []any{}}})
		c.streamBlock("text", "text", text)
	}
	c.line(c.msg(obj{"type": "text", "text": text}))
}

func (c *claude) toolCall(id, command string) {
	c.line(c.msg(obj{"type": "tool_use", "id": id, "name": "Bash", "input": obj{"command": command}}))
}

func (c *claude) toolResult(id, _ string, output string, code int) {
	c.line(obj{"type": "user", "session_id": c.inv.session, "parent_tool_use_id": nil,
		"message":         obj{"role": "user", "content": []obj{{"type": "tool_result", "tool_use_id": id, "content": output, "is_error": code != 0}}},
		"tool_use_result": obj{"stdout": output, "stderr": "", "interrupted": false, "isImage": false}})
}

func (c *claude) result(extra obj) {
	r := obj{"type": "result", "subtype": "success", "is_error": false, "duration_ms": 1200, "num_turns": 2,
		"session_id": c.inv.session, "total_cost_usd": 0.0123, "terminal_reason": "completed",
		"usage": obj{"input_tokens": 300, "output_tokens": 60, "cache_read_input_tokens": 2700, "cache_creation_input_tokens": 0}}
	for k, v := range extra {
		r[k] = v
	}
	c.line(r)
}

func (c *claude) done(answer string) { c.result(obj{"result": answer}) }

func (c *claude) fail(msg string) {
	c.result(obj{"is_error": true, "result": msg, "api_error_status": 500})
}

func (c *claude) interrupted() {
	c.result(obj{"subtype": "error_during_execution", "is_error": true, "terminal_reason": "aborted_streaming", "errors": []any{}})
}

// codex speaks `codex exec --json`.
type codex struct {
	*out
	items int
}

func (c *codex) parse(args []string, stdin io.Reader) (invocation, error) {
	var inv invocation
	if len(args) == 0 || args[0] != "exec" {
		return inv, usageError{"this fake only supports `codex exec`"}
	}
	var jsonOut bool
	var positional []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--json":
			jsonOut = true
		case a == "-c" && i+1 < len(args):
			i++
			if v, ok := strings.CutPrefix(args[i], "model_reasoning_effort="); ok {
				switch strings.Trim(v, `"`) {
				case "minimal", "low", "medium", "high", "xhigh":
				default:
					return inv, fmt.Errorf("invalid model_reasoning_effort %s", v)
				}
			}
		case strings.HasPrefix(a, "--cd="):
			inv.dir = strings.TrimPrefix(a, "--cd=")
		case strings.HasPrefix(a, "--model="):
			inv.model = strings.TrimPrefix(a, "--model=")
		case a == "resume" && len(positional) == 0 && i+1 < len(args):
			i++
			inv.session, inv.resume = args[i], true
		case strings.HasPrefix(a, "-") && a != "-":
		default:
			positional = append(positional, a)
		}
	}
	if !jsonOut {
		return inv, usageError{"this fake only supports --json"}
	}
	if inv.resume && !exists(sessionFile("CODEX_HOME", ".codex", inv.session)) {
		return inv, fmt.Errorf("no rollout found for thread id %s", inv.session)
	}
	if len(positional) == 0 || positional[0] == "-" {
		p, err := readPrompt(stdin)
		if err != nil {
			return inv, err
		}
		positional = []string{p}
	}
	inv.prompt = strings.Join(positional, " ")
	if inv.session == "" {
		inv.session = newUUID()
	}
	return inv, nil
}

func (c *codex) authorised() bool {
	return os.Getenv("CODEX_API_KEY") != "" || os.Getenv("OPENAI_API_KEY") != ""
}

func (c *codex) start(inv invocation) {
	saveSession(sessionFile("CODEX_HOME", ".codex", inv.session))
	c.line(obj{"type": "thread.started", "thread_id": inv.session})
	c.line(obj{"type": "turn.started"})
}

func (c *codex) item(typ string, it obj) {
	if it["id"] == nil {
		it["id"] = fmt.Sprintf("item_%d", c.items)
		c.items++
	}
	c.line(obj{"type": typ, "item": it})
}

func (c *codex) thinking(text string) {
	c.item("item.completed", obj{"type": "reasoning", "text": "**" + text + "**"})
}

func (c *codex) text(text string) {
	c.item("item.completed", obj{"type": "agent_message", "text": text})
}

func (c *codex) toolCall(id, command string) {
	c.item("item.started", obj{"id": id, "type": "command_execution", "command": "bash -lc '" + command + "'",
		"aggregated_output": "", "status": "in_progress"})
}

func (c *codex) toolResult(id, command, output string, code int) {
	status := "completed"
	if code != 0 {
		status = "failed"
	}
	c.item("item.completed", obj{"id": id, "type": "command_execution", "command": "bash -lc '" + command + "'",
		"aggregated_output": output, "exit_code": code, "status": status})
}

func (c *codex) done(string) {
	c.line(obj{"type": "turn.completed", "usage": obj{"input_tokens": 2400, "cached_input_tokens": 2000, "output_tokens": 90}})
}

func (c *codex) fail(msg string) {
	c.line(obj{"type": "error", "message": msg})
	c.line(obj{"type": "turn.failed", "error": obj{"message": msg}})
}

func (c *codex) interrupted() {} // exec prints no terminal line on SIGINT

// opencode speaks `opencode run --format json`.
type opencode struct {
	*out
	session  string
	thinks   bool
	messageN int
}

func (o *opencode) parse(args []string, stdin io.Reader) (invocation, error) {
	var inv invocation
	if len(args) == 0 || args[0] != "run" {
		return inv, usageError{"this fake only supports `opencode run`"}
	}
	var jsonOut bool
	var words []string
	for _, a := range args[1:] {
		switch {
		case a == "--format=json":
			jsonOut = true
		case a == "--thinking":
			inv.thinking = true
		case strings.HasPrefix(a, "--session="):
			inv.session, inv.resume = strings.TrimPrefix(a, "--session="), true
		case strings.HasPrefix(a, "--model="):
			inv.model = strings.TrimPrefix(a, "--model=")
			if !strings.Contains(inv.model, "/") {
				return inv, fmt.Errorf("model must be provider/model, got %q", inv.model)
			}
		case strings.HasPrefix(a, "-"):
		default:
			words = append(words, a)
		}
	}
	if !jsonOut {
		return inv, usageError{"this fake only supports --format=json"}
	}
	// Like run.ts: the message words, then whatever stdin holds.
	p, err := readPrompt(stdin)
	if err != nil {
		return inv, err
	}
	inv.prompt = strings.TrimSpace(strings.Join(words, " ") + "\n" + p)
	if inv.prompt == "" {
		return inv, fmt.Errorf("you must provide a message or a command")
	}
	if inv.session == "" {
		inv.session = "ses_" + randomHex(10)
	}
	return inv, nil
}

func (o *opencode) authorised() bool { return true }

func (o *opencode) ev(typ string, part obj) {
	o.line(obj{"type": typ, "timestamp": time.Now().UnixMilli(), "sessionID": o.session, "part": part})
}

func (o *opencode) start(inv invocation) {
	o.session, o.thinks = inv.session, inv.thinking
	o.step()
}

func (o *opencode) step() {
	o.messageN++
	o.ev("step_start", obj{"id": "prt_" + randomHex(4), "messageID": fmt.Sprintf("msg_%d", o.messageN), "type": "step-start"})
}

func (o *opencode) thinking(text string) {
	if o.thinks {
		o.ev("reasoning", obj{"id": "prt_" + randomHex(4), "type": "reasoning", "text": text, "time": obj{"start": 1, "end": 2}})
	}
}

func (o *opencode) text(text string) {
	o.ev("text", obj{"id": "prt_" + randomHex(4), "type": "text", "text": text, "time": obj{"start": 1, "end": 2}})
}

func (o *opencode) toolCall(string, string) {} // run mode prints tools once finished

func (o *opencode) toolResult(id, command, output string, code int) {
	state := obj{"status": "completed", "input": obj{"command": command}, "output": output, "title": command,
		"metadata": obj{"exit": code}, "time": obj{"start": 1, "end": 2}}
	o.ev("tool_use", obj{"id": "prt_" + randomHex(4), "type": "tool", "callID": id, "tool": "bash", "state": state})
	o.finishStep("tool-calls")
	o.step()
}

func (o *opencode) finishStep(reason string) {
	o.ev("step_finish", obj{"type": "step-finish", "reason": reason, "cost": 0.002,
		"tokens": obj{"input": 1000, "output": 40, "reasoning": 5, "cache": obj{"read": 800, "write": 0}}})
}

func (o *opencode) done(string) {
	o.finishStep("stop")
	o.line(obj{"type": "done", "reason": "idle", "rejected": []any{}})
}

func (o *opencode) fail(msg string) {
	o.line(obj{"type": "error", "timestamp": time.Now().UnixMilli(), "sessionID": o.session,
		"error": obj{"name": "APIError", "data": obj{"message": msg, "statusCode": 500, "isRetryable": false}}})
}

func (o *opencode) interrupted() {}

// amp speaks `amp --execute … --stream-json`: Claude's format with a prompt
// echo, no partial messages and no cost.
type amp struct {
	claude
	allowAll bool
}

func (a *amp) parse(args []string, stdin io.Reader) (invocation, error) {
	var inv invocation
	var streamJSON, execute, jsonInput bool
	if len(args) >= 3 && args[0] == "threads" && args[1] == "continue" {
		inv.session, inv.resume = args[2], true
		args = args[3:]
	}
	for i := 0; i < len(args); i++ {
		switch x := args[i]; x {
		case "-x", "--execute":
			execute = true
			// The prompt is the flag's value; a flag after it means stdin.
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				inv.prompt = args[i]
			}
		case "--stream-json":
			streamJSON = true
		case "--stream-json-input":
			jsonInput = true
		case "--stream-json-thinking":
			inv.thinking = true
		case "--dangerously-allow-all":
			a.allowAll = true
		default:
			if !strings.HasPrefix(x, "-") {
				return inv, usageError{"unexpected argument " + x + " (the prompt belongs right after --execute)"}
			}
		}
	}
	if !execute || !streamJSON {
		return inv, usageError{"this fake only supports --execute with --stream-json"}
	}
	if inv.prompt == "" {
		p, err := readPrompt(stdin)
		if err != nil {
			return inv, err
		}
		inv.prompt = p
		if jsonInput && p != "" {
			var m struct {
				Message struct {
					Content []struct{ Text string } `json:"content"`
				} `json:"message"`
			}
			if err := json.Unmarshal([]byte(p), &m); err != nil || len(m.Message.Content) == 0 {
				return inv, fmt.Errorf("invalid stream-json input: %v", err)
			}
			inv.prompt = m.Message.Content[0].Text
		}
	}
	if inv.prompt == "" {
		return inv, fmt.Errorf("user message must be provided")
	}
	if inv.session == "" {
		inv.session = "T-" + newUUID()
	}
	inv.model = ""
	return inv, nil
}

func (a *amp) authorised() bool { return os.Getenv("AMP_API_KEY") != "" }

func (a *amp) start(inv invocation) {
	a.inv = inv
	a.line(obj{"type": "system", "subtype": "init", "cwd": ".", "session_id": inv.session,
		"tools": []string{"Bash", "Read", "edit_file"}, "mcp_servers": []any{}})
	a.line(obj{"type": "user", "parent_tool_use_id": nil, "session_id": inv.session,
		"message": obj{"role": "user", "content": []obj{{"type": "text", "text": inv.prompt}}}})
}

func (a *amp) thinking(text string) {
	if a.inv.thinking {
		a.claude.thinking(text)
	}
}

func (a *amp) toolResult(id, command, output string, code int) {
	if !a.allowAll {
		output, code = "permission denied: run with --dangerously-allow-all", 1
	}
	a.claude.toolResult(id, command, output, code)
}

func (a *amp) done(answer string) {
	a.line(obj{"type": "result", "subtype": "success", "duration_ms": 900, "is_error": false, "num_turns": 2,
		"result": answer, "session_id": a.inv.session})
}

func (a *amp) fail(msg string) {
	a.line(obj{"type": "result", "subtype": "error_during_execution", "duration_ms": 900, "is_error": true,
		"num_turns": 1, "error": msg, "session_id": a.inv.session})
}

func (a *amp) interrupted() {
	a.line(obj{"type": "result", "subtype": "error_during_execution", "is_error": true, "num_turns": 1,
		"error": "aborted", "terminal_reason": "aborted_streaming", "session_id": a.inv.session})
}

// chunks splits s into pieces of about n bytes on rune boundaries.
func chunks(s string, n int) []string {
	var out []string
	r := []rune(s)
	for len(r) > 0 {
		k := min(n, len(r))
		out = append(out, string(r[:k]))
		r = r[k:]
	}
	return out
}
