// Package codex runs turns with the OpenAI Codex CLI in `codex exec --json`
// mode (agent-clis.md §3).
package codex

import (
	"fmt"

	"sortie.dev/services/mission-control/internal/backend"
)

// Name is the backend's name in missions.
const Name = "codex"

// DefaultExecutable is the CLI looked up in PATH.
const DefaultExecutable = "codex"

// Command builds the invocation of one turn:
//
//	codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
//	  --color=never [--cd=DIR] [--model=M] [-c model_reasoning_effort="E"]
//	  -c model_reasoning_summary="auto" [resume ID] -      (prompt on stdin)
//
// "-" makes Codex read the prompt from stdin (a prompt in argv plus a piped
// stdin would get the stdin appended). The workspace pod is the sandbox, so
// Codex's own is bypassed; exec never asks for approval. The library agent
// has no Codex equivalent and is ignored.
func Command(r backend.Request) (backend.Command, error) {
	if err := r.Validate(); err != nil {
		return backend.Command{}, fmt.Errorf("codex: %w", err)
	}
	exe := r.Executable
	if exe == "" {
		exe = DefaultExecutable
	}
	argv := []string{exe, "exec", "--json", "--skip-git-repo-check",
		"--dangerously-bypass-approvals-and-sandbox", "--color=never"}
	if r.WorkDir != "" {
		argv = append(argv, "--cd="+r.WorkDir)
	}
	if r.Model != "" {
		argv = append(argv, "--model="+r.Model)
	}
	if r.Effort != backend.EffortDefault {
		argv = append(argv, "-c", fmt.Sprintf("model_reasoning_effort=%q", r.Effort))
	}
	// Without a summary setting some models emit no reasoning items.
	argv = append(argv, "-c", `model_reasoning_summary="auto"`)
	if r.Resume != "" {
		argv = append(argv, "resume", r.Resume)
	}
	argv = append(argv, "-")
	env := backend.BaseEnv(r, nil)
	// config.toml, auth.json (rewritten on refresh) and the session rollouts
	// resume needs all live here.
	env["CODEX_HOME"] = r.Home + "/.codex"
	return backend.Command{Argv: argv, Dir: r.WorkDir, Env: env, Stdin: r.Prompt}, nil
}

// CredentialEnv returns the environment for an OpenAI API key; exec reads
// CODEX_API_KEY without a login step.
func CredentialEnv(apiKey string) map[string]string {
	return map[string]string{"CODEX_API_KEY": apiKey}
}
