package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/mission-control/internal/event"
)

// Hub is one replica's subscription to the event channel, shared by all of
// its SSE clients: one Redis connection however many clients there are.
type Hub struct {
	rdb   *redis.Client
	log   *slog.Logger
	ready chan struct{}

	mu   sync.Mutex
	subs map[string]map[*Sub]struct{}
}

// Sub receives the live events of one user. When the client is too slow
// and its buffer fills, Lagged is closed and no more events are sent: the
// client catches up from the stored stream instead.
type Sub struct {
	C      chan Entry
	Lagged chan struct{}
	user   string
	lagged bool
}

// NewHub returns a hub; call Run to connect it.
func NewHub(rdb *redis.Client, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, log: log, ready: make(chan struct{}), subs: map[string]map[*Sub]struct{}{}}
}

// Ready is closed once the hub is subscribed.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Run subscribes and dispatches until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	ps := h.rdb.Subscribe(ctx, Channel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return fmt.Errorf("subscribe to %s: %w", Channel, err)
	}
	close(h.ready)
	ch := ps.Channel(redis.WithChannelSize(4096))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			h.dispatch(m.Payload)
		}
	}
}

func (h *Hub) dispatch(payload string) {
	cursor, rest, _ := strings.Cut(payload, "\n")
	user, raw, _ := strings.Cut(rest, "\n")
	h.mu.Lock()
	subs := h.subs[user]
	if len(subs) == 0 {
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	var e event.Event
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		h.log.Warn("undecodable event on the channel", "error", err.Error())
		return
	}
	entry := Entry{Cursor: cursor, UserID: user, Event: e, Raw: []byte(raw)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[user] {
		if s.lagged {
			continue
		}
		select {
		case s.C <- entry:
		default:
			s.lagged = true
			close(s.Lagged)
		}
	}
}

// Subscribe registers a receiver of the user's live events.
func (h *Hub) Subscribe(user string, buffer int) *Sub {
	s := &Sub{C: make(chan Entry, buffer), Lagged: make(chan struct{}), user: user}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[user] == nil {
		h.subs[user] = map[*Sub]struct{}{}
	}
	h.subs[user][s] = struct{}{}
	return s
}

// Unsubscribe removes s.
func (h *Hub) Unsubscribe(s *Sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs[s.user], s)
	if len(h.subs[s.user]) == 0 {
		delete(h.subs, s.user)
	}
}

// Clients returns the number of live subscribers.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}
