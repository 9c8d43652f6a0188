// Package opencode runs turns with `opencode run --format json`
// (agent-clis.md §4.1). The server API (§4.2) would add token streaming and
// approvals; run mode is the simple, process-per-turn form the other
// backends share.
package opencode

import (
	"encoding/json"
	"fmt"

	"sortie.dev/services/mission-control/internal/backend"
)

// Name is the backend's name in missions.
const Name = "opencode"

// DefaultExecutable is the CLI looked up in PATH.
const DefaultExecutable = "opencode"

// permissive is the config that lets a non-interactive run use its tools:
// run rejects every permission ask otherwise, and unlike --auto this works
// on old and new builds alike.
var permissive = map[string]any{"edit": "allow", "bash": "allow", "webfetch": "allow"}

// Command builds the invocation of one turn:
//
//	opencode run --format=json --thinking [--model=provider/model]
//	  [--variant=E] [--agent=A] [--session=ID]          (prompt on stdin)
//
// With no message argument, run takes the message from stdin.
func Command(r backend.Request) (backend.Command, error) {
	if err := r.Validate(); err != nil {
		return backend.Command{}, fmt.Errorf("opencode: %w", err)
	}
	exe := r.Executable
	if exe == "" {
		exe = DefaultExecutable
	}
	argv := []string{exe, "run", "--format=json", "--thinking"}
	if r.Model != "" {
		argv = append(argv, "--model="+r.Model)
	}
	if r.Effort != backend.EffortDefault {
		argv = append(argv, "--variant="+string(r.Effort))
	}
	if r.Agent != "" {
		argv = append(argv, "--agent="+r.Agent)
	}
	if r.Resume != "" {
		argv = append(argv, "--session="+r.Resume)
	}
	env := backend.BaseEnv(r, nil)
	env["OPENCODE_CONFIG_CONTENT"] = configContent(env["OPENCODE_CONFIG_CONTENT"])
	env["OPENCODE_DISABLE_AUTOUPDATE"] = "1"
	return backend.Command{Argv: argv, Dir: r.WorkDir, Env: env, Stdin: r.Prompt}, nil
}

// configContent merges the permissive permissions into the workspace's own
// inline config, if it has a valid one.
func configContent(own string) string {
	cfg := map[string]any{}
	if own != "" {
		_ = json.Unmarshal([]byte(own), &cfg) // invalid config: start afresh
		if cfg == nil {
			cfg = map[string]any{}
		}
	}
	perm, _ := cfg["permission"].(map[string]any)
	if perm == nil {
		perm = map[string]any{}
	}
	for k, v := range permissive {
		perm[k] = v
	}
	cfg["permission"] = perm
	b, _ := json.Marshal(cfg) // values came from JSON
	return string(b)
}
