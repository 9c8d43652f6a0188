// Package sse serves a user's mission events as Server-Sent Events: a
// status snapshot first, then every event of the user's missions, each
// with an id (its stream cursor) so that a client reconnecting with
// Last-Event-ID gets exactly the events it missed.
package sse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/events"
)

// Source reads a user's stored event stream.
type Source interface {
	Since(ctx context.Context, user, cursor string, count int64) ([]events.Entry, error)
	Latest(ctx context.Context, user string) (string, error)
	Oldest(ctx context.Context, user string) (string, error)
}

// CodeEventsDropped marks the error event a resuming client gets when its
// Last-Event-ID is older than anything the stream still holds: events
// between the two may be gone, and the client should reload what it shows
// (GET /api/control/missions/{id}/events has them all).
const CodeEventsDropped = "events_dropped"

// Hub delivers live events.
type Hub interface {
	Subscribe(user string, buffer int) *events.Sub
	Unsubscribe(s *events.Sub)
}

// Stream writes event streams.
type Stream struct {
	Source    Source
	Hub       Hub
	KeepAlive time.Duration
	// Buffer is the live events a client may fall behind by before it
	// catches up from the store instead.
	Buffer int
}

// Request is one client's stream.
type Request struct {
	User string
	// LastEventID is the client's Last-Event-ID ("" for a new stream).
	LastEventID string
	// MissionID keeps only that mission's events (status snapshots pass).
	MissionID string
	// Snapshot is sent first.
	Snapshot event.Event
}

// Headers sets the response headers of an event stream.
func Headers(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	// Proxies (nginx) must not buffer the stream.
	h.Set("X-Accel-Buffering", "no")
}

type writer struct {
	w io.Writer
	f http.Flusher
}

func (w writer) event(e event.Event, raw []byte, id string) error {
	b := raw
	if b == nil {
		var err error
		if b, err = json.Marshal(e); err != nil {
			return err
		}
	}
	var err error
	if id != "" {
		_, err = fmt.Fprintf(w.w, "event: %s\nid: %s\ndata: %s\n\n", e.Kind, id, b)
	} else {
		_, err = fmt.Fprintf(w.w, "event: %s\ndata: %s\n\n", e.Kind, b)
	}
	if err == nil {
		w.f.Flush()
	}
	return err
}

// Serve writes the stream until ctx ends or the client goes away. The
// caller has written the headers.
func (s *Stream) Serve(ctx context.Context, rw http.ResponseWriter, r Request) error {
	f, ok := rw.(http.Flusher)
	if !ok {
		return fmt.Errorf("sse: response writer cannot flush")
	}
	w := writer{w: rw, f: f}
	buffer := s.Buffer
	if buffer <= 0 {
		buffer = 1024
	}
	// Subscribe before reading the store, so nothing falls between the
	// two; what arrives on both is dropped by cursor.
	sub := s.Hub.Subscribe(r.User, buffer)
	defer func() { s.Hub.Unsubscribe(sub) }()

	last := r.LastEventID
	if last == "" {
		var err error
		if last, err = s.Source.Latest(ctx, r.User); err != nil {
			return err
		}
	}
	if err := w.event(r.Snapshot, nil, ""); err != nil {
		return err
	}
	if r.LastEventID != "" {
		oldest, err := s.Source.Oldest(ctx, r.User)
		if err != nil {
			return err
		}
		if oldest != "" && events.CompareCursors(r.LastEventID, oldest) < 0 {
			gap := event.Event{Kind: event.KindError, Code: CodeEventsDropped, MissionID: r.MissionID,
				Message: "the stream no longer holds the events after " + r.LastEventID + " (it keeps the latest SORTIE_MC_STREAM_MAX_LEN); some may be missing here: reload the mission's events"}
			if err := w.event(gap, nil, ""); err != nil {
				return err
			}
		}
	}
	send := func(en events.Entry) error {
		if en.Cursor != "" {
			if events.CompareCursors(en.Cursor, last) <= 0 {
				return nil
			}
			last = en.Cursor
		}
		if r.MissionID != "" && en.Event.Kind != event.KindStatus && en.Event.MissionID != r.MissionID {
			return nil
		}
		return w.event(en.Event, en.Raw, en.Cursor)
	}
	catchUp := func() error {
		for {
			batch, err := s.Source.Since(ctx, r.User, last, 1000)
			if err != nil {
				return err
			}
			for _, en := range batch {
				if err := send(en); err != nil {
					return err
				}
			}
			if len(batch) < 1000 {
				return nil
			}
		}
	}
	if r.LastEventID != "" {
		if err := catchUp(); err != nil {
			return err
		}
	}
	keep := time.NewTicker(s.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case en := <-sub.C:
			if err := send(en); err != nil {
				return err
			}
		case <-sub.Lagged:
			// Too slow for the live feed: drain what was buffered, then
			// read the rest from the store and resubscribe.
			s.Hub.Unsubscribe(sub)
			sub = s.Hub.Subscribe(r.User, buffer)
			if err := catchUp(); err != nil {
				return err
			}
		case <-keep.C:
			if _, err := io.WriteString(rw, ": keepalive\n\n"); err != nil {
				return err
			}
			f.Flush()
		}
	}
}
