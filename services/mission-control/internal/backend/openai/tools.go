package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/event"
)

// The tools the model can call.
const (
	toolShell = "shell"
	toolRead  = "read_file"
	toolWrite = "write_file"
)

// writeChunk is the most content one exec carries: the operator's request
// bodies are limited, so a large file is written in appended pieces.
const writeChunk = 256 << 10

func tools() []sdk.ChatCompletionToolUnionParam {
	fn := func(name, desc string, props map[string]any, required ...string) sdk.ChatCompletionToolUnionParam {
		return sdk.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        name,
			Description: sdk.String(desc),
			Parameters:  shared.FunctionParameters{"type": "object", "properties": props, "required": required},
		})
	}
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	num := func(desc string) map[string]any { return map[string]any{"type": "integer", "description": desc} }
	return []sdk.ChatCompletionToolUnionParam{
		fn(toolShell, "Run a shell command (/bin/sh -c) in the working directory and return its exit code and output.",
			map[string]any{"command": str("the command line"), "timeout_secs": num("time limit in seconds (default and maximum set by the server)")}, "command"),
		fn(toolRead, "Read a text file.",
			map[string]any{"path": str("file path, relative to the working directory or absolute")}, "path"),
		fn(toolWrite, "Create or overwrite a file with the given content (parent directories are created).",
			map[string]any{"path": str("file path, relative to the working directory or absolute"), "content": str("the whole new content")}, "path", "content"),
	}
}

// call runs one tool call: it announces it, runs it in the workspace,
// reports the result, and returns the text the model gets back.
func (r *Run) call(ctx context.Context, c *toolCall, send func([]event.Event) error) (string, error) {
	args := json.RawMessage(c.args.String())
	if err := send(r.em.ToolCall(c.id, c.name, args, "")); err != nil {
		return "", err
	}
	out, exit, isErr := r.runTool(ctx, c.name, args)
	if ctx.Err() != nil {
		// Cancelled or stopped: Finish closes the call.
		return "", ctx.Err()
	}
	if err := send(r.em.ToolResult(c.id, c.name, backend.String(out), isErr, exit)); err != nil {
		return "", err
	}
	return out, nil
}

// runTool returns the tool's output for the model, the exit code of a
// shell command, and whether the call failed.
func (r *Run) runTool(ctx context.Context, name string, raw json.RawMessage) (string, *int, bool) {
	var a struct {
		Command     string `json:"command"`
		TimeoutSecs int    `json:"timeout_secs"`
		Path        string `json:"path"`
		Content     string `json:"content"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return fmt.Sprintf("invalid arguments for %s: %v", name, err), nil, true
	}
	switch name {
	case toolShell:
		if strings.TrimSpace(a.Command) == "" {
			return "shell: command is required", nil, true
		}
		timeout := r.cfg.ShellTimeout
		if d := time.Duration(a.TimeoutSecs) * time.Second; d > 0 && d < timeout {
			timeout = d
		}
		res, err := r.exec(ctx, ExecRequest{Command: a.Command, Timeout: timeout})
		if err != nil {
			return "shell: " + err.Error(), nil, true
		}
		code := res.ExitCode
		var b strings.Builder
		fmt.Fprintf(&b, "exit code %d", code)
		if res.TimedOut {
			fmt.Fprintf(&b, " (killed after %v)", timeout)
		}
		b.WriteString("\n")
		b.WriteString(res.Stdout)
		if res.Stderr != "" {
			if res.Stdout != "" && !strings.HasSuffix(res.Stdout, "\n") {
				b.WriteString("\n")
			}
			b.WriteString(res.Stderr)
		}
		return r.cap(b.String(), res.Truncated), &code, code != 0 || res.TimedOut
	case toolRead:
		if a.Path == "" {
			return "read_file: path is required", nil, true
		}
		// One byte more than the limit tells whether the file is longer.
		res, err := r.exec(ctx, ExecRequest{Command: fmt.Sprintf("head -c %d -- %s", r.cfg.OutputLimit+1, quote(a.Path)), Timeout: time.Minute})
		if err != nil {
			return "read_file: " + err.Error(), nil, true
		}
		if res.ExitCode != 0 {
			return "read_file: " + strings.TrimSpace(res.Stderr), nil, true
		}
		return r.cap(res.Stdout, false), nil, false
	case toolWrite:
		if a.Path == "" {
			return "write_file: path is required", nil, true
		}
		p := quote(a.Path)
		content := a.Content
		first := true
		for first || content != "" {
			piece := content[:min(len(content), writeChunk)]
			content = content[len(piece):]
			cmd := "cat >> " + p
			if first {
				cmd = fmt.Sprintf("mkdir -p -- %s && cat > %s", quote(path.Dir(a.Path)), p)
				first = false
			}
			res, err := r.exec(ctx, ExecRequest{Command: cmd, Stdin: piece, Timeout: time.Minute})
			if err != nil {
				return "write_file: " + err.Error(), nil, true
			}
			if res.ExitCode != 0 {
				return "write_file: " + strings.TrimSpace(res.Stderr), nil, true
			}
		}
		return fmt.Sprintf("wrote %d bytes to %s", len(a.Content), a.Path), nil, false
	}
	return fmt.Sprintf("unknown tool %q; the tools are shell, read_file and write_file", name), nil, true
}

// exec runs a command in the mission directory with the mission's
// environment (never the endpoint's credentials).
func (r *Run) exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	req.Dir = r.turn.Request.WorkDir
	env := r.turn.Request
	env.Credentials = nil
	req.Env = backend.BaseEnv(env, nil)
	return r.ws.Exec(ctx, req)
}

// cap cuts s to the output limit with a marker.
func (r *Run) cap(s string, truncated bool) string {
	if len(s) > r.cfg.OutputLimit {
		return s[:r.cfg.OutputLimit] + fmt.Sprintf("\n[output truncated: %d bytes kept]", r.cfg.OutputLimit)
	}
	if truncated {
		return s + "\n[output truncated by the workspace]"
	}
	return s
}

// quote quotes s for /bin/sh.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
