package backend

import (
	"encoding/json"
	"path"
	"strings"

	"sortie.dev/services/mission-control/internal/event"
)

// Activity returns the mission_activity for a tool call: a short human label
// like the reference's "Running: ls -la", "Reading: main.rs" or
// "mcp: server: tool". Tool names differ per CLI (Bash, bash, shell), so the
// match is on the lower-cased name.
func Activity(tool string, args json.RawMessage) event.Event {
	var a map[string]any
	_ = json.Unmarshal(args, &a) // a non-object leaves a nil map: generic label
	arg := func(keys ...string) string {
		for _, k := range keys {
			if s, ok := a[k].(string); ok && s != "" {
				return oneLine(s)
			}
		}
		return ""
	}
	file := func() string {
		if p := arg("file_path", "filePath", "path", "file", "notebook_path"); p != "" {
			return path.Base(p)
		}
		// Codex file_change: {"changes": [{"path": …}, …]}
		if cs, ok := a["changes"].([]any); ok && len(cs) > 0 {
			if c, ok := cs[0].(map[string]any); ok {
				if p, ok := c["path"].(string); ok && p != "" {
					return path.Base(p)
				}
			}
		}
		return ""
	}
	label := "Using: " + tool
	switch name := strings.ToLower(tool); {
	case strings.HasPrefix(name, "mcp__"):
		parts := strings.SplitN(tool, "__", 3)
		if len(parts) == 3 {
			label = "mcp: " + parts[1] + ": " + parts[2]
		}
	case name == "bash" || name == "shell" || name == "command" || name == "exec_command":
		label = withArg("Running", arg("command", "cmd"), tool)
	case name == "read" || name == "view" || name == "read_file":
		label = withArg("Reading", file(), tool)
	case name == "write" || name == "create_file":
		label = withArg("Writing", file(), tool)
	case name == "edit" || name == "multiedit" || name == "edit_file" || name == "apply_patch" || name == "patch":
		label = withArg("Editing", file(), tool)
	case name == "grep" || name == "glob" || name == "search" || name == "list" || name == "ls":
		label = withArg("Searching", arg("pattern", "query", "path"), tool)
	case name == "websearch" || name == "web_search":
		label = withArg("Searching the web", arg("query"), tool)
	case name == "webfetch" || name == "fetch":
		label = withArg("Fetching", arg("url"), tool)
	case name == "task" || name == "agent":
		label = withArg("Delegating", arg("description", "prompt"), tool)
	case name == "todowrite" || name == "todo_list":
		label = "Updating the plan"
	}
	return event.Event{Kind: event.KindMissionActivity, Label: label, ToolName: tool}
}

func withArg(verb, arg, tool string) string {
	if arg == "" {
		return verb + ": " + tool
	}
	return verb + ": " + arg
}

// oneLine keeps the first line of s, at most 80 runes.
func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if r := []rune(s); len(r) > 80 {
		return string(r[:79]) + "…"
	}
	return s
}
