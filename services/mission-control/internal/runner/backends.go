package runner

import (
	"fmt"
	"strings"

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

// opencodeProviders are the providers whose credentials OpenCode can be
// given, in the order tried when the mission names no model.
var opencodeProviders = []string{"anthropic", "openai"}

// providerFor is the one provider whose credential a CLI backend's turn
// gets: Claude Code anthropic, Codex openai, Amp amp. OpenCode gets the
// provider its model names ("anthropic/…", "openai/…"; another provider
// gets none: the workspace's own OpenCode config applies), or, without a
// model, the first of anthropic and openai the owner has a credential for
// (has reports that), which OpenCode then picks its default model from.
// Never more than one: OpenCode is not handed every key.
func providerFor(name, model string, has func(provider string) bool) string {
	switch name {
	case claudecode.Name:
		return "anthropic"
	case codex.Name:
		return "openai"
	case amp.Name:
		return "amp"
	case opencode.Name:
		if model != "" {
			p, _, ok := strings.Cut(model, "/")
			if ok {
				for _, known := range opencodeProviders {
					if p == known {
						return p
					}
				}
			}
			return ""
		}
		for _, p := range opencodeProviders {
			if has(p) {
				return p
			}
		}
	}
	return ""
}

// providerEnv is the variable of a provider's secret for OpenCode.
var providerEnv = map[string]string{"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}

// credentialEnv is the environment a backend's CLI reads the secret of
// provider from; nothing for an empty secret.
func credentialEnv(name, provider, secret string) map[string]string {
	if secret == "" {
		return nil
	}
	switch name {
	case claudecode.Name:
		return claudecode.CredentialEnv(secret)
	case codex.Name:
		// The same secret under both names: exec reads CODEX_API_KEY, tools
		// and older builds OPENAI_API_KEY.
		env := codex.CredentialEnv(secret)
		env["OPENAI_API_KEY"] = secret
		return env
	case amp.Name:
		return amp.CredentialEnv(secret)
	case opencode.Name:
		if v := providerEnv[provider]; v != "" {
			return map[string]string{v: secret}
		}
	}
	return nil
}
