// Package events stores mission events in Redis and fans them out to every
// replica.
//
// Each event is written, in one Lua script, to three places: the mission's
// log (a list whose index is the event's sequence - 1, for replay), the
// user's stream (a Redis stream whose entry id is the SSE cursor, for
// Last-Event-ID resume), and a pub/sub channel that every replica listens
// on (live fan-out). Because the script is atomic an event is always stored
// before anyone can see it, and sequences are strictly increasing with no
// gaps.
//
// Streaming text is stored once per turn: the first text_delta of a turn
// takes a sequence and a placeholder in the log, and every delta of the
// turn is APPENDed to one string. The user stream keeps only each delta and
// the text length after it, so a resumed stream can rebuild the accumulated
// content without storing it n times.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/mission-control/internal/event"
)

// Channel is the pub/sub channel every replica subscribes to.
const Channel = "mc:events"

// ErrLeaseLost is returned by Append when a fenced append finds that the
// run's lease belongs to someone else: another replica drives the run now.
var ErrLeaseLost = errors.New("run lease lost")

// Store reads and writes mission events.
type Store struct {
	rdb      *redis.Client
	limit    int
	maxLen   int64
	now      func() time.Time
	observer Observer
}

// Observer is told about every event once it is stored (metrics). It runs
// on the appender's goroutine, so it must be quick.
type Observer interface {
	Appended(ctx context.Context, e event.Event, o AppendOptions)
}

// SetObserver installs o; call it before the store is used.
func (s *Store) SetObserver(o Observer) { s.observer = o }

// NewStore returns a Store. limit is the longest text kept in one event;
// maxLen bounds each user's stream (older entries cannot be resumed from).
func NewStore(rdb *redis.Client, limit int, maxLen int64) *Store {
	return &Store{rdb: rdb, limit: limit, maxLen: maxLen, now: time.Now}
}

func seqKey(m string) string     { return "mc:m:{" + m + "}:seq" }
func logKey(m string) string     { return "mc:m:{" + m + "}:events" }
func textRowKey(m string) string { return "mc:m:{" + m + "}:textrow" }
func textPrefix(m string) string { return "mc:m:{" + m + "}:text:" }
func streamKey(u string) string  { return "mc:u:{" + u + "}:stream" }

// Fence ties an append to a run: the append fails with ErrLeaseLost unless
// LeaseKey holds Owner, and it increments the run's emitted counter and
// records its output offset in the same atomic step. That is what makes a
// takeover exactly-once: the new driver skips exactly the events counted.
type Fence struct {
	LeaseKey string
	Owner    string
	RunKey   string
	Offset   int64
}

// AppendOptions say whose event it is and how it is fenced.
type AppendOptions struct {
	UserID string
	// TurnID groups a turn's text_delta events into one stored row.
	TurnID string
	Fence  *Fence
}

var appendScript = redis.NewScript(`
local function withseq(j, seq)
  return '{"sequence":' .. seq .. ',' .. string.sub(j, 2)
end
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[6]) ~= ARGV[1] then
    return redis.error_reply('LEASELOST run lease lost')
  end
end
local seq
local textlen = 0
if ARGV[2] == 'text_delta' then
  local row = redis.call('GET', KEYS[4])
  if row then
    local t, s = string.match(row, '^(.*) (%d+)$')
    if t == ARGV[6] then seq = tonumber(s) end
  end
  if not seq then
    seq = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[4], ARGV[6] .. ' ' .. seq)
    redis.call('RPUSH', KEYS[2], withseq(ARGV[4], seq))
  end
  textlen = redis.call('APPEND', ARGV[11] .. seq, ARGV[5])
else
  seq = redis.call('INCR', KEYS[1])
  redis.call('RPUSH', KEYS[2], withseq(ARGV[3], seq))
end
local sj = ARGV[4]
if sj == '' then sj = ARGV[3] end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', 'm', ARGV[8], 'e', withseq(sj, seq), 'o', textlen)
if ARGV[1] ~= '' then
  redis.call('HINCRBY', KEYS[5], 'emitted', 1)
  redis.call('HSET', KEYS[5], 'offset', ARGV[10])
end
redis.call('PUBLISH', ARGV[12], id .. '\n' .. ARGV[7] .. '\n' .. withseq(ARGV[3], seq))
return {seq, id}
`)

// Append stores e for its mission (e.MissionID) and publishes it. It sets
// Time, truncates large texts and returns the stored event with its
// Sequence and its stream cursor.
func (s *Store) Append(ctx context.Context, e event.Event, o AppendOptions) (event.Event, string, error) {
	if e.MissionID == "" || o.UserID == "" {
		return e, "", errors.New("append event: mission and user are required")
	}
	if err := e.Validate(); err != nil {
		return e, "", fmt.Errorf("append event: %w", err)
	}
	e.Sequence = 0
	e.Time = s.now().UTC()
	if e.Kind != event.KindTextDelta {
		e = e.Truncated(s.limit)
	}
	full, err := json.Marshal(e)
	if err != nil {
		return e, "", fmt.Errorf("append event: %w", err)
	}
	var stored []byte
	if e.Kind == event.KindTextDelta {
		// The log and the stream keep only the delta; the content lives
		// once, in the turn's text string.
		strip := e
		strip.Content = ""
		if stored, err = json.Marshal(strip); err != nil {
			return e, "", fmt.Errorf("append event: %w", err)
		}
	}
	f := o.Fence
	if f == nil {
		f = &Fence{}
	}
	keys := []string{seqKey(e.MissionID), logKey(e.MissionID), streamKey(o.UserID), textRowKey(e.MissionID), orDummy(f.RunKey), orDummy(f.LeaseKey)}
	args := []any{f.Owner, string(e.Kind), full, stored, e.Delta, o.TurnID, o.UserID, e.MissionID,
		s.maxLen, f.Offset, textPrefix(e.MissionID), Channel}
	res, err := appendScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		if strings.Contains(err.Error(), "LEASELOST") {
			return e, "", ErrLeaseLost
		}
		return e, "", fmt.Errorf("append event: %w", err)
	}
	e.Sequence = res[0].(int64)
	if s.observer != nil {
		s.observer.Appended(ctx, e, o)
	}
	return e, res[1].(string), nil
}

func orDummy(k string) string {
	if k == "" {
		return "mc:unused"
	}
	return k
}

// Publish sends an event that is not stored (the control status) to the
// user's live streams.
func (s *Store) Publish(ctx context.Context, userID string, e event.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	if err := s.rdb.Publish(ctx, Channel, "\n"+userID+"\n"+string(b)).Err(); err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	return nil
}

// Count returns the number of stored events of a mission.
func (s *Store) Count(ctx context.Context, missionID string) (int64, error) {
	n, err := s.rdb.LLen(ctx, logKey(missionID)).Result()
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// Replay returns a mission's stored events in sequence order, keeping only
// the given kinds (all when empty), skipping offset of them and returning
// at most limit.
func (s *Store) Replay(ctx context.Context, missionID string, kinds []event.Kind, limit, offset int) ([]event.Event, error) {
	out := []event.Event{}
	if limit <= 0 {
		return out, nil
	}
	want := map[event.Kind]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	const chunk = 1000
	start := int64(0)
	if len(want) == 0 {
		start = int64(offset)
		offset = 0
	}
	for {
		end := start + chunk - 1
		if len(want) == 0 {
			end = min(end, start+int64(limit)-1)
		}
		raw, err := s.rdb.LRange(ctx, logKey(missionID), start, end).Result()
		if err != nil {
			return nil, fmt.Errorf("replay events: %w", err)
		}
		for _, r := range raw {
			var e event.Event
			if err := json.Unmarshal([]byte(r), &e); err != nil {
				return nil, fmt.Errorf("replay events: %w", err)
			}
			if len(want) > 0 && !want[e.Kind] {
				continue
			}
			if offset > 0 {
				offset--
				continue
			}
			if e.Kind == event.KindTextDelta {
				if e.Content, err = s.text(ctx, missionID, e.Sequence, -1); err != nil {
					return nil, err
				}
				e.Delta = ""
			}
			out = append(out, e)
			if len(out) == limit {
				return out, nil
			}
		}
		if int64(len(raw)) < end-start+1 {
			return out, nil
		}
		start = end + 1
	}
}

// text returns a turn's text up to end bytes (all of it for -1).
func (s *Store) text(ctx context.Context, missionID string, seq int64, end int64) (string, error) {
	key := textPrefix(missionID) + strconv.FormatInt(seq, 10)
	var (
		t   string
		err error
	)
	if end < 0 {
		t, err = s.rdb.Get(ctx, key).Result()
	} else {
		t, err = s.rdb.GetRange(ctx, key, 0, end-1).Result()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("read turn text: %w", err)
	}
	return t, nil
}

// Entry is an event of a user's stream with its cursor.
type Entry struct {
	Cursor string
	UserID string
	Event  event.Event
	// Raw is the event's JSON as published, when known: SSE writers send
	// it as is instead of encoding the event once per client.
	Raw []byte
}

// Since returns up to count events of the user's stream after cursor
// (exclusive), oldest first. text_delta content is rebuilt as it was when
// the event was sent.
func (s *Store) Since(ctx context.Context, userID, cursor string, count int64) ([]Entry, error) {
	msgs, err := s.rdb.XRangeN(ctx, streamKey(userID), "("+cursor, "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("read stream: %w", err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["e"].(string)
		var e event.Event
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("read stream: %w", err)
		}
		if e.Kind == event.KindTextDelta {
			mission, _ := m.Values["m"].(string)
			o, _ := strconv.ParseInt(fmt.Sprint(m.Values["o"]), 10, 64)
			if e.Content, err = s.text(ctx, mission, e.Sequence, o); err != nil {
				return nil, err
			}
		}
		out = append(out, Entry{Cursor: m.ID, UserID: userID, Event: e})
	}
	return out, nil
}

// Oldest returns the cursor of the oldest event the user's stream still
// holds, "" when it is empty.
func (s *Store) Oldest(ctx context.Context, userID string) (string, error) {
	msgs, err := s.rdb.XRangeN(ctx, streamKey(userID), "-", "+", 1).Result()
	if err != nil {
		return "", fmt.Errorf("read stream: %w", err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}

// DeleteMission removes a mission's events (its entries in the user's
// stream age out with the stream).
func (s *Store) DeleteMission(ctx context.Context, missionID string) error {
	keys := []string{seqKey(missionID), logKey(missionID), textRowKey(missionID)}
	iter := s.rdb.Scan(ctx, 0, textPrefix(missionID)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("delete events: %w", err)
	}
	if err := s.rdb.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("delete events: %w", err)
	}
	return nil
}

// CompareCursors orders two stream ids ("ms-seq"): -1, 0 or 1.
func CompareCursors(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	switch {
	case am != bm:
		if am < bm {
			return -1
		}
		return 1
	case as != bs:
		if as < bs {
			return -1
		}
		return 1
	}
	return 0
}

func splitID(id string) (uint64, uint64) {
	ms, seq, _ := strings.Cut(id, "-")
	a, _ := strconv.ParseUint(ms, 10, 64)
	b, _ := strconv.ParseUint(seq, 10, 64)
	return a, b
}

// ValidCursor reports whether s looks like a stream id.
func ValidCursor(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}

// Latest returns the cursor of the newest event of the user's stream, "0-0"
// when it is empty: where a new client's stream starts.
func (s *Store) Latest(ctx context.Context, userID string) (string, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, streamKey(userID), "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("read stream: %w", err)
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}
