// Package backend holds what the agent-CLI backends share: the turn request,
// the command a backend builds for it, and the Emitter that turns what a
// parser understood of a CLI's output into mission events.
//
// Each CLI has a subpackage (claudecode, codex, opencode, amp) with a pure
// command builder and a pure, stateful parser. Nothing here does I/O, so all
// of it is tested with fixture lines; running the command (through the
// workspace-agent's process API) is the mission runner's job.
package backend

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"

	"sortie.dev/services/mission-control/internal/event"
)

// Effort is a mission's model_effort.
type Effort string

// The accepted efforts; empty means the CLI's default.
const (
	EffortDefault Effort = ""
	EffortLow     Effort = "low"
	EffortMedium  Effort = "medium"
	EffortHigh    Effort = "high"
)

// ErrInvalidEffort is returned for an effort other than low, medium or high.
var ErrInvalidEffort = errors.New("model_effort must be low, medium or high")

// ParseEffort validates s.
func ParseEffort(s string) (Effort, error) {
	switch e := Effort(s); e {
	case EffortDefault, EffortLow, EffortMedium, EffortHigh:
		return e, nil
	}
	return "", fmt.Errorf("%w: %q", ErrInvalidEffort, s)
}

// Request describes one turn of a mission.
type Request struct {
	// Executable overrides the CLI to run (default: the CLI's usual name,
	// looked up in PATH).
	Executable string
	// Prompt is the user message of this turn.
	Prompt string
	// Model is the mission's model_override; empty means the CLI default.
	Model string
	// Effort is the mission's model_effort.
	Effort Effort
	// Agent is a library agent (or Amp mode) for CLIs that take one.
	Agent string
	// Resume is the session (thread) id a previous turn reported; empty
	// starts a new session.
	Resume string
	// NewSessionID names the session a new Claude Code session gets, so the
	// id is known before the CLI prints it. Ignored by the other CLIs.
	NewSessionID string
	// WorkDir is the mission's directory on the workspace volume; the CLI
	// runs there.
	WorkDir string
	// Home is the mission's own home directory on the workspace volume.
	// HOME, the XDG dirs and each CLI's config dir point inside it, so that
	// missions never share session files, locks or OAuth files.
	Home string
	// Env holds the workspace's (non-secret) environment variables.
	Env map[string]string
	// Credentials maps environment variable names to secrets (API keys,
	// OAuth tokens). They are only ever put in the environment, never in
	// argv, which any process can read from /proc.
	Credentials map[string]string
}

// Command is what to run for a turn. Its shape matches the workspace-agent's
// process API (argv, cwd, env, stdin written then closed).
type Command struct {
	Argv []string
	Dir  string
	Env  map[string]string
	// Stdin is written to the process and then closed. Every backend feeds
	// the prompt this way where the CLI allows it: argv is limited to 128 KiB
	// per argument on Linux, and a closed stdin is what keeps Claude Code
	// from hanging on an idle pipe.
	Stdin string
}

// Errors of Request validation.
var (
	ErrEmptyPrompt = errors.New("prompt is empty")
	ErrNoHome      = errors.New("a per-mission home directory is required")
	ErrBadEnvName  = errors.New("invalid environment variable name")
	ErrBadID       = errors.New("invalid session id")
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks what every backend needs from r.
func (r Request) Validate() error {
	if strings.TrimSpace(r.Prompt) == "" {
		return ErrEmptyPrompt
	}
	if r.Home == "" {
		return ErrNoHome
	}
	if _, err := ParseEffort(string(r.Effort)); err != nil {
		return err
	}
	for _, m := range []map[string]string{r.Env, r.Credentials} {
		for k := range m {
			if !envName.MatchString(k) {
				return fmt.Errorf("%w: %q", ErrBadEnvName, k)
			}
		}
	}
	for _, id := range []string{r.Resume, r.NewSessionID} {
		if err := CheckID(id); err != nil {
			return err
		}
	}
	return nil
}

// CheckID rejects session ids that could be taken for a flag or split into
// several arguments. Ids come back from CLI output, so they are not trusted.
func CheckID(id string) error {
	if id == "" {
		return nil
	}
	if strings.HasPrefix(id, "-") || len(id) > 256 || strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r == 0x7f
	}) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	return nil
}

// BaseEnv is the environment every CLI gets: the workspace's variables, a
// per-mission HOME and XDG dirs, no colours, and the credentials last so
// that nothing overrides them. drop lists inherited variables to remove
// (e.g. CLAUDECODE, which makes Claude Code think it runs nested).
func BaseEnv(r Request, drop func(name string) bool) map[string]string {
	env := make(map[string]string, len(r.Env)+len(r.Credentials)+8)
	for k, v := range r.Env {
		if drop == nil || !drop(k) {
			env[k] = v
		}
	}
	env["HOME"] = r.Home
	env["XDG_CONFIG_HOME"] = r.Home + "/.config"
	env["XDG_DATA_HOME"] = r.Home + "/.local/share"
	env["XDG_STATE_HOME"] = r.Home + "/.local/state"
	env["XDG_CACHE_HOME"] = r.Home + "/.cache"
	env["NO_COLOR"] = "1"
	env["TERM"] = "dumb"
	maps.Copy(env, r.Credentials)
	return env
}

// ParserOptions configures a parser for one run.
type ParserOptions struct {
	// RunID namespaces tool call ids. Codex numbers its items item_0,
	// item_1, ... afresh in every process, so two turns of one mission would
	// otherwise reuse ids and clients would join results to the wrong call.
	RunID string
	// Model is the model the turn was started with, reported when the CLI
	// does not name one.
	Model string
	// PriorUsage is the thread's usage before this turn. Codex reports
	// thread totals; the turn's usage is the difference.
	PriorUsage event.Usage
	// TextLimit bounds the text a turn streams and each thinking block
	// (DefaultFieldLimit when zero): past it the text is cut with a
	// marker and the rest is dropped, so a runaway CLI costs neither the
	// runner's memory nor Redis.
	TextLimit int
}

// Exit is how the CLI process ended.
type Exit struct {
	// Code is the exit status; -1 when a signal killed the process.
	Code int
	// Cancelled is true when the mission runner stopped the run.
	Cancelled bool
	// Failure, when set, is why the runner stopped the run (a watchdog):
	// the turn fails with it (code FailureCode) rather than as cancelled.
	Failure, FailureCode string
	// Stderr is the tail of a separate stderr, when the runner has one; the
	// workspace-agent merges stderr into the output, where parsers keep the
	// tail of non-JSON lines themselves.
	Stderr string
}

// Outcome is how a turn ended.
type Outcome string

// The outcomes; empty while the turn runs.
const (
	OutcomeRunning   Outcome = ""
	OutcomeCompleted Outcome = "completed"
	OutcomeFailed    Outcome = "failed"
	OutcomeCancelled Outcome = "cancelled"
)

// Summary is what a parser learned about the turn that is not an event but
// belongs on the mission: the resume key, usage and cost.
type Summary struct {
	// SessionID is the CLI's session or thread id, the Resume key of the
	// next turn.
	SessionID string      `json:"session_id,omitempty"`
	Model     string      `json:"model,omitempty"`
	Usage     event.Usage `json:"usage"`
	// CostUSD is nil when the CLI reports no cost (Codex, Amp).
	CostUSD *float64 `json:"cost_usd,omitempty"`
	Outcome Outcome  `json:"outcome,omitempty"`
	// Unknown counts lines of types the parser does not know, by type, so
	// that a CLI upgrade that adds events shows up in logs and metrics.
	Unknown map[string]int `json:"unknown,omitempty"`
	// NonJSON counts lines that were not JSON (stderr, banners, noise).
	NonJSON int `json:"non_json,omitempty"`
}
