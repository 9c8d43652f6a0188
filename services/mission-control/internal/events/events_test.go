package events

import (
	"context"
	"errors"
	"strings"
	"testing"

	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/mission-control/internal/event"
)

func TestTextStoredOncePerTurn(t *testing.T) {
	rs := redistest.Start(t)
	s := NewStore(rs.Client, 1024, 1000)
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
