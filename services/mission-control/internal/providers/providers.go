// Package providers knows the AI providers the agent CLIs use and where
// their credentials come from: the service's configuration, or an API key
// a user stored through the API.
package providers

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/redis/go-redis/v9"
)

// Provider is one entry of GET /api/providers.
type Provider struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Billing     string   `json:"billing"`
	Description string   `json:"description"`
	EnvVar      string   `json:"env_var"`
	Backends    []string `json:"backends"`
	Configured  bool     `json:"configured"`
	// Source is where the credential comes from: config, api, or none.
	Source string  `json:"source"`
	Models []Model `json:"models"`
}

// Model is a model a provider offers.
type Model struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type known struct {
	id, name, env string
	backends      []string
	models        []Model
}

var catalogue = []known{
	{"anthropic", "Anthropic", "ANTHROPIC_API_KEY", []string{"claudecode", "opencode"},
		[]Model{{"claude-sonnet-4-5", "Claude Sonnet 4.5"}, {"claude-opus-4-1", "Claude Opus 4.1"}}},
	{"openai", "OpenAI", "OPENAI_API_KEY", []string{"codex", "opencode"},
		[]Model{{"gpt-5-codex", "GPT-5 Codex"}, {"gpt-5", "GPT-5"}}},
	{"amp", "Amp", "AMP_API_KEY", []string{"amp"}, []Model{}},
}

// ErrUnknown is returned for a provider id that is not in the catalogue.
var ErrUnknown = errors.New("unknown provider")

// Store holds API keys set through the API (plain text in Redis for now:
// encryption at rest is not done) over the configured ones.
type Store struct {
	rdb        *redis.Client
	configured map[string]string
}

// NewStore returns a Store over the configured credentials (env var →
// value).
func NewStore(rdb *redis.Client, configured map[string]string) *Store {
	return &Store{rdb: rdb, configured: configured}
}

const key = "mc:providers:keys"

func find(id string) (known, bool) {
	for _, k := range catalogue {
		if k.id == id {
			return k, true
		}
	}
	return known{}, false
}

// Secrets returns every credential by env var, stored keys winning.
func (s *Store) Secrets(ctx context.Context) map[string]string {
	out := maps.Clone(s.configured)
	if out == nil {
		out = map[string]string{}
	}
	stored, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return out
	}
	for id, v := range stored {
		if k, ok := find(id); ok && v != "" {
			out[k.env] = v
		}
	}
	return out
}

// List returns the catalogue with what is configured; all includes the
// providers without credentials.
func (s *Store) List(ctx context.Context, all bool) ([]Provider, error) {
	stored, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	out := []Provider{}
	for _, k := range catalogue {
		p := Provider{ID: k.id, Name: k.name, Billing: "pay-per-token", Description: "API key in " + k.env,
			EnvVar: k.env, Backends: k.backends, Source: "none", Models: k.models}
		switch {
		case stored[k.id] != "":
			p.Configured, p.Source = true, "api"
		case s.configured[k.env] != "":
			p.Configured, p.Source = true, "config"
		}
		if p.Configured || all {
			out = append(out, p)
		}
	}
	return out, nil
}

// SetKey stores an API key for provider id.
func (s *Store) SetKey(ctx context.Context, id, apiKey string) error {
	if _, ok := find(id); !ok {
		return ErrUnknown
	}
	return s.rdb.HSet(ctx, key, id, apiKey).Err()
}

// DeleteKey removes a stored key; configured keys stay.
func (s *Store) DeleteKey(ctx context.Context, id string) error {
	if _, ok := find(id); !ok {
		return ErrUnknown
	}
	return s.rdb.HDel(ctx, key, id).Err()
}
