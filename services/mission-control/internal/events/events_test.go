package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/mission-control/internal/event"
)

func TestTextStoredOncePerTurn(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 64<<10, 1000)
	ctx := context.Background()
	var text strings.Builder
	for turn := range 2 {
		for i := range 500 {
			d := strings.Repeat("x", 100)
			text.WriteString(d)
			if _, _, err := s.Append(ctx, event.Event{Kind: event.KindTextDelta, MissionID: "m", Content: text.String(), Delta: d},
				AppendOptions{UserID: "u", TurnID: []string{"t1", "t2"}[turn]}); err != nil {
				t.Fatal(err)
			}
			_ = i
		}
		text.Reset()
	}
	evs, err := s.Replay(ctx, "m", nil, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || len(evs[0].Content) != 50000 || evs[1].Sequence != 2 {
		t.Fatalf("want one row of 50000 bytes per turn, got %d rows", len(evs))
	}
	// Memory: the log and the stream hold deltas, not the accumulated text
	// (which would be ~25 MB per turn here).
	used, _ := rs.Client.MemoryUsage(ctx, streamKey("u")).Result()
	if used > 1<<20 {
		t.Errorf("user stream uses %d bytes", used)
	}
}

func TestTruncatesLargeToolOutput(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 1024, 1000)
	big := `"` + strings.Repeat("y", 10000) + `"`
	e, _, err := s.Append(context.Background(), event.Event{Kind: event.KindToolResult, MissionID: "m", ToolCallID: "c", ToolName: "Bash", Result: []byte(big)}, AppendOptions{UserID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := s.Replay(context.Background(), "m", nil, 10, 0)
	if len(evs[0].Result) > 1100 || !strings.Contains(string(evs[0].Result), "[truncated") || len(e.Result) > 1100 {
		t.Errorf("stored result of %d bytes: %.80s…", len(evs[0].Result), evs[0].Result)
	}
}

func TestFencedAppend(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 1024, 1000)
	ctx := context.Background()
	rs.Client.Set(ctx, "lease", "me", 0)
	f := &Fence{LeaseKey: "lease", Owner: "me", RunKey: "run", Offset: 42}
	ev := event.Event{Kind: event.KindThinking, MissionID: "m", Content: "hm"}
	if _, _, err := s.Append(ctx, ev, AppendOptions{UserID: "u", Fence: f}); err != nil {
		t.Fatal(err)
	}
	if n, _ := rs.Client.HGet(ctx, "run", "emitted").Int(); n != 1 {
		t.Errorf("emitted = %d", n)
	}
	rs.Client.Set(ctx, "lease", "someone-else", 0)
	if _, _, err := s.Append(ctx, ev, AppendOptions{UserID: "u", Fence: f}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("append without the lease: %v", err)
	}
	if n, _ := s.Count(ctx, "m"); n != 1 {
		t.Errorf("%d events stored", n)
	}
}

func TestReplayFilters(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 1024, 1000)
	ctx := context.Background()
	for i := range 2500 {
		k := event.KindThinking
		if i%2 == 0 {
			k = event.KindError
		}
		if _, _, err := s.Append(ctx, event.Event{Kind: k, MissionID: "m", Content: "c", Message: "e"}, AppendOptions{UserID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := s.Replay(ctx, "m", []event.Kind{event.KindError}, 10, 1200)
	if len(evs) != 10 || evs[0].Sequence != 2401 {
		t.Errorf("filtered page: %d events from %d", len(evs), evs[0].Sequence)
	}
	evs, _ = s.Replay(ctx, "m", nil, 5, 2497)
	if len(evs) != 3 || evs[0].Sequence != 2498 {
		t.Errorf("last page: %d", len(evs))
	}
}

// Streamed reasoning is stored like streamed text: one row per thinking
// block whose text is appended to, never a row per delta holding all the
// text so far (the square of the block's length).
func TestThinkingStoredOncePerBlock(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 64<<10, 100000)
	ctx := context.Background()
	var cursors []string
	var contents []string
	for block := range 2 {
		var text strings.Builder
		for range 400 {
			d := strings.Repeat(string(rune('a'+block)), 100)
			text.WriteString(d)
			_, c, err := s.Append(ctx, event.Event{Kind: event.KindThinking, MissionID: "m", Content: text.String(), Delta: d}, AppendOptions{UserID: "u", TurnID: "t1"})
			if err != nil {
				t.Fatal(err)
			}
			cursors, contents = append(cursors, c), append(contents, text.String())
		}
		if _, _, err := s.Append(ctx, event.Event{Kind: event.KindThinking, MissionID: "m", Content: text.String(), Done: true}, AppendOptions{UserID: "u", TurnID: "t1"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Replay(ctx, "m", nil, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("%d rows, want a partial and a done row per block", len(evs))
	}
	for i, e := range evs {
		want := strings.Repeat(string(rune('a'+i/2)), 40000)
		if e.Content != want || e.Done != (i%2 == 1) || e.Sequence != int64(i+1) {
			t.Errorf("row %d: seq %d done %v, %d bytes of content", i, e.Sequence, e.Done, len(e.Content))
		}
	}
	if used, _ := rs.Client.MemoryUsage(ctx, logKey("m")).Result(); used > 256<<10 {
		t.Errorf("the log uses %d bytes", used)
	}
	// A resumed stream rebuilds each partial event as it was sent.
	got, err := s.Since(ctx, "u", cursors[99], 10)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Event.Content != contents[100] || got[0].Event.Delta == "" {
		t.Errorf("resumed partial thinking: %d bytes, want %d", len(got[0].Event.Content), len(contents[100]))
	}
}

// What the agent streams stops growing at the limit: a text the parsers
// did not cut is not appended past it.
func TestStreamedTextStopsAtLimit(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 1024, 1000)
	ctx := context.Background()
	var text strings.Builder
	for range 100 {
		d := strings.Repeat("x", 100)
		text.WriteString(d)
		if _, _, err := s.Append(ctx, event.Event{Kind: event.KindTextDelta, MissionID: "m", Content: text.String(), Delta: d}, AppendOptions{UserID: "u", TurnID: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := s.Replay(ctx, "m", nil, 10, 0)
	if len(evs) != 1 || len(evs[0].Content) > 1024+textSlack {
		t.Errorf("%d rows, stored text of %d bytes", len(evs), len(evs[0].Content))
	}
}

// Each reads a chunk at a time and stops when told to.
func TestEachStops(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 1024, 1000)
	ctx := context.Background()
	for range 250 {
		if _, _, err := s.Append(ctx, event.Event{Kind: event.KindError, MissionID: "m", Message: "e"}, AppendOptions{UserID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("enough")
	n := 0
	err := s.Each(ctx, "m", nil, 1000, 10, func(e event.Event) error {
		if n++; n == 150 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 150 {
		t.Errorf("Each: %v after %d events", err, n)
	}
}

// Conversation keeps the last n messages in order, each user message once
// (a queued one is stored again when it starts), without the skipped ones.
func TestConversation(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 1024, 1000)
	ctx := context.Background()
	add := func(e event.Event) {
		t.Helper()
		e.MissionID = "m"
		if _, _, err := s.Append(ctx, e, AppendOptions{UserID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 250 {
		add(event.Event{Kind: event.KindUserMessage, ID: fmt.Sprint("u", i), Content: fmt.Sprint("q", i)})
		add(event.Event{Kind: event.KindUserMessage, ID: fmt.Sprint("u", i), Content: fmt.Sprint("q", i)}) // re-sent
		add(event.Event{Kind: event.KindError, Message: "not a message"})
		add(event.Event{Kind: event.KindAssistantMessage, ID: fmt.Sprint("a", i), Content: fmt.Sprint("r", i)})
	}
	add(event.Event{Kind: event.KindUserMessage, ID: "now", Content: "the prompt"})
	got, err := s.Conversation(ctx, "m", 7, func(e event.Event) bool { return e.ID == "now" })
	if err != nil {
		t.Fatal(err)
	}
	var contents []string
	for _, e := range got {
		contents = append(contents, e.Content)
	}
	if want := "r246 q247 r247 q248 r248 q249 r249"; strings.Join(contents, " ") != want {
		t.Errorf("conversation %q, want %q", contents, want)
	}
	if got, _ := s.Conversation(ctx, "m", 1000, nil); len(got) != 501 || got[0].Content != "q0" || got[500].Content != "the prompt" {
		t.Errorf("whole conversation: %d messages", len(got))
	}
}
