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
// content without storing it n times. Streamed reasoning (thinking events
// that carry a delta) is stored the same way, one row per thinking block
// (a done thinking event, which holds the block's whole text, ends it):
// storing every partial event with its accumulated text would cost the
// square of the block's length. Both strings stop growing at the store's
// text limit (the parsers cut the text with a marker before it).
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

func seqKey(m string) string      { return "mc:m:{" + m + "}:seq" }
func logKey(m string) string      { return "mc:m:{" + m + "}:events" }
func textRowKey(m string) string  { return "mc:m:{" + m + "}:textrow" }
func textPrefix(m string) string  { return "mc:m:{" + m + "}:text:" }
func thinkRowKey(m string) string { return "mc:m:{" + m + "}:thinkrow" }
func streamKey(u string) string   { return "mc:u:{" + u + "}:stream" }

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
local mode = ARGV[13]
local seq
local textlen = 0
if mode == 'text' or mode == 'think' then
  local rowkey = KEYS[4]
  if mode == 'think' then rowkey = KEYS[7] end
  local row = redis.call('GET', rowkey)
  if row then
    local t, s = string.match(row, '^(.*) (%d+)$')
    if t == ARGV[6] then seq = tonumber(s) end
  end
  if not seq then
    seq = redis.call('INCR', KEYS[1])
    redis.call('SET', rowkey, ARGV[6] .. ' ' .. seq)
    redis.call('RPUSH', KEYS[2], withseq(ARGV[4], seq))
  end
  local tk = ARGV[11] .. seq
  textlen = redis.call('STRLEN', tk)
  if textlen + string.len(ARGV[5]) <= tonumber(ARGV[14]) then
    textlen = redis.call('APPEND', tk, ARGV[5])
  end
else
  seq = redis.call('INCR', KEYS[1])
  redis.call('RPUSH', KEYS[2], withseq(ARGV[3], seq))
  if mode == 'thinkdone' then redis.call('DEL', KEYS[7]) end
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

// textSlack is what a stored text may grow past the limit by: the marker
// the parsers end a cut text with.
const textSlack = 1024

// streamed reports whether e is a piece of streamed text that is stored in
// its turn's (or thinking block's) one string rather than in a row of its
// own, and which: "text" or "think".
func streamed(e event.Event) string {
	switch {
	case e.Kind == event.KindTextDelta:
		return "text"
	case e.Kind == event.KindThinking && !e.Done && e.Delta != "":
		return "think"
	}
	return ""
}

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
	// Streamed text arrives already cut by the parsers, with a marker
	// that may take it a little past the limit.
	lim := s.limit
	if e.Kind == event.KindTextDelta || e.Kind == event.KindThinking {
		lim += textSlack
	}
	e = e.Truncated(lim)
	mode := streamed(e)
	if mode == "" && e.Kind == event.KindThinking && e.Done {
		mode = "thinkdone"
	}
	full, err := json.Marshal(e)
	if err != nil {
		return e, "", fmt.Errorf("append event: %w", err)
	}
	var stored []byte
	if mode == "text" || mode == "think" {
		// The log and the stream keep only the delta; the content lives
		// once, in the turn's (or block's) text string.
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
	keys := []string{seqKey(e.MissionID), logKey(e.MissionID), streamKey(o.UserID), textRowKey(e.MissionID), orDummy(f.RunKey), orDummy(f.LeaseKey),
		thinkRowKey(e.MissionID)}
	args := []any{f.Owner, string(e.Kind), full, stored, e.Delta, o.TurnID, o.UserID, e.MissionID,
		s.maxLen, f.Offset, textPrefix(e.MissionID), Channel, mode, s.limit + textSlack}
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
	err := s.Each(ctx, missionID, kinds, limit, offset, func(e event.Event) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Conversation returns the last n messages of a mission in order: its
// user_message and assistant_message events, each user message once (a
// queued one is stored again when it starts), leaving out those skip (when
// set) is true for. The log is read a chunk at a time and no more than n
// messages are held, however long the mission is.
func (s *Store) Conversation(ctx context.Context, missionID string, n int, skip func(event.Event) bool) ([]event.Event, error) {
	if n <= 0 {
		return []event.Event{}, nil
	}
	seen := map[string]bool{}
	ring := make([]event.Event, 0, n)
	oldest := 0 // ring is full from here on: its oldest entry
	err := s.Each(ctx, missionID, []event.Kind{event.KindUserMessage, event.KindAssistantMessage}, math.MaxInt, 0, func(e event.Event) error {
		if skip != nil && skip(e) {
			return nil
		}
		if e.Kind == event.KindUserMessage {
			if seen[e.ID] {
				return nil
			}
			seen[e.ID] = true
		}
		if len(ring) < n {
			ring = append(ring, e)
			return nil
		}
		ring[oldest] = e
		oldest = (oldest + 1) % n
		return nil
	})
	if err != nil {
		return nil, err
	}
	return append(ring[oldest:len(ring):len(ring)], ring[:oldest]...), nil
}

// replayChunk is how many stored events Each reads from Redis at a time:
// what one reader holds at once, whatever its limit (each is at most a
// few times the text limit).
const replayChunk = 100

// Each calls fn with a mission's stored events in sequence order, as
// Replay returns them, reading them a chunk at a time so that a long
// replay never sits in memory whole. An error from fn stops it.
func (s *Store) Each(ctx context.Context, missionID string, kinds []event.Kind, limit, offset int, fn func(event.Event) error) error {
	if limit <= 0 {
		return nil
	}
	want := map[event.Kind]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	start := int64(0)
	if len(want) == 0 {
		start = int64(max(offset, 0))
		offset = 0
	}
	sent := 0
	for {
		end := start + replayChunk - 1
		if len(want) == 0 {
			end = min(end, start+int64(limit-sent)-1)
		}
		raw, err := s.rdb.LRange(ctx, logKey(missionID), start, end).Result()
		if err != nil {
			return fmt.Errorf("replay events: %w", err)
		}
		for _, r := range raw {
			var e event.Event
			if err := json.Unmarshal([]byte(r), &e); err != nil {
				return fmt.Errorf("replay events: %w", err)
			}
			if len(want) > 0 && !want[e.Kind] {
				continue
			}
			if offset > 0 {
				offset--
				continue
			}
			if rebuilt(e) {
				if e.Content, err = s.text(ctx, missionID, e.Sequence, -1); err != nil {
					return err
				}
				e.Delta = ""
			}
			if err := fn(e); err != nil {
				return err
			}
			if sent++; sent == limit {
				return nil
			}
		}
		if int64(len(raw)) < end-start+1 {
			return nil
		}
		start = end + 1
	}
}

// rebuilt reports whether a stored event's content lives in its text
// string: a text_delta, or a streamed thinking event stored without its
// content (those stored before thinking was streamed kept theirs).
func rebuilt(e event.Event) bool {
	return e.Kind == event.KindTextDelta || streamed(e) == "think" && e.Content == ""
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
		if rebuilt(e) {
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
	keys := []string{seqKey(missionID), logKey(missionID), textRowKey(missionID), thinkRowKey(missionID)}
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
