// Package claudecode runs turns with Claude Code in print mode with
// stream-json output (agent-clis.md §2).
package claudecode

import (
	"fmt"
	"strings"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/streamjson"
)

// Name is the backend's name in missions ("backend": "claudecode").
const Name = "claudecode"

// DefaultExecutable is the CLI looked up in PATH.
const DefaultExecutable = "claude"

// Parser parses Claude Code's stream-json output.
type Parser = streamjson.Parser

// NewParser returns a parser for one run.
func NewParser(opts backend.ParserOptions) *Parser {
	return streamjson.New("claude", opts)
}

// Command builds the invocation of one turn:
//
//	claude -p --output-format=stream-json --verbose --include-partial-messages
//	  --permission-mode=bypassPermissions [--model=M] [--effort=E] [--agent=A]
//	  [--resume=ID | --session-id=ID]          (prompt on stdin)
//
// The prompt goes on stdin, which is then closed: no argv length limit, and
// no idle open pipe (on which the CLI is reported to hang). Ids use the
// --flag=value form so a value can never be read as a flag.
func Command(r backend.Request) (backend.Command, error) {
	if err := r.Validate(); err != nil {
		return backend.Command{}, fmt.Errorf("claudecode: %w", err)
	}
	exe := r.Executable
	if exe == "" {
		exe = DefaultExecutable
	}
	argv := []string{exe, "-p",
		"--output-format=stream-json", "--verbose", "--include-partial-messages",
		"--permission-mode=bypassPermissions",
	}
	if r.Model != "" {
		argv = append(argv, "--model="+r.Model)
	}
	if r.Effort != backend.EffortDefault {
		argv = append(argv, "--effort="+string(r.Effort))
	}
	if r.Agent != "" {
		argv = append(argv, "--agent="+r.Agent)
	}
	switch {
	case r.Resume != "":
		argv = append(argv, "--resume="+r.Resume)
	case r.NewSessionID != "":
		argv = append(argv, "--session-id="+r.NewSessionID)
	}
	env := backend.BaseEnv(r, inherited)
	// Sessions, settings and OAuth files live under the mission's home so
	// that resume finds them and missions never clobber each other.
	env["CLAUDE_CONFIG_DIR"] = r.Home + "/.claude"
	// Bypass mode refuses to run as root unless the CLI is told it is
	// sandboxed, which a workspace pod is.
	env["IS_SANDBOX"] = "1"
	return backend.Command{Argv: argv, Dir: r.WorkDir, Env: env, Stdin: r.Prompt}, nil
}

// inherited reports workspace variables that must not reach the CLI: an
// inherited CLAUDECODE makes it behave as a nested session.
func inherited(name string) bool {
	return name == "CLAUDECODE" || strings.HasPrefix(name, "CLAUDE_CODE_")
}

// CredentialEnv returns the environment for an Anthropic secret: OAuth
// tokens from `claude setup-token` (sk-ant-oat…) and API keys use different
// variables.
func CredentialEnv(secret string) map[string]string {
	if strings.HasPrefix(secret, "sk-ant-oat") {
		return map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": secret}
	}
	return map[string]string{"ANTHROPIC_API_KEY": secret}
}
