package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/redistest"
)

// The queues are bounded per mission (messages) and per user (bytes); a
// refused message leaves nothing stored, and every way out of a queue
// gives its bytes back.
func TestQueueLimits(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	s := NewStore(rs.Client)
	s.LimitQueues(3, 2000)
	send := func(mission, content string) error {
		_, err := s.Enqueue(ctx, "u", Message{ID: fmt.Sprint(time.Now().UnixNano()), Content: content, MissionID: mission}, 1)
		return err
	}
	bytes := func() int64 { n, _ := rs.Client.Get(ctx, queuedBytesKey("u")).Int64(); return n }
	for i := range 3 {
		if err := send("m1", "hello"); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	var full *QueueFullError
	if err := send("m1", "one too many"); !errors.As(err, &full) || !full.PerMission {
		t.Fatalf("a fourth message: %v", err)
	}
	if n, _ := rs.Client.LLen(ctx, queueKey("m1")).Result(); n != 3 {
		t.Errorf("%d messages queued, want 3", n)
	}
	if err := send("m2", strings.Repeat("x", 1500)); err != nil {
		t.Fatal(err)
	}
	before := bytes()
	if err := send("m3", strings.Repeat("y", 600)); !errors.As(err, &full) || full.PerMission {
		t.Fatalf("a message past the user's bytes: %v", err)
	}
	if bytes() != before {
		t.Errorf("queued bytes %d after a refused message, were %d", bytes(), before)
	}
	if n, _ := rs.Client.Exists(ctx, queueKey("m3")).Result(); n != 0 {
		t.Error("the refused message was stored")
	}
	// Taking messages out gives their bytes back, down to nothing.
	if _, err := s.TryStart(ctx, "u", "m1", "me", 5, time.Minute, "t1", "a1"); err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue(ctx, "u")
	id := ""
	for _, m := range q {
		if m.MissionID == "m1" {
			id = m.ID
		}
	}
	if ok, err := s.Remove(ctx, "u", id); !ok || err != nil {
		t.Fatalf("remove: %v %v", ok, err)
	}
	if err := s.DeleteMission(ctx, "u", "m2"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Clear(ctx, "u"); n != 1 || err != nil {
		t.Fatalf("clear: %d %v", n, err)
	}
	if n, _ := rs.Client.Exists(ctx, queuedBytesKey("u")).Result(); n != 0 {
		t.Errorf("queued bytes %d with nothing queued", bytes())
	}
	if err := send("m3", strings.Repeat("y", 600)); err != nil {
		t.Errorf("after the queues emptied: %v", err)
	}
}
