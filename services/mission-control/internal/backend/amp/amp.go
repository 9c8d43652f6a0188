// Package amp runs turns with Sourcegraph's Amp in execute mode with
// stream-json output (agent-clis.md §5).
package amp

import (
	"encoding/json"
	"fmt"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/streamjson"
)

// Name is the backend's name in missions.
const Name = "amp"

// DefaultExecutable is the CLI looked up in PATH.
const DefaultExecutable = "amp"

// MaxArgPrompt is the longest prompt passed in argv. Linux refuses a single
// argument over 128 KiB (MAX_ARG_STRLEN); longer prompts go on stdin.
const MaxArgPrompt = 100 << 10

// Parser parses Amp's stream-json output (Claude Code compatible).
type Parser = streamjson.Parser

// NewParser returns a parser for one run.
func NewParser(opts backend.ParserOptions) *Parser {
	return streamjson.New("amp", opts)
}

// Command builds the invocation of one turn:
//
//	amp [threads continue ID] --execute PROMPT --stream-json --stream-json-thinking
//	  --dangerously-allow-all [--mode=MODE]
//
// --execute takes the prompt as its value, so the prompt comes right after it
// (the reference orchestrator's bug was a prompt after other flags). A
// prompt too long for argv is sent on stdin as a stream-json user message
// instead, the form the manual documents for piped input. Amp has no model
// flag; the effort picks the mode unless the mission's agent names one.
func Command(r backend.Request) (backend.Command, error) {
	if err := r.Validate(); err != nil {
		return backend.Command{}, fmt.Errorf("amp: %w", err)
	}
	exe := r.Executable
	if exe == "" {
		exe = DefaultExecutable
	}
	argv := []string{exe}
	if r.Resume != "" {
		argv = append(argv, "threads", "continue", r.Resume)
	}
	var stdin string
	if len(r.Prompt) <= MaxArgPrompt {
		argv = append(argv, "--execute", r.Prompt, "--stream-json")
	} else {
		argv = append(argv, "-x", "--stream-json", "--stream-json-input")
		stdin = userMessage(r.Prompt)
	}
	argv = append(argv, "--stream-json-thinking", "--dangerously-allow-all")
	if m := mode(r); m != "" {
		argv = append(argv, "--mode="+m)
	}
	return backend.Command{Argv: argv, Dir: r.WorkDir, Env: backend.BaseEnv(r, nil), Stdin: stdin}, nil
}

// mode maps the mission to an Amp mode: an agent named like a mode wins,
// else low effort is rush, high is deep, medium is smart.
func mode(r backend.Request) string {
	switch r.Agent {
	case "smart", "rush", "deep":
		return r.Agent
	}
	switch r.Effort {
	case backend.EffortLow:
		return "rush"
	case backend.EffortMedium:
		return "smart"
	case backend.EffortHigh:
		return "deep"
	}
	return ""
}

// userMessage is one stream-json input line carrying prompt.
func userMessage(prompt string) string {
	type text struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	msg := struct {
		Type    string `json:"type"`
		Message struct {
			Role    string `json:"role"`
			Content []text `json:"content"`
		} `json:"message"`
	}{Type: "user"}
	msg.Message.Role = "user"
	msg.Message.Content = []text{{Type: "text", Text: prompt}}
	b, _ := json.Marshal(msg) // cannot fail: strings only
	return string(b) + "\n"
}

// CredentialEnv returns the environment for an Amp API key.
func CredentialEnv(apiKey string) map[string]string {
	return map[string]string{"AMP_API_KEY": apiKey}
}
