// Package clients checks the credentials of the platform's own services
// when they ask for service tokens.
package clients

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode"
)

// ErrInvalidClient is an unknown client or a wrong secret.
var ErrInvalidClient = errors.New("invalid client credentials")

// MinSecretLength keeps guessable secrets out; generated ones are longer.
const MinSecretLength = 24

// Store maps client ids to the SHA-256 of their secrets. Secrets are long
// and random, so a fast hash compared in constant time is enough.
type Store struct {
	digests map[string][32]byte
}

// Empty is a store with no clients: every request is refused.
func Empty() *Store { return &Store{digests: map[string][32]byte{}} }

// LoadFile reads a JSON object {"client-id": "secret", ...}.
func LoadFile(path string) (*Store, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read clients file: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("clients file %s: %w", path, err)
	}
	return s, nil
}

// MaxIDLength bounds a client id: ids are names like "mission-control",
// published in Redis and written in logs.
const MaxIDLength = 128

// Parse is LoadFile on the file's content.
func Parse(data []byte) (*Store, error) {
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object of id to secret: %w", err)
	}
	s := Empty()
	var problems []string
	for id, secret := range m {
		switch {
		case strings.TrimSpace(id) == "":
			problems = append(problems, "a client id is empty")
		case id != strings.TrimSpace(id) || len(id) > MaxIDLength || strings.ContainsFunc(id, unicode.IsControl):
			problems = append(problems, fmt.Sprintf("client id %q must be at most %d characters with no surrounding space or control characters", id, MaxIDLength))
		case len(secret) < MinSecretLength:
			problems = append(problems, fmt.Sprintf("client %q: secret must be at least %d characters", id, MinSecretLength))
		default:
			s.digests[id] = sha256.Sum256([]byte(secret))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return s, nil
}

// Authenticate checks a client's secret.
func (s *Store) Authenticate(id, secret string) error {
	want, ok := s.digests[id]
	got := sha256.Sum256([]byte(secret))
	if !ok {
		want = [32]byte{} // compare anyway: unknown and wrong cost the same
	}
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 || !ok {
		return ErrInvalidClient
	}
	return nil
}

// Has reports whether a client id is configured.
func (s *Store) Has(id string) bool {
	_, ok := s.digests[id]
	return ok
}

// IDs lists the configured client ids, sorted.
func (s *Store) IDs() []string {
	ids := make([]string, 0, len(s.digests))
	for id := range s.digests {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
