package service

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/events"
)

// appendN stores n events of a mission for user dev straight into the
// store the service streams from: a text_delta run, then messages.
func appendN(t testing.TB, e *env, mission string, n int) {
	t.Helper()
	appendAs(t, e, "dev", mission, n)
}

// appendAs is appendN for a mission of user.
func appendAs(t testing.TB, e *env, user, mission string, n int) {
	t.Helper()
	st := events.NewStore(e.redis.Client, 64<<10, 100000)
	text := ""
	for i := range n {
		var ev event.Event
		if i%3 == 0 {
			d := fmt.Sprintf("w%d ", i)
			text += d
			ev = event.Event{Kind: event.KindTextDelta, Content: text, Delta: d}
		} else {
			ev = event.Event{Kind: event.KindThinking, Content: fmt.Sprint("thought ", i)}
		}
		ev.MissionID = mission
		if _, _, err := st.Append(context.Background(), ev, events.AppendOptions{UserID: user, TurnID: "turn-1"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStreamSnapshotOrderAndResume(t *testing.T) {
	e := start(t, options{})
	var m mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &m)
	s := e.openStream("/api/control/stream", "")
	if s.resp.Header.Get("X-Accel-Buffering") != "no" || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("headers: %v", s.resp.Header)
	}
	snap := s.next(t)
	if snap.name != "status" || snap.data["state"] != "idle" || snap.id != "" || snap.data["mission_id"] != m.ID {
		t.Fatalf("first event %+v, want the status snapshot", snap)
	}
	appendN(t, e, m.ID, 30)
	got := make([]sseEvent, 0, 30)
	for len(got) < 30 {
		got = append(got, s.next(t))
	}
	lastSeq, lastID := 0.0, ""
	for i, ev := range got {
		if ev.id == "" || (lastID != "" && events.CompareCursors(ev.id, lastID) <= 0) {
			t.Fatalf("event %d id %q not after %q", i, ev.id, lastID)
		}
		lastID = ev.id
		// Stored events have strictly increasing sequences; a turn's
		// text_delta events all carry the sequence of its one text row.
		if seq := ev.data["sequence"].(float64); ev.name != "text_delta" {
			if seq <= lastSeq {
				t.Fatalf("sequence did not increase at %d: %v after %v", i, seq, lastSeq)
			}
			lastSeq = seq
		}
		if ev.name == "text_delta" && i == 27 && ev.data["content"] != "w0 w3 w6 w9 w12 w15 w18 w21 w24 w27 " {
			t.Errorf("accumulated text: %q", ev.data["content"])
		}
	}
	// Reconnect from the 10th event: exactly the 20 after it, same ids,
	// same payloads (text_delta content rebuilt from the one stored text).
	r := e.openStream("/api/control/stream", got[9].id)
	if ev := r.next(t); ev.name != "status" {
		t.Fatalf("resume starts with %+v", ev)
	}
	for i := 10; i < 30; i++ {
		ev := r.next(t)
		if ev.id != got[i].id || ev.name != got[i].name || ev.data["content"] != got[i].data["content"] {
			t.Fatalf("resumed event %d = %s %s %v, want %s %s %v", i, ev.id, ev.name, ev.data["content"], got[i].id, got[i].name, got[i].data["content"])
		}
	}
	select {
	case ev := <-r.events:
		if ev.name != "keepalive" {
			t.Errorf("extra event after resume: %+v", ev)
		}
	case <-testwait.After(500 * time.Millisecond):
		t.Errorf("no keepalive within %v (configured 200ms)", testwait.Scaled(500*time.Millisecond))
	}
	// Stored once: the text deltas of the turn are one row.
	var evs []map[string]any
	e.do("GET", "/api/control/missions/"+m.ID+"/events?types=text_delta", nil).Decode(t, &evs)
	if len(evs) != 1 || evs[0]["content"] != got[27].data["content"] {
		t.Errorf("stored text deltas: %v", evs)
	}
}

func TestStreamMissionFilter(t *testing.T) {
	e := start(t, options{})
	var a, b mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &a)
	e.do("POST", "/api/control/missions", nil).Decode(t, &b)
	s := e.openStream("/api/control/stream?mission_id="+a.ID, "")
	s.next(t) // snapshot
	appendN(t, e, b.ID, 5)
	appendN(t, e, a.ID, 5)
	for range 5 {
		if ev := s.next(t); ev.data["mission_id"] != a.ID {
			t.Fatalf("event of another mission: %+v", ev)
		}
	}
	if r := e.do("GET", "/api/control/stream?mission_id=nope", nil); r.Status != 404 {
		t.Errorf("unknown mission filter: %d", r.Status)
	}
}

func TestStreamEndsOnShutdown(t *testing.T) {
	e := start(t, options{})
	s := e.openStream("/api/control/stream", "")
	s.next(t)
	start := time.Now()
	go e.shutdown()
	select {
	case <-s.closed:
		t.Logf("stream closed %v after shutdown began", time.Since(start).Round(time.Millisecond))
	case <-testwait.After(10 * time.Second):
		t.Fatalf("stream still open %v after shutdown", testwait.Scaled(10*time.Second))
	}
}

func TestStreamTokenInQuery(t *testing.T) {
	is := newIssuer(t)
	e := start(t, options{env: is.authEnv(t)})
	resp, err := http.Get(e.base + "/api/control/stream")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	s := e.openStream("/api/control/stream?token="+is.sign(t, "carol", authn.RoleUser), "")
	if ev := s.next(t); ev.name != "status" {
		t.Errorf("first event %+v", ev)
	}
}

// A client whose Last-Event-ID has been trimmed from the stream is told
// that events may be missing, then gets what the stream still holds.
func TestStreamResumeAfterTrim(t *testing.T) {
	e := start(t, options{})
	var m mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &m)
	st := events.NewStore(e.redis.Client, 64<<10, 100)
	var first string
	for i := range 400 {
		_, cursor, err := st.Append(context.Background(), event.Event{Kind: event.KindThinking, MissionID: m.ID, Content: fmt.Sprint("t", i)},
			events.AppendOptions{UserID: "dev", TurnID: "turn-1"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = cursor
		}
	}
	s := e.openStream("/api/control/stream", first)
	if ev := s.next(t); ev.name != "status" {
		t.Fatalf("first %+v, want the snapshot", ev)
	}
	if ev := s.next(t); ev.name != "error" || ev.data["code"] != "events_dropped" || ev.id != "" {
		t.Fatalf("after the snapshot %+v, want the events_dropped error", ev)
	}
	if ev := s.next(t); ev.name != "thinking" {
		t.Errorf("then %+v, want the kept events", ev)
	}

	// A cursor the stream still holds: no such warning.
	var last string
	for range 5 {
		last = s.next(t).id
	}
	r := e.openStream("/api/control/stream", last)
	r.next(t) // snapshot
	if ev := r.next(t); ev.name == "error" {
		t.Errorf("a resume within the stream warned: %+v", ev)
	}
}
