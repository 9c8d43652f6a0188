package runner

import (
	"fmt"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/amp"
	"sortie.dev/services/mission-control/internal/backend/claudecode"
	"sortie.dev/services/mission-control/internal/backend/codex"
	"sortie.dev/services/mission-control/internal/backend/opencode"
	"sortie.dev/services/mission-control/internal/event"
)

// parser is what every backend's parser provides.
type parser interface {
	Feed(line []byte) []event.Event
	Finish(x backend.Exit) []event.Event
	Summary() backend.Summary
}

// build returns the command and a fresh parser of a backend's turn.
func build(name string, r backend.Request, o backend.ParserOptions) (backend.Command, parser, error) {
	var (
		cmd backend.Command
		p   parser
		err error
	)
	switch name {
	case claudecode.Name:
		cmd, err = claudecode.Command(r)
		p = claudecode.NewParser(o)
	case codex.Name:
		cmd, err = codex.Command(r)
		p = codex.NewParser(o)
	case opencode.Name:
		cmd, err = opencode.Command(r)
		p = opencode.NewParser(o)
	case amp.Name:
		cmd, err = amp.Command(r)
		p = amp.NewParser(o)
	default:
		return cmd, nil, fmt.Errorf("unknown backend %q", name)
	}
	return cmd, p, err
}

// credentialsFor maps the configured provider secrets to the variables a
// backend's CLI reads.
func credentialsFor(name string, secrets map[string]string) map[string]string {
	out := map[string]string{}
	switch name {
	case claudecode.Name:
		if k := secrets["ANTHROPIC_API_KEY"]; k != "" {
			out = claudecode.CredentialEnv(k)
		}
	case codex.Name:
		if k := secrets["OPENAI_API_KEY"]; k != "" {
			out = codex.CredentialEnv(k)
			out["OPENAI_API_KEY"] = k
		}
	case amp.Name:
		if k := secrets["AMP_API_KEY"]; k != "" {
			out = amp.CredentialEnv(k)
		}
	case opencode.Name:
		for _, k := range []string{"ANTHROPIC_API_KEY", "OPENAI_API_KEY"} {
			if v := secrets[k]; v != "" {
				out[k] = v
			}
		}
	}
	return out
}
