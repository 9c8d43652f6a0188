// Package control keeps the state of users' control sessions in Redis: the
// per-mission message queues, the active run of each mission, and the run
// leases that decide which replica drives a run.
//
// Every decision that must not race between replicas (start a queued
// message only if the mission is idle and the user is under the limit;
// finish a run only if this replica still holds its lease) is one Lua
// script.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Message is a user message waiting in (or taken from) a mission's queue.
type Message struct {
	ID        string  `json:"id"`
	Content   string  `json:"content"`
	Agent     *string `json:"agent"`
	MissionID string  `json:"mission_id"`
	// Queued is true when the message waited behind a running turn (its
	// user_message was sent with queued:true and is re-sent on start).
	Queued bool `json:"queued,omitempty"`
}

// Run is the active turn of a mission.
type Run struct {
	MissionID   string
	UserID      string
	TurnID      string
	AssistantID string
	Message     Message
	// Emitted counts the events of this turn already stored; a driver that
	// takes the run over skips exactly these.
	Emitted int64
	// Offset is the output offset consumed when the last event was stored.
	Offset    int64
	Cancel    bool
	Started   bool
	StartedAt time.Time
	// StopCode and StopMessage say why the runner stopped the turn (a
	// watchdog: startup_timeout, idle_timeout); empty for a user's cancel.
	StopCode, StopMessage string
}

// Store holds queues, runs and leases.
type Store struct {
	rdb        *redis.Client
	onTakeover func(mission string)
	// perMission and bytesPerUser bound the queues (LimitQueues); 0 is
	// no bound.
	perMission   int
	bytesPerUser int64
}

// LimitQueues bounds how many messages may wait in one mission's queue and
// how many bytes (of the stored messages) in all of one user's queues; call
// it before the store is used. Enqueue refuses a message past either with
// a *QueueFullError and stores nothing.
func (s *Store) LimitQueues(perMission int, bytesPerUser int64) {
	s.perMission, s.bytesPerUser = perMission, bytesPerUser
}

// QueueFullError is a message refused because a queue is full.
type QueueFullError struct {
	// PerMission is true when the mission's queue holds the most
	// messages it may; false when the user's queues hold the most bytes.
	PerMission bool
	Limit      int64
}

func (e *QueueFullError) Error() string {
	if e.PerMission {
		return fmt.Sprintf("the mission's queue is full: %d messages are waiting already", e.Limit)
	}
	return fmt.Sprintf("your queues are full: waiting messages take their limit of %d bytes", e.Limit)
}

// OnTakeover installs fn, called each time Acquire takes a run's lease
// (metrics); call it before the store is used.
func (s *Store) OnTakeover(fn func(mission string)) { s.onTakeover = fn }

// NewStore returns a Store.
func NewStore(rdb *redis.Client) *Store { return &Store{rdb: rdb} }

func queueKey(m string) string   { return "mc:m:{" + m + "}:queue" }
func runKey(m string) string     { return "mc:m:{" + m + "}:run" }
func leaseKey(m string) string   { return "mc:m:{" + m + "}:lease" }
func runningKey(u string) string { return "mc:u:{" + u + "}:running" }
func queuedKey(u string) string  { return "mc:u:{" + u + "}:queued" }

// queuedBytesKey counts the bytes of the user's waiting messages. Every
// script that takes a message out of a queue lowers it, and it is dropped
// once none waits, so any drift heals.
func queuedBytesKey(u string) string { return "mc:u:{" + u + "}:queued-bytes" }

const (
	runsKey = "mc:runs"
	// waitingKey lists the users with waiting messages, so that any
	// replica can start them if the one that should have did not (it died
	// between finishing a turn and starting the next).
	waitingKey = "mc:waiting-users"
)

// RunKey and LeaseKey name a mission's run record and lease, for fenced
// event appends.
func RunKey(m string) string   { return runKey(m) }
func LeaseKey(m string) string { return leaseKey(m) }

var enqueueScript = redis.NewScript(`
local max = tonumber(ARGV[5])
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return -1 end
local busy = redis.call('EXISTS', KEYS[3]) == 1
local full = redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[2])
local queued = busy or full or redis.call('LLEN', KEYS[1]) > 0
local msg = cjson.decode(ARGV[1])
if queued then msg['queued'] = true end
local enc = cjson.encode(msg)
local maxBytes = tonumber(ARGV[6])
local used = tonumber(redis.call('GET', KEYS[6]) or '0')
if maxBytes > 0 and used + string.len(enc) > maxBytes then return -2 end
redis.call('RPUSH', KEYS[1], enc)
redis.call('INCRBY', KEYS[6], string.len(enc))
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[4])
if queued then return 1 end
return 0
`)

// Enqueue appends msg to its mission's queue. It reports whether the
// message has to wait (the mission runs a turn, the user is at the limit,
// or older messages wait before it). A full queue (LimitQueues) is a
// *QueueFullError, and nothing is stored.
func (s *Store) Enqueue(ctx context.Context, user string, msg Message, limit int) (bool, error) {
	b, err := json.Marshal(msg)
	if err != nil {
		return false, fmt.Errorf("enqueue: %w", err)
	}
	n, err := enqueueScript.Run(ctx, s.rdb, []string{queueKey(msg.MissionID), queuedKey(user), runKey(msg.MissionID), runningKey(user), waitingKey, queuedBytesKey(user)},
		b, limit, msg.MissionID, user, s.perMission, s.bytesPerUser).Int()
	if err != nil {
		return false, fmt.Errorf("enqueue: %w", err)
	}
	switch n {
	case -1:
		return false, &QueueFullError{PerMission: true, Limit: int64(s.perMission)}
	case -2:
		return false, &QueueFullError{Limit: s.bytesPerUser}
	}
	return n == 1, nil
}

// unqueued is the Lua that lowers the user's queued bytes (KEYS[n]) by
// ARGV-given bytes, dropping the counter when nothing waits (KEYS[m] is
// the user's set of missions with waiting messages).
const unqueued = `
local function unqueued(bytesKey, queuedSet, n)
  if n > 0 and redis.call('DECRBY', bytesKey, n) <= 0 then redis.call('DEL', bytesKey) end
  if redis.call('SCARD', queuedSet) == 0 then redis.call('DEL', bytesKey) end
end
`

var startScript = redis.NewScript(unqueued + `
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[1]) then return false end
local msg = redis.call('LPOP', KEYS[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
if not msg then return false end
unqueued(KEYS[7], KEYS[2], string.len(msg))
redis.call('HSET', KEYS[3], 'user', ARGV[3], 'turn', ARGV[4], 'assistant', ARGV[5], 'msg', msg,
  'emitted', 0, 'offset', 0, 'started_at', ARGV[7])
redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[8])
redis.call('SADD', KEYS[6], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
return msg
`)

// TryStart takes the next queued message of a mission and creates its run,
// leased to owner, when the mission is idle and the user is under limit.
// It returns nil when nothing was started.
func (s *Store) TryStart(ctx context.Context, user, mission, owner string, limit int, ttl time.Duration, turnID, assistantID string) (*Run, error) {
	now := time.Now().UTC()
	raw, err := startScript.Run(ctx, s.rdb,
		[]string{queueKey(mission), queuedKey(user), runKey(mission), runningKey(user), leaseKey(mission), runsKey, queuedBytesKey(user)},
		limit, mission, user, turnID, assistantID, owner, now.Format(time.RFC3339Nano), ttl.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("start turn: %w", err)
	}
	var msg Message
	if err := json.Unmarshal([]byte(raw), &msg); err != nil {
		return nil, fmt.Errorf("start turn: %w", err)
	}
	return &Run{MissionID: mission, UserID: user, TurnID: turnID, AssistantID: assistantID, Message: msg, StartedAt: now}, nil
}

// Run returns the mission's active run, nil when it has none.
func (s *Store) Run(ctx context.Context, mission string) (*Run, error) {
	h, err := s.rdb.HGetAll(ctx, runKey(mission)).Result()
	if err != nil {
		return nil, fmt.Errorf("get run: %w", err)
	}
	if len(h) == 0 || h["turn"] == "" {
		return nil, nil
	}
	r := &Run{MissionID: mission, UserID: h["user"], TurnID: h["turn"], AssistantID: h["assistant"],
		Cancel: h["cancel"] == "1", Started: h["started"] == "1", StopCode: h["stop_code"], StopMessage: h["stop_msg"]}
	r.Emitted, _ = strconv.ParseInt(h["emitted"], 10, 64)
	r.Offset, _ = strconv.ParseInt(h["offset"], 10, 64)
	r.StartedAt, _ = time.Parse(time.RFC3339Nano, h["started_at"])
	if err := json.Unmarshal([]byte(h["msg"]), &r.Message); err != nil {
		return nil, fmt.Errorf("decode run of %s: %w", mission, err)
	}
	return r, nil
}

// MarkStarted records that the run's process was started.
func (s *Store) MarkStarted(ctx context.Context, mission string) error {
	return s.rdb.HSet(ctx, runKey(mission), "started", "1").Err()
}

// RequestCancel flags the mission's run as cancelled; false when it has no
// run. The driving replica notices at its next lease renewal.
func (s *Store) RequestCancel(ctx context.Context, mission string) (bool, error) {
	n, err := cancelScript.Run(ctx, s.rdb, []string{runKey(mission)}).Int()
	if err != nil {
		return false, fmt.Errorf("cancel: %w", err)
	}
	return n == 1, nil
}

var cancelScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 1
`)

var stopScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'cancel', '1', 'stop_code', ARGV[1], 'stop_msg', ARGV[2])
return 1
`)

// Stop flags the run as stopped by the runner (a watchdog) with a reason:
// the same escalation as a cancel, but the turn fails with the reason. It
// does nothing (false) when the run is gone or already cancelled. The flag
// lives in the run record, so a replica that takes the run over ends it
// the same way.
func (s *Store) Stop(ctx context.Context, mission, code, msg string) (bool, error) {
	n, err := stopScript.Run(ctx, s.rdb, []string{runKey(mission)}, code, msg).Int()
	if err != nil {
		return false, fmt.Errorf("stop run: %w", err)
	}
	return n == 1, nil
}

var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] or not cur then
  if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// Acquire takes (or keeps) the lease of a mission's run for owner; false
// when another replica holds it or the run is gone.
func (s *Store) Acquire(ctx context.Context, mission, owner string, ttl time.Duration) (bool, error) {
	n, err := acquireScript.Run(ctx, s.rdb, []string{leaseKey(mission), runKey(mission)}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("acquire lease: %w", err)
	}
	if n == 1 && s.onTakeover != nil {
		s.onTakeover(mission)
	}
	return n == 1, nil
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[2], 'cancel') == '1' then return 1 end
return 0
`)

// ErrLeaseLost is returned by Renew when owner no longer holds the lease.
var ErrLeaseLost = errors.New("run lease lost")

// Renew extends owner's lease and reports whether a cancel was requested.
func (s *Store) Renew(ctx context.Context, mission, owner string, ttl time.Duration) (cancel bool, err error) {
	n, err := renewScript.Run(ctx, s.rdb, []string{leaseKey(mission), runKey(mission)}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew lease: %w", err)
	}
	if n < 0 {
		return false, ErrLeaseLost
	}
	return n == 1, nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`)

// Release gives up owner's lease so that another replica can take the run
// at once (graceful shutdown).
func (s *Store) Release(ctx context.Context, mission, owner string) error {
	return releaseScript.Run(ctx, s.rdb, []string{leaseKey(mission)}, owner).Err()
}

var finishScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[2])
return 1
`)

// Finish removes a finished run if owner still holds its lease.
func (s *Store) Finish(ctx context.Context, user, mission, owner string) error {
	n, err := finishScript.Run(ctx, s.rdb, []string{leaseKey(mission), runKey(mission), runsKey, runningKey(user)}, owner, mission).Int()
	if err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Runs lists the missions with an active run, on any replica.
func (s *Store) Runs(ctx context.Context) ([]string, error) {
	return s.rdb.SMembers(ctx, runsKey).Result()
}

// Running lists the user's missions that run a turn.
func (s *Store) Running(ctx context.Context, user string) ([]string, error) {
	return s.rdb.SMembers(ctx, runningKey(user)).Result()
}

// QueuedMissions lists the user's missions with waiting messages.
func (s *Store) QueuedMissions(ctx context.Context, user string) ([]string, error) {
	return s.rdb.SMembers(ctx, queuedKey(user)).Result()
}

// WaitingUsers lists the users who may have waiting messages.
func (s *Store) WaitingUsers(ctx context.Context) ([]string, error) {
	return s.rdb.SMembers(ctx, waitingKey).Result()
}

var forgetScript = redis.NewScript(`
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
`)

// ForgetIfIdle drops the user from WaitingUsers when nothing waits.
func (s *Store) ForgetIfIdle(ctx context.Context, user string) error {
	return forgetScript.Run(ctx, s.rdb, []string{queuedKey(user), waitingKey}, user).Err()
}

// Queue lists the user's waiting messages, mission by mission.
func (s *Store) Queue(ctx context.Context, user string) ([]Message, error) {
	ms, err := s.QueuedMissions(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	out := []Message{}
	for _, m := range ms {
		raw, err := s.rdb.LRange(ctx, queueKey(m), 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("list queue: %w", err)
		}
		for _, r := range raw {
			var msg Message
			if json.Unmarshal([]byte(r), &msg) == nil {
				out = append(out, msg)
			}
		}
	}
	return out, nil
}

var removeScript = redis.NewScript(unqueued + `
local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
if n == 1 then unqueued(KEYS[3], KEYS[2], string.len(ARGV[1])) end
return n
`)

// Remove drops one waiting message; false when it is not queued.
func (s *Store) Remove(ctx context.Context, user, id string) (bool, error) {
	ms, err := s.QueuedMissions(ctx, user)
	if err != nil {
		return false, fmt.Errorf("remove from queue: %w", err)
	}
	for _, m := range ms {
		raw, err := s.rdb.LRange(ctx, queueKey(m), 0, -1).Result()
		if err != nil {
			return false, fmt.Errorf("remove from queue: %w", err)
		}
		for _, r := range raw {
			var msg Message
			if json.Unmarshal([]byte(r), &msg) == nil && msg.ID == id {
				n, err := removeScript.Run(ctx, s.rdb, []string{queueKey(m), queuedKey(user), queuedBytesKey(user)}, r, m).Int()
				if err != nil {
					return false, fmt.Errorf("remove from queue: %w", err)
				}
				return n == 1, nil
			}
		}
	}
	return false, nil
}

var dropQueueScript = redis.NewScript(unqueued + `
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local bytes = 0
for _, m in ipairs(items) do bytes = bytes + string.len(m) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
unqueued(KEYS[3], KEYS[2], bytes)
return #items
`)

// dropQueue empties a mission's queue and returns how many messages it
// held.
func (s *Store) dropQueue(ctx context.Context, user, mission string) (int64, error) {
	return dropQueueScript.Run(ctx, s.rdb, []string{queueKey(mission), queuedKey(user), queuedBytesKey(user)}, mission).Int64()
}

// Clear drops all of the user's waiting messages and returns how many.
func (s *Store) Clear(ctx context.Context, user string) (int64, error) {
	ms, err := s.QueuedMissions(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("clear queue: %w", err)
	}
	var n int64
	for _, m := range ms {
		l, err := s.dropQueue(ctx, user, m)
		if err != nil {
			return n, fmt.Errorf("clear queue: %w", err)
		}
		n += l
	}
	return n, nil
}

// DeleteMission drops a mission's queue.
func (s *Store) DeleteMission(ctx context.Context, user, mission string) error {
	if _, err := s.dropQueue(ctx, user, mission); err != nil {
		return fmt.Errorf("drop queue: %w", err)
	}
	return nil
}

// QueueDepth counts the messages waiting in every user's queues.
func (s *Store) QueueDepth(ctx context.Context) (int64, error) {
	users, err := s.WaitingUsers(ctx)
	if err != nil {
		return 0, fmt.Errorf("queue depth: %w", err)
	}
	if len(users) == 0 {
		return 0, nil
	}
	sets := make([]*redis.StringSliceCmd, len(users))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range users {
			sets[i] = p.SMembers(ctx, queuedKey(u))
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("queue depth: %w", err)
	}
	var lens []*redis.IntCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, set := range sets {
			for _, m := range set.Val() {
				lens = append(lens, p.LLen(ctx, queueKey(m)))
			}
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("queue depth: %w", err)
	}
	var n int64
	for _, l := range lens {
		n += l.Val()
	}
	return n, nil
}

// ActiveRuns counts the runs in progress on every replica.
func (s *Store) ActiveRuns(ctx context.Context) (int64, error) {
	n, err := s.rdb.SCard(ctx, runsKey).Result()
	if err != nil {
		return 0, fmt.Errorf("active runs: %w", err)
	}
	return n, nil
}
