// Package missions stores missions (a user's agent tasks) in Redis: the
// mission objects, each user's newest-first index, and the control session
// (which mission the user has loaded).
package missions

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/kit/redisconn"
)

// Status is a mission's state.
type Status string

// The statuses: the seed's five and the reference's two extras.
const (
	Pending     Status = "pending"
	Active      Status = "active"
	Completed   Status = "completed"
	Failed      Status = "failed"
	Interrupted Status = "interrupted"
	Blocked     Status = "blocked"
	NotFeasible Status = "not_feasible"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case Pending, Active, Completed, Failed, Interrupted, Blocked, NotFeasible:
		return true
	}
	return false
}

// Resumable reports whether a mission in s may be resumed.
func (s Status) Resumable() bool { return s == Interrupted || s == Blocked || s == Failed }

// ErrNotFound is returned for a mission that does not exist or belongs to
// another user: the two are indistinguishable to callers on purpose.
var ErrNotFound = errors.New("mission not found")

// Message is one entry of a mission's history.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Mission is the API object (seed "Mission Object" plus the reference's
// fields). UserID is the owner and never leaves the service.
type Mission struct {
	ID             string    `json:"id"`
	Status         Status    `json:"status"`
	Title          *string   `json:"title"`
	WorkspaceID    string    `json:"workspace_id"`
	WorkspaceName  string    `json:"workspace_name,omitempty"`
	Agent          *string   `json:"agent"`
	ModelOverride  *string   `json:"model_override"`
	ModelEffort    *string   `json:"model_effort"`
	Backend        string    `json:"backend"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	InterruptedAt  *string   `json:"interrupted_at,omitempty"`
	Resumable      bool      `json:"resumable"`
	SessionID      string    `json:"session_id,omitempty"`
	TerminalReason string    `json:"terminal_reason,omitempty"`
	History        []Message `json:"history"`

	UserID string `json:"-"`
	// SessionStarted is true once a turn ran, so the next one resumes the
	// CLI session instead of creating it.
	SessionStarted bool `json:"-"`
}

// record is the stored form: the API object plus the private fields.
type record struct {
	Mission
	UserID         string `json:"user_id"`
	SessionStarted bool   `json:"session_started,omitempty"`
}

// Store keeps missions.
type Store struct {
	rdb *redis.Client
	now func() time.Time
}

// NewStore returns a Store.
func NewStore(rdb *redis.Client) *Store { return &Store{rdb: rdb, now: time.Now} }

func missionKey(id string) string   { return "mc:mission:{" + id + "}" }
func indexKey(user string) string   { return "mc:u:{" + user + "}:missions" }
func sessionKey(user string) string { return "mc:u:{" + user + "}:session" }

// NewID returns a random UUID (version 4).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// CreateCurrent stores a new pending mission for m.UserID and loads it
// into the user's control session, in one transaction: when Redis refuses
// it (full) there is neither a mission nor a session pointing at one.
func (s *Store) CreateCurrent(ctx context.Context, m *Mission) error {
	now := s.now().UTC()
	m.ID = NewID()
	m.Status = Pending
	m.CreatedAt, m.UpdatedAt = now, now
	b, err := json.Marshal(record{Mission: *m, UserID: m.UserID})
	if err != nil {
		return fmt.Errorf("create mission: %w", err)
	}
	cmds, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, missionKey(m.ID), b, 0)
		p.ZAdd(ctx, indexKey(m.UserID), redis.Z{Score: float64(now.UnixMicro()), Member: m.ID})
		p.HSet(ctx, sessionKey(m.UserID), "current", m.ID)
		return nil
	})
	if err := redisconn.TxErr(cmds, err); err != nil {
		return fmt.Errorf("create mission: %w", err)
	}
	return nil
}

// Get returns the user's mission; ErrNotFound for a missing mission or
// another user's.
func (s *Store) Get(ctx context.Context, user, id string) (*Mission, error) {
	m, err := s.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.UserID != user {
		return nil, ErrNotFound
	}
	return m, nil
}

// Load returns a mission whoever owns it (for the runner).
func (s *Store) Load(ctx context.Context, id string) (*Mission, error) {
	raw, err := s.rdb.Get(ctx, missionKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get mission: %w", err)
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decode mission %s: %w", id, err)
	}
	m := r.Mission
	m.UserID, m.SessionStarted = r.UserID, r.SessionStarted
	m.Resumable = m.Status.Resumable()
	return &m, nil
}

// Update applies fn to the stored mission with optimistic locking and
// bumps updated_at.
func (s *Store) Update(ctx context.Context, id string, fn func(*Mission) error) (*Mission, error) {
	var out *Mission
	txf := func(tx *redis.Tx) error {
		raw, err := tx.Get(ctx, missionKey(id)).Bytes()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		m := r.Mission
		m.UserID, m.SessionStarted = r.UserID, r.SessionStarted
		if err := fn(&m); err != nil {
			return err
		}
		m.UpdatedAt = s.now().UTC()
		m.Resumable = m.Status.Resumable()
		m.History = nil
		b, err := json.Marshal(record{Mission: m, UserID: m.UserID, SessionStarted: m.SessionStarted})
		if err != nil {
			return err
		}
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, missionKey(id), b, 0)
			return nil
		})
		out = &m
		return redisconn.TxErr(cmds, err)
	}
	for range 50 {
		err := s.rdb.Watch(ctx, txf, missionKey(id))
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, err
			}
			return nil, fmt.Errorf("update mission %s: %w", id, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("update mission %s: too much contention", id)
}

// SetStatus changes a mission's status, recording when it was
// interrupted; it reports the previous status.
func (s *Store) SetStatus(ctx context.Context, id string, st Status, reason string) (prev Status, err error) {
	_, err = s.Update(ctx, id, func(m *Mission) error {
		prev = m.Status
		m.Status = st
		if reason != "" || st == Active {
			m.TerminalReason = reason
		}
		switch st {
		case Interrupted, Blocked:
			t := s.now().UTC().Format(time.RFC3339)
			m.InterruptedAt = &t
		case Active:
			m.InterruptedAt = nil
		}
		return nil
	})
	return prev, err
}

// List returns the user's missions, newest first.
func (s *Store) List(ctx context.Context, user string, limit, offset int) ([]*Mission, int64, error) {
	total, err := s.rdb.ZCard(ctx, indexKey(user)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("list missions: %w", err)
	}
	ids, err := s.rdb.ZRevRange(ctx, indexKey(user), int64(offset), int64(offset+limit-1)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("list missions: %w", err)
	}
	out := make([]*Mission, 0, len(ids))
	for _, id := range ids {
		m, err := s.Load(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		m.History = []Message{}
		out = append(out, m)
	}
	return out, total, nil
}

var deleteScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[3], 'current') == ARGV[1] then redis.call('HDEL', KEYS[3], 'current') end
return 0
`)

// Delete removes a mission and, if it was the user's current one, the
// session's pointer to it, atomically. It is a script, not MULTI, so that
// it works while Redis is full (Redis refuses every command queued in a
// transaction then), which is when deleting is how to make room.
func (s *Store) Delete(ctx context.Context, user, id string) error {
	if err := deleteScript.Run(ctx, s.rdb, []string{missionKey(id), indexKey(user), sessionKey(user)}, id).Err(); err != nil {
		return fmt.Errorf("delete mission: %w", err)
	}
	return nil
}

// SetCurrent loads a mission into the user's control session.
func (s *Store) SetCurrent(ctx context.Context, user, id string) error {
	if err := s.rdb.HSet(ctx, sessionKey(user), "current", id).Err(); err != nil {
		return fmt.Errorf("set current mission: %w", err)
	}
	return nil
}

// Current returns the user's current mission id, "" when none.
func (s *Store) Current(ctx context.Context, user string) (string, error) {
	id, err := s.rdb.HGet(ctx, sessionKey(user), "current").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("current mission: %w", err)
	}
	return id, nil
}

// TitleFrom makes a title from a first message: its first non-empty line,
// at most 100 characters.
func TitleFrom(content string) string {
	for _, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if r := []rune(line); len(r) > 100 {
			return string(r[:100]) + "..."
		}
		return line
	}
	return ""
}
