package config

import (
	"time"

	"sortie.dev/services/kit/config"
)

// BuiltinBackend is the backend that runs an agent loop inside
// mission-control against an OpenAI-compatible chat-completions endpoint.
const BuiltinBackend = "openai"

// CLIBackends are the backends that run an agent CLI in the workspace.
func CLIBackends() []string {
	var out []string
	for _, b := range Backends {
		if b != BuiltinBackend {
			out = append(out, b)
		}
	}
	return out
}

// Agents configures the watchdogs of every backend and the built-in one.
type Agents struct {
	// StartupTimeout and IdleTimeout: an agent that says nothing within
	// StartupTimeout of its start, or nothing for IdleTimeout after that,
	// is stopped and its turn fails (resumable). 0 disables either.
	StartupTimeout time.Duration
	IdleTimeout    time.Duration

	// OpenAIBaseURL, OpenAIModel, OpenAIMaxSteps and OpenAIShellTimeout
	// configure the built-in backend; its key is the openai provider's
	// credential (SORTIE_MC_OPENAI_API_KEY or one stored through the API).
	OpenAIBaseURL      string
	OpenAIModel        string
	OpenAIMaxSteps     int
	OpenAIShellTimeout time.Duration
}

// bindAgents binds the watchdog and built-in backend settings; the returned
// function checks them after Parse.
func (c *Config) bindAgents(b *config.Binder) func(p *config.Problems) {
	a := &c.Agents
	b.Duration(&a.StartupTimeout, "startup-timeout", "SORTIE_MC_STARTUP_TIMEOUT", 2*time.Minute,
		"stop an agent that prints nothing within this time of its start (0: never)")
	b.Duration(&a.IdleTimeout, "idle-timeout", "SORTIE_MC_IDLE_TIMEOUT", 10*time.Minute,
		"stop an agent that prints nothing for this long (0: never)")
	b.String(&a.OpenAIBaseURL, "openai-base-url", "SORTIE_MC_OPENAI_BASE_URL", "https://api.openai.com/v1",
		"OpenAI-compatible chat-completions endpoint of the built-in openai backend (e.g. http://localhost:8000/v1 for a local model server)")
	b.String(&a.OpenAIModel, "openai-model", "SORTIE_MC_OPENAI_MODEL", "gpt-5",
		"model of the built-in openai backend when a mission sets no model_override")
	b.Int(&a.OpenAIMaxSteps, "openai-max-steps", "SORTIE_MC_OPENAI_MAX_STEPS", 50,
		"model calls per turn of the built-in backend before the turn stops")
	b.Duration(&a.OpenAIShellTimeout, "openai-shell-timeout", "SORTIE_MC_OPENAI_SHELL_TIMEOUT", 2*time.Minute,
		"time limit of one shell tool call of the built-in backend (at most 10m)")
	return func(p *config.Problems) {
		p.Check(a.StartupTimeout >= 0, "SORTIE_MC_STARTUP_TIMEOUT must not be negative")
		p.Check(a.IdleTimeout >= 0, "SORTIE_MC_IDLE_TIMEOUT must not be negative")
		p.Check(a.OpenAIBaseURL != "", "SORTIE_MC_OPENAI_BASE_URL must not be empty")
		p.Check(a.OpenAIModel != "", "SORTIE_MC_OPENAI_MODEL must not be empty")
		p.Check(a.OpenAIMaxSteps >= 1, "SORTIE_MC_OPENAI_MAX_STEPS must be at least 1")
		p.Check(a.OpenAIShellTimeout >= time.Second && a.OpenAIShellTimeout <= 10*time.Minute,
			"SORTIE_MC_OPENAI_SHELL_TIMEOUT must be between 1s and 10m")
	}
}
